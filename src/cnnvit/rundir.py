"""The layout of a run directory and of a model directory: the one module that knows it.

    DIR/manifest.json  DIR/logs/run_<timestamp>.log  DIR/models/<name>[/seed_<n>]/
    DIR/results/  DIR/explain/  DIR/figures/  DIR/report/

A model directory holds config.yaml, history.csv, checkpoints/{best,last}.pt,
metrics_<split>.json, predictions_<split>.csv, train.log and, once training has finished,
summary.json. Every stage that reads or writes these goes through `RunDir` and `ModelDir`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnvit import config
from cnnvit.config import Config
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_json, read_json

MODES = ("full", "reduced")
REDUCED_DIR = "reduced"  # `--reduced` writes DIR/reduced/, never over a full run's files
_SEED_DIR = re.compile(r"seed_(\d+)")


class ModelDir:
    """One trained (or training) model's directory and the names of its artifacts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.history = self.path / "history.csv"
        self.log = self.path / "train.log"
        self.summary = self.path / "summary.json"  # written last: the model has finished

    def __repr__(self) -> str:
        return f"ModelDir({str(self.path)!r})"

    def checkpoint(self, which: str = "best") -> Path:
        """`checkpoints/best.pt` (best by the selection metric) or `checkpoints/last.pt`."""
        return self.path / "checkpoints" / f"{which}.pt"

    def metrics(self, split: str) -> Path:
        return self.path / f"metrics_{split}.json"

    def predictions(self, split: str) -> Path:
        return self.path / f"predictions_{split}.csv"

    @property
    def finished(self) -> bool:
        return self.summary.is_file()

    def read_config(self) -> tuple[Config, dict[str, Any]]:
        """The saved config.yaml: (config, resolved facts); a clear error if there is none."""
        if not self.config.is_file():
            raise CnnvitError(f"{self.path} is not a cnnvit model directory (no config.yaml); "
                              "pass the --out directory of `cnnvit train`")
        data = config.read_yaml(self.config)
        resolved = data.pop("resolved", {}) or {}
        return config.apply_overrides(Config(), data), resolved

    def write_config(self, cfg: Config, resolved: dict[str, Any]) -> None:
        """Write the resolved config (plus derived facts under `resolved:`)."""
        config.write(cfg, self.config, resolved)

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.summary)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary, summary)


@dataclass(frozen=True)
class ModelEntry:
    """A model of a run: its name (directory under models/), its seed and its directory."""

    name: str
    seed: int | None
    dir: ModelDir


class RunDir:
    """A `cnnvit run` directory (`DIR`, or `DIR/reduced` for a reduced run)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.results = self.root / "results"
        self.explain = self.root / "explain"

    @classmethod
    def for_mode(cls, out: str | Path, mode: str) -> RunDir:
        """The directory a run of `mode` writes to under `--out`."""
        return cls(Path(out) / REDUCED_DIR if mode == "reduced" else Path(out))

    def log_file(self, started: datetime) -> Path:
        return self.root / "logs" / f"run_{started:%Y%m%d_%H%M%S}.log"

    def model_dir(self, name: str, seed: int | None = None) -> ModelDir:
        """`models/<name>`, or `models/<name>/seed_<n>` when the run has several seeds."""
        path = self.root / "models" / name
        return ModelDir(path if seed is None else path / f"seed_{seed}")

    def models(self, names: list[str] | None = None) -> list[ModelEntry]:
        """Every model × seed under models/, sorted by name then seed: `models/<name>` itself,
        or each of its `seed_<n>` directories when it has those and no files of its own.

        `names` keeps only those models (an unknown name is an error that lists the others).
        """
        root = self.root / "models"
        entries: list[ModelEntry] = []
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(
            ".")) if root.is_dir() else []
        for folder in folders:
            seeds = sorted((int(m.group(1)), p) for p in folder.iterdir()
                           if p.is_dir() and (m := _SEED_DIR.fullmatch(p.name)))
            own = ModelDir(folder)
            if not seeds or own.config.is_file() or own.metrics("test").is_file():
                entries.append(ModelEntry(folder.name, None, own))
            else:
                entries += [ModelEntry(folder.name, seed, ModelDir(p)) for seed, p in seeds]
        if not entries:
            raise CnnvitError(f"{root}: no model directories; run `cnnvit run --out "
                              f"{self.root}` first")
        if names:
            have = list(dict.fromkeys(e.name for e in entries))
            missing = [n for n in names if n not in have]
            if missing:
                raise CnnvitError(f"--models: {', '.join(missing)} not in {root} "
                                  f"(have {', '.join(have)})")
            entries = [e for e in entries if e.name in names]
        return entries

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, or {} when there is none yet."""
        return read_json(self.manifest) if self.manifest.is_file() else {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest, manifest)

    def mode(self, mode: str | None = None) -> str:
        """The run's mode: `mode` if given, else its manifest's, else "full"."""
        if mode is None:
            mode = str(self.read_manifest().get("mode", "full"))
        if mode not in MODES:
            raise CnnvitError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        return mode

"""The layout of a run directory and of a model directory: the one module that knows it.

    DIR/manifest.json  DIR/logs/run_<timestamp>.log  DIR/models/<name>[/seed_<n>]/
    DIR/results/  DIR/explain/  DIR/figures/  DIR/report/
    DIR/curves/fraction_<f>/models/<name>[/seed_<n>]/   (learning curves: `--train-fractions`)
    DIR/robustness/{options.json,cache/<corruption>.npz}  (the corrupted test sets)

A model directory holds config.yaml, history.csv, checkpoints/{best,last}.pt,
metrics_<split>.json, predictions_<split>.csv, train.log, once training has finished
summary.json and, after the robustness stage, predictions_robustness.npz. Every stage that
reads or writes these goes through `RunDir` and `ModelDir`.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnvit import config
from cnnvit.config import Config
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_json, atomic_write_text, read_json

MODES = ("full", "reduced")
ARTIFACTS_FILE = "ARTIFACTS.md"
GROUP_ABOVE = 4  # more files than this of one kind in one folder are listed as one row
# What each file of a run is: (glob pattern relative to DIR, description). Model files are
# matched relative to their model directory (`models/<name>[/seed_<n>]/`).
RUN_FILES = {
    "manifest.json": "versions, git commit, device, data and md5, seeds, every resolved "
                     "config, stage timings, mode",
    "logs/run_*.log": "the lines `cnnvit run` printed, one file per invocation",
    "logs/crash-*.log": "the traceback of an internal error (`cnnvit --debug` prints it)",
    "logs/robustness.log": "the lines `cnnvit robustness` printed",
    "logs/sweep_job.log": "what `cnnvit sweep` ran for this job, and its output",
    ARTIFACTS_FILE: "this index",
    "results/final_comparison.csv": "every metric, val and test, with parameters, FLOPs, time, "
                                    "throughput and memory: one row per model × seed × split",
    "results/per_class.csv": "precision, recall, F1, accuracy, support and AUC per class",
    "results/per_class_accuracy.csv": "test accuracy per class: classes × models",
    "results/seed_summary.csv": "mean, std, min and max over seeds per model, split and metric",
    "results/statistics.*": "confidence intervals, paired tests and seed statistics",
    "results/summary.md": "the comparison in words, generated from the numbers",
    "results/learning_curve.csv": "test accuracy and macro-F1 (95 % intervals) per model, seed "
                                  "and number of training images",
    "results/learning_curve_tests.csv": "the paired test between the models at each training "
                                        "set size",
    "results/robustness.csv": "test accuracy, macro-F1 and drop from clean per model, "
                              "corruption and severity",
    "results/robustness_summary.csv": "per model: clean accuracy, mean corruption accuracy and "
                                      "relative robustness",
    "results/robustness_tests.csv": "the paired test between the models under each "
                                    "corruption at the middle severity",
    "robustness/options.json": "the corruption set, its reference and the seed",
    "robustness/cache/*.npz": "a corrupted test set at severities 1–5 (uint8), shared by every "
                              "model",
    "explain/samples.csv": "the samples every model explains (seeded, shared)",
    "explain/options.json": "the options the explanations were made with",
    "explain/faithfulness*.csv": "deletion and insertion scores per sample (and curves), "
                                 "with a random-map baseline",
    "explain/sanity.csv": "the model-randomisation check of each model's maps",
    "explain/gallery_*.png": "input and each model's map side by side, per class or errors",
    "explain/*/index.csv": "one row per overlay of that model",
    "explain/*/*.png": "one sample's map over the image (true and predicted class in the name)",
    "figures/*": "a figure drawn from the files above (`cnnvit plot` redraws it)",
    "report/report.*": "the study report",
}
MODEL_FILES = {
    "config.yaml": "the resolved config and derived facts: enough to reproduce the model",
    "history.csv": "one row per epoch: lr, train and val loss and metrics, time, images/s",
    "checkpoints/best.pt": "weights of the best epoch by the selection metric",
    "checkpoints/last.pt": "weights, optimizer and progress of the last epoch (for resume)",
    "metrics_*.json": "every metric of the best checkpoint on that split",
    "predictions_*.csv": "per sample: label, prediction and class probabilities",
    "train.log": "the training log",
    "logs/crash-*.log": "the traceback of an internal error (`cnnvit --debug` prints it)",
    "summary.json": "what the model is and cost: written last, once training finished",
    "predictions_robustness.npz": "the predicted class of every test sample, clean and under "
                                  "every corruption × severity",
    "export/*.json": "what an exported model needs to be used: classes, input size, "
                     "normalisation, test metrics, parity check (cnnvit export)",
    "export/*": "the model exported to ONNX or TorchScript (cnnvit export)",
}
# what summary.json's `train_seconds` (the "training time" of every table and log) includes
TRAINING_TIME = ("the training passes over the training split, all epochs: data on the device, "
                 "forward, backward and optimiser steps; not validation, checkpoints or the "
                 "final evaluation")
REDUCED_DIR = "reduced"  # `--reduced` writes DIR/reduced/, never over a full run's files
_SEED_DIR = re.compile(r"seed_(\d+)")
_FRACTION_DIR = re.compile(r"fraction_(0\.\d+|1)")


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
    def robustness(self) -> Path:
        """predictions_robustness.npz: the robustness stage's predictions."""
        return self.path / "predictions_robustness.npz"

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
        self.robustness = self.root / "robustness"
        self.figures = self.root / "figures"
        self.report = self.root / "report"

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

    def curve_run(self, fraction: float) -> RunDir:
        """`curves/fraction_<f>`: the models trained on that share of the training split, laid
        out as a run directory (its `models/`)."""
        return RunDir(self.root / "curves" / f"fraction_{fraction:g}")

    def curve_runs(self) -> dict[float, RunDir]:
        """The learning-curve fractions trained so far, smallest first."""
        folders = (self.root / "curves").glob("fraction_*")
        runs = {float(p.name.removeprefix("fraction_")): RunDir(p) for p in folders
                if _FRACTION_DIR.fullmatch(p.name)}
        return dict(sorted(runs.items()))

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

    def artifacts(self) -> list[tuple[str, str]]:
        """(path relative to DIR, what it is) for every file of the run, sorted by path."""
        index = []
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            rel = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue  # checksum caches and temporary files
            index.append((rel, describe_file(rel)))
        return index

    def write_artifact_index(self) -> Path:
        """Write DIR/ARTIFACTS.md: a table of every file of the run and what it is."""
        groups: dict[tuple[str, str, str], list[str]] = {}  # (folder, suffix, what) -> files
        for rel, what in self.artifacts():
            if rel != ARTIFACTS_FILE:
                folder, _, name = rel.rpartition("/")
                groups.setdefault((folder, Path(name).suffix, what), []).append(rel)
        rows = []
        for (folder, suffix, what), files in groups.items():  # many alike files: one row
            many = len(files) > GROUP_ABOVE
            rows.append((f"{folder}/*{suffix}" if many else files[0],
                         f"{what} ({len(files)} files)" if many else what))
            rows += [(rel, what) for rel in files[1:] if not many]
        lines = ["# Artifacts", "", f"Every file of this run ({self.mode()} mode) and what it "
                 "is, generated from the run directory.", "", "| file | what it is |",
                 "|---|---|", f"| `{ARTIFACTS_FILE}` | {RUN_FILES[ARTIFACTS_FILE]} |",
                 *(f"| `{_cell(rel)}` | {what} |" for rel, what in sorted(rows))]
        atomic_write_text(self.root / ARTIFACTS_FILE, "\n".join(lines) + "\n")
        return self.root / ARTIFACTS_FILE


def describe_file(rel: str) -> str:
    """What the file at `rel` (relative to a run directory) is, from the tables above."""
    parts = rel.split("/")
    if parts[0] == "curves" and len(parts) > 2:  # curves/fraction_<f>/ holds models/ too
        parts = parts[2:]
    if parts[0] == "models" and len(parts) > 2:
        inner = parts[3:] if _SEED_DIR.fullmatch(parts[2]) and len(parts) > 3 else parts[2:]
        match = next((what for pattern, what in MODEL_FILES.items()
                      if fnmatch.fnmatchcase("/".join(inner), pattern)), None)
        return match or "not a cnnvit artifact"
    return next((what for pattern, what in RUN_FILES.items()
                 if fnmatch.fnmatchcase(rel, pattern)), "not a cnnvit artifact")


def _cell(text: str) -> str:
    """`text` safe inside a Markdown table cell."""
    return text.replace("|", "\\|")

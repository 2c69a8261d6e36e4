"""Find the trained models of a run directory and read the files training wrote there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cnnvit.errors import CnnvitError
from cnnvit.io import read_json

SPLITS = ("val", "test")
REQUIRED_FILES = ("metrics_val.json", "metrics_test.json", "summary.json")
_SEED_DIR = re.compile(r"seed_(\d+)")


@dataclass(frozen=True)
class ModelRun:
    """One trained model (one seed): its metrics per split and its training summary."""

    name: str
    seed: int | None
    path: Path
    metrics: dict[str, dict[str, Any]]
    summary: dict[str, Any]


def _load(name: str, seed: int | None, path: Path) -> ModelRun:
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise CnnvitError(f"{path}: missing {', '.join(missing)}; the model has not finished "
                          "training (run `cnnvit run` or `cnnvit train` again)")
    metrics = {s: read_json(path / f"metrics_{s}.json") for s in SPLITS}
    return ModelRun(name, seed, path, metrics, read_json(path / "summary.json"))


def discover(run_dir: Path) -> list[ModelRun]:
    """All models under `run_dir/models/`, sorted by name then seed.

    A model directory holds `metrics_test.json` itself, or `seed_<n>/` subdirectories that do.
    """
    models = run_dir / "models"
    names = sorted(p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if models.is_dir() else []
    if not names:
        raise CnnvitError(f"{models}: no model directories; run `cnnvit run --out {run_dir}` "
                          "first")
    runs: list[ModelRun] = []
    for model_dir in names:
        seeds = sorted((int(m.group(1)), p) for p in model_dir.iterdir()
                       if p.is_dir() and (m := _SEED_DIR.fullmatch(p.name)))
        if (model_dir / "metrics_test.json").is_file() or not seeds:
            runs.append(_load(model_dir.name, None, model_dir))
        else:
            runs.extend(_load(model_dir.name, seed, p) for seed, p in seeds)
    return runs


def read_explain_csv(run_dir: Path, name: str) -> pd.DataFrame | None:
    """`run_dir/explain/<name>` if the explain stage wrote it (empty if unreadable)."""
    path = run_dir / "explain" / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):  # pandas' EmptyDataError and ParserError are ValueErrors
        return pd.DataFrame()

"""Find the trained models of a run directory and read the files training wrote there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.rundir import ModelEntry, RunDir

SPLITS = ("val", "test")


@dataclass(frozen=True)
class ModelRun:
    """One trained model (one seed): its metrics per split and its training summary."""

    name: str
    seed: int | None
    path: Path
    metrics: dict[str, dict[str, Any]]
    summary: dict[str, Any]


def _load(entry: ModelEntry) -> ModelRun:
    files = [entry.dir.metrics(s) for s in SPLITS] + [entry.dir.summary]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CnnvitError(f"{entry.dir.path}: missing {', '.join(missing)}; the model has not "
                          "finished training (run `cnnvit run` or `cnnvit train` again)")
    metrics = {s: read_json(entry.dir.metrics(s)) for s in SPLITS}
    return ModelRun(entry.name, entry.seed, entry.dir.path, metrics, entry.dir.read_summary())


def discover(run: RunDir) -> list[ModelRun]:
    """All models of the run with their results, sorted by name then seed."""
    return [_load(entry) for entry in run.models()]


def read_explain_csv(run: RunDir, name: str) -> pd.DataFrame | None:
    """`DIR/explain/<name>` if the explain stage wrote it (empty if unreadable)."""
    path = run.explain / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):  # pandas' EmptyDataError and ParserError are ValueErrors
        return pd.DataFrame()

"""Find the trained models of a run directory and read the files training wrote there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnvit import metrics
from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.rundir import ModelDir, ModelEntry, RunDir

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


@dataclass(frozen=True)
class Predictions:
    """A model's predictions on one split, in sample-index order."""

    index: np.ndarray  # (N,) sample indices into the split
    labels: np.ndarray  # (N,) int64 true classes
    probs: np.ndarray  # (N, K) float64 class probabilities, exactly as written
    task: str  # "multi-class" or "binary-class" (from metrics_<split>.json)


def read_predictions(run: ModelRun, split: str = "test") -> Predictions | None:
    """`predictions_<split>.csv` of a model, or None when training did not write one."""
    path = ModelDir(run.path).predictions(split)
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path).sort_values("index", kind="stable")  # floats round-trip exactly
        columns = sorted((c for c in df.columns if str(c).startswith("prob_")),
                         key=lambda c: int(c[len("prob_"):]))
        probs = df[columns].to_numpy(np.float64)
        labels, _ = metrics.validate_inputs(df["label"].to_numpy(), probs)
    except (OSError, ValueError, KeyError) as e:
        raise CnnvitError(f"{path}: cannot read predictions ({e}); re-run `cnnvit run` or "
                          "`cnnvit train` for this model") from e
    # the probabilities are used as written: they are those metrics_<split>.json was computed on
    return Predictions(df["index"].to_numpy(np.int64), labels, probs,
                       str(run.metrics[split].get("task", "multi-class")))


def read_explain_csv(run: RunDir, name: str) -> pd.DataFrame | None:
    """`DIR/explain/<name>` if the explain stage wrote it (empty if unreadable)."""
    path = run.explain / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):  # pandas' EmptyDataError and ParserError are ValueErrors
        return pd.DataFrame()

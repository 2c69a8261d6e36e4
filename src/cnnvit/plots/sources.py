"""The files figures are drawn from, read through `RunDir` / `ModelDir`, with one clear error
(a `CnnvitError`) for anything missing or unreadable."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.plots.style import model_colors
from cnnvit.rundir import ModelEntry, RunDir

CURVES = "faithfulness_curves.csv"
SCORES = ("accuracy", "f1_macro", "auc_macro", "ece")
COSTS = ("parameters", "flops_per_image", "train_seconds")
HISTORY = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_f1_macro")
_TRAIN = "the model has not finished training (run `cnnvit run` or `cnnvit train` again)"
_EVALUATE = "evaluate the model first (`cnnvit evaluate <model dir>` or `cnnvit run` again)"


class MissingOptional(CnnvitError):
    """An input only some runs have (the explain stage's): `plot all` skips its figures."""


class NotAskedFor(MissingOptional):
    """An input of an opt-in stage the run did not ask for (learning curves): `plot all` skips
    its figures without a word; asking for the figure itself names what is missing."""


@dataclass(frozen=True)
class Options:
    """What to draw: one split (None: each kind's default, test, or val and test for the
    confusion matrices), normalised confusion matrices only, and where to say what was
    skipped."""

    split: str | None
    normalize: bool
    log: Callable[[str], None]

    def splits(self, default: tuple[str, ...] = ("test",)) -> tuple[str, ...]:
        """The split asked for, else `default`."""
        return (self.split,) if self.split else default


@dataclass(frozen=True)
class Source:
    """The run drawn: its directory, the models drawn, every model's colour, the mode label."""

    run: RunDir
    entries: tuple[ModelEntry, ...]
    colors: dict[str, str]
    label: str          # " [REDUCED mode]" in titles of a reduced run, else ""
    only: str | None    # the one model asked for with --model

    @property
    def folder(self) -> Path:
        """DIR/figures/."""
        return self.run.figures

    def name(self, base: str) -> str:
        """The file name of a figure comparing models: `base`, or `base_<model>` for one."""
        return base if self.only is None else f"{base}_{self.only}"


def open_run(run_dir: str | Path, model: str | None = None) -> Source:
    """The run at `run_dir` (all its models, or only `model`); a clear error if it is none."""
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise CnnvitError(f"{run.root}: no such run directory; run `cnnvit run --out "
                          f"{run.root}` first")
    entries = run.models()
    names = sorted({e.name for e in entries})
    if model is not None and model not in names:
        raise CnnvitError(f"--model: {model} is not a model of {run.root} (have "
                          f"{', '.join(names)})")
    label = " [REDUCED mode]" if run.mode() == "reduced" else ""
    chosen = tuple(e for e in entries if model is None or e.name == model)
    return Source(run, chosen, model_colors(names), label, model)


def label(entry: ModelEntry) -> str:
    """How a figure names a model: `vit-small-input`, or `vit-small-input seed 42`."""
    return entry.name if entry.seed is None else f"{entry.name} seed {entry.seed}"


def stem(entry: ModelEntry) -> str:
    """How a file name names a model: `vit-small-input`, or `vit-small-input_seed42`."""
    return entry.name if entry.seed is None else f"{entry.name}_seed{entry.seed}"


def _need(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise CnnvitError(f"{path}: missing; {hint}")
    return path


def read_table(path: Path, hint: str, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV of the run with `columns`; a missing or unreadable file is one line with `hint`."""
    try:
        df = pd.read_csv(_need(path, hint))
    except (OSError, ValueError) as e:  # pandas' EmptyDataError and ParserError too
        raise CnnvitError(f"{path}: cannot read CSV ({e}); {hint}") from e
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CnnvitError(f"{path}: no column {', '.join(missing)}; {hint}")
    return df


def history(entry: ModelEntry) -> pd.DataFrame:
    """history.csv, with the columns the curves need."""
    return read_table(entry.dir.history, _TRAIN, HISTORY)


def metrics(entry: ModelEntry, split: str) -> dict[str, Any]:
    """metrics_<split>.json."""
    return read_json(_need(entry.dir.metrics(split), _EVALUATE))


def predictions(entry: ModelEntry, split: str) -> pd.DataFrame:
    """predictions_<split>.csv (label, prediction, prob_<k>)."""
    return read_table(entry.dir.predictions(split), _EVALUATE, ("label",))


def summary(entry: ModelEntry) -> dict[str, Any]:
    """summary.json (parameters, FLOPs, training time, ...)."""
    return read_json(_need(entry.dir.summary, _TRAIN))


def number(x: Any) -> float:
    """A metric or cost as a float; NaN for None or anything not a number."""
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def class_names(m: dict[str, Any], count: int, path: Path) -> list[str]:
    """The class names of a metrics file (their indices if it has none)."""
    names = [str(n) for n in m.get("class_names") or range(count)]
    if len(names) != count:
        raise CnnvitError(f"{path}: {len(names)} class names for {count} classes; "
                          f"{_EVALUATE}")
    return names


def scores(src: Source, split: str, costs: bool = False) -> pd.DataFrame:
    """One row per model × seed: the headline metrics of `split`, per-class F1 (an array)
    and, with `costs`, parameters, FLOPs per image and training seconds."""
    rows = []
    for entry in src.entries:
        m = metrics(entry, split)
        f1 = np.array([number(c.get("f1")) for c in m.get("per_class") or []])
        row = {"model": entry.name, "seed": entry.seed, "f1_per_class": f1,
               "class_names": class_names(m, len(f1), entry.dir.metrics(split)),
               **{k: number(m.get(k)) for k in SCORES}}
        if costs:
            s = summary(entry)
            row.update({k: number(s.get(k)) for k in COSTS})
        rows.append(row)
    return pd.DataFrame(rows)


def intervals(src: Source, split: str, log: Callable[[str], None]) -> pd.DataFrame | None:
    """The "intervals" of results/statistics.json for `split` (per model × seed), with its
    "seeds" t-intervals over seeds as seed-null rows; None (and a log line) when there are
    none to draw: the figures then have no error bars, and never fail."""
    path = src.run.results / "statistics.json"
    if not path.is_file():
        log(f"  figures: no {path.name}: no error bars")
        return None
    try:
        data = read_json(path)
        settings = data.get("settings") or {}
        over_seeds = [{**row, "seed": None} for row in data.get("seeds") or []]
        table = pd.DataFrame([*data["intervals"], *over_seeds])
        table = table[table["model"].notna() & table["metric"].notna()]
        table["low"], table["high"] = table["low"].astype(float), table["high"].astype(float)
    except (CnnvitError, KeyError, TypeError, ValueError, AttributeError) as e:
        log(f"  figures: {path}: unreadable intervals ({e}): no error bars")
        return None
    if settings.get("split", split) != split:
        return None
    if "split" in table:
        table = table[table["split"].isna() | (table["split"] == split)]
    return table.assign(seed=table["seed"] if "seed" in table else None)


def interval(table: pd.DataFrame | None, model: str, metric: str,
             seeds: list[int | None]) -> tuple[float, float] | None:
    """(low, high) of `metric` for `model`: its seed-null row (the interval of a model without
    seeds, or the t-interval over several seeds), else that of its only seed; None when
    statistics.json has neither."""
    if table is None:
        return None
    rows = table[(table["model"] == model) & (table["metric"] == metric)]
    pick = rows[rows["seed"].isna()]
    if pick.empty and len(seeds) == 1 and seeds[0] is not None:
        pick = rows[rows["seed"] == seeds[0]]
    if pick.empty:
        return None
    low, high = float(pick["low"].iloc[0]), float(pick["high"].iloc[0])
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


def explain_curves(src: Source) -> pd.DataFrame:
    """The explain stage's mean deletion / insertion curves of the models drawn."""
    path = src.run.explain / CURVES
    if not path.is_file():
        raise MissingOptional(f"{path}: missing; the explain stage did not run (or predates "
                              f"the curves): run `cnnvit explain {src.run.root}`")
    table = read_table(path, f"run `cnnvit explain {src.run.root}` again",
                 ("model", "method", "fraction", "deletion", "insertion"))
    table = table[table["model"].isin({e.name for e in src.entries})]
    if table.empty:
        raise MissingOptional(f"{path}: no curves for {', '.join(sorted(src.colors))}; run "
                              f"`cnnvit explain {src.run.root}` again")
    return table

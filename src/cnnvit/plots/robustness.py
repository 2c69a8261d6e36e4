"""Robustness to corruptions: test accuracy against severity (0 = clean), one panel per
corruption and a last one for the mean over corruptions, the models overlaid (mean ± std band
over seeds with several). Drawn from `results/robustness.csv` (the robustness stage, then
`cnnvit compare`)."""

from __future__ import annotations

import math
from functools import partial

import pandas as pd
from matplotlib.figure import Figure

from cnnvit.plots import sources, style
from cnnvit.plots.sources import NotAskedFor, Options, Source

FILE = "robustness.csv"
COLUMNS = ("model", "seed", "corruption", "severity", "accuracy")
PER_ROW = 4


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """The robustness figure, when the run evaluated its models under corruptions."""
    path = src.run.results / FILE
    if not path.is_file():
        raise NotAskedFor(f"{path}: missing; the run skipped the robustness stage (run "
                          f"`cnnvit robustness {src.run.root}`)")
    table = sources.read_table(path, f"run `cnnvit compare {src.run.root}` again", COLUMNS)
    table = table[table["model"].isin({e.name for e in src.entries})]
    return [style.Drawing(src.name("robustness"), partial(_figure, src, table))]


def _curves(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per corruption (and "mean over corruptions"): accuracy per model × seed × severity,
    severity 0 being the clean accuracy."""
    clean = table[table["severity"] == 0]
    corrupted = table[table["severity"] > 0]
    out = {str(name): pd.concat([clean, rows]) for name, rows in
           corrupted.groupby("corruption", sort=False)}
    mean = corrupted.groupby(["model", "seed", "severity"], dropna=False, as_index=False)[
        "accuracy"].mean()
    out["mean over corruptions"] = pd.concat([clean, mean])
    return out


def _figure(src: Source, table: pd.DataFrame) -> Figure:
    curves = _curves(table)
    rows = math.ceil(len(curves) / PER_ROW)
    fig = style.figure(3.0 * PER_ROW, 2.5 * rows + 0.6)
    axes = fig.subplots(rows, PER_ROW, squeeze=False, sharex=True, sharey=True).ravel()
    seeded = table["seed"].notna().any()
    for ax, (name, rows_) in zip(axes, curves.items(), strict=False):
        for model, points in rows_.groupby("model", sort=True):
            by = points.groupby("severity")["accuracy"]
            mean, color = by.mean(), src.colors[str(model)]
            ax.plot(mean.index, mean.to_numpy(), "o-", ms=3, lw=1.4, color=color,
                    label=str(model))
            if seeded:
                std = by.std().fillna(0.0).to_numpy()
                ax.fill_between(mean.index, mean.to_numpy() - std, mean.to_numpy() + std,
                                color=color, alpha=0.18, lw=0)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xticks(range(6))
        ax.tick_params(labelbottom=True)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    fig.supylabel("test accuracy")
    fig.supxlabel("severity (0 = clean)")
    axes[0].legend(loc="lower left", fontsize=8)
    band = "; mean ± std over seeds" if seeded else ""
    fig.suptitle(f"Accuracy under corruption{band}{src.label}")
    return fig

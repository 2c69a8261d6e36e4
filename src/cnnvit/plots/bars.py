"""Metric bars (accuracy, macro-F1, macro-AUC, ECE) with confidence intervals from
statistics.json, and per-class F1 of every model; means over seeds, seeds as dots."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cnnvit.plots import sources, style
from cnnvit.plots.sources import Options, Source

TITLES = {"accuracy": "accuracy", "f1_macro": "macro-F1", "auc_macro": "macro-AUC",
          "ece": "ECE (lower is better)"}


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """For the test split (or --split): the metric bars and the per-class F1 bars."""
    out = []
    for split in opts.splits():
        table = sources.scores(src, split)
        bounds = sources.intervals(src, split, opts.log)
        out += [style.Drawing(src.name(f"metrics_{split}"),
                              partial(_metrics_figure, src, table, bounds, split)),
                style.Drawing(src.name(f"per_class_f1_{split}"),
                              partial(_per_class_figure, src, table, split))]
    return out


def seeds_of(table: pd.DataFrame, model: str) -> list[int | None]:
    """The seeds of `model`'s rows (None for a model without seed directories)."""
    return [None if pd.isna(s) else int(s) for s in table.loc[table["model"] == model, "seed"]]


def _metrics_figure(src: Source, table: pd.DataFrame, bounds: pd.DataFrame | None,
                    split: str) -> Figure:
    models = sorted(set(table["model"]))
    means = table.groupby("model")[list(TITLES)].mean()
    fig, axes = style.panels(max(10.0, 2.2 * len(models) * len(TITLES) / 2), 4.2, len(TITLES))
    x = np.arange(len(models))
    for ax, (metric, title) in zip(axes, TITLES.items(), strict=True):
        values = [float(means.loc[m, metric]) for m in models]
        ax.bar(x, values, color=[src.colors[m] for m in models], width=0.7)
        for xi, m in zip(x, models, strict=True):
            seeds = table.loc[table["model"] == m, metric].to_numpy()
            if len(seeds) > 1:
                ax.plot(np.full(len(seeds), xi), seeds, "o", color="black", ms=3, zorder=4)
        cis = [sources.interval(bounds, m, metric, seeds_of(table, m)) for m in models]
        style.interval_bars(ax, list(x), values, cis)
        ax.set_xticks(x, [f"{name}\n{v:.4f}" for name, v in
                          zip(style.class_labels(models, 2, 14), values, strict=True)],
                      fontsize=8)
        ax.set_title(title)
        top = np.nanmax([*values, *(c[1] for c in cis if c), 0.01])
        ax.set_ylim(0, 1.05 if metric != "ece" else top * 1.15)
    fig.suptitle(f"{split} metrics: mean over seeds (dots: seeds; error bars: confidence "
                 f"interval from statistics.json when present){src.label}")
    return fig


def _per_class_figure(src: Source, table: pd.DataFrame, split: str) -> Figure:
    models = sorted(set(table["model"]))
    names: list[str] = table["class_names"].iloc[0]
    k = len(names)
    fig = style.figure(float(np.clip(0.16 * k * len(models) + 2.5, 7, 40)), 4.8)
    ax = fig.subplots()
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        f1 = np.mean(np.stack(list(table.loc[table["model"] == m, "f1_per_class"])), axis=0)
        ax.bar(np.arange(len(f1)) + (i - (len(models) - 1) / 2) * width, f1, width=width,
               color=src.colors[m], label=m)
    upright = k > 12 or max(len(n) for n in names) > 8
    ax.set_xticks(range(k), style.class_labels(names),
                  rotation=90 if upright else 0, fontsize=8 if k <= 40 else 6)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{split} · per-class F1 (mean over seeds){src.label}")
    return fig

"""Test accuracy against cost: parameters, FLOPs per image and training time (log axes), one
point per model (mean over seeds) with its confidence interval when statistics.json has one."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cnnvit import fmt
from cnnvit.plots import sources, style
from cnnvit.plots.bars import seeds_of
from cnnvit.plots.sources import Options, Source

# column, axis title, how a value is written next to its point
AXES: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("parameters", "parameters", fmt.si), ("flops_per_image", "FLOPs per image",
                                           lambda x: fmt.si(x, "FLOPs")),
    ("train_seconds", "training time", fmt.seconds))


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """One figure per split: accuracy against each cost, every model."""
    out = []
    for split in opts.splits():
        table = sources.scores(src, split, costs=True)
        bounds = sources.intervals(src, split, opts.log)
        out.append(style.Drawing(src.name(f"cost_{split}"),
                                 partial(_figure, src, table, bounds, split)))
    return out


def _figure(src: Source, table: pd.DataFrame, bounds: pd.DataFrame | None,
            split: str) -> Figure:
    models = sorted(set(table["model"]))
    means = table.groupby("model")[["accuracy", *(a[0] for a in AXES)]].mean()
    fig, axes = style.panels(13, 4.4, len(AXES))
    for ax, (column, title, write) in zip(axes, AXES, strict=True):
        shown = [m for m in models if means.loc[m, column] > 0]  # NaN or 0: not recorded
        xs = [float(means.loc[m, column]) for m in shown]
        ys = [float(means.loc[m, "accuracy"]) for m in shown]
        for m, x, y in zip(shown, xs, ys, strict=True):
            ax.plot([x], [y], "o", ms=9, color=src.colors[m], label=m, zorder=6)
            ax.annotate(f"{m}\n{write(x)}", (x, y), xytext=(7, -4), textcoords="offset points",
                        fontsize=7, va="top")
        style.interval_bars(ax, xs, ys, [sources.interval(bounds, m, "accuracy",
                                                          seeds_of(table, m)) for m in shown])
        ax.set_xscale("log")
        if xs:
            ax.set_xlim(min(xs) / 4, max(xs) * 6)
        else:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center")
        ax.set_xlabel(f"{title} (log scale)")
        ax.set_ylabel(f"{split} accuracy")
        low = np.nanmin([*ys, 1.0])
        ax.set_ylim(max(0.0, low - 0.1), 1.02)
    axes[0].legend(loc="lower left")
    fig.suptitle(f"{split} accuracy against cost (mean over seeds){src.label}")
    return fig

"""Deletion and insertion curves from the explain stage (mean over the explained samples),
each model's method against its random-map baseline in the model's colour."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cnnvit.plots import sources, style
from cnnvit.plots.sources import Options, Source

PANELS = (("deletion", "deletion (lower area = more faithful)"),
          ("insertion", "insertion (higher area = more faithful)"))
RANDOM = "random"


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """One figure: deletion and insertion, every model and its random baseline."""
    curves = sources.explain_curves(src)
    return [style.Drawing(src.name("faithfulness"), partial(_figure, src, curves))]


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """The area under a curve (trapezoid rule), as the explain stage computes it."""
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())


def _figure(src: Source, curves: pd.DataFrame) -> Figure:
    fig, axes = style.panels(12, 4.6, len(PANELS))
    groups = curves.groupby(["model", "method"])
    for model, method in sorted(groups.groups, key=lambda g: (g[0], g[1] == RANDOM, g[1])):
        c = groups.get_group((model, method)).sort_values("fraction")
        for ax, (column, _) in zip(axes, PANELS, strict=True):
            area = _area(c["fraction"].to_numpy(), c[column].to_numpy())
            ax.plot(c["fraction"], c[column], color=src.colors[str(model)],
                    ls="--" if method == RANDOM else "-", lw=1.2 if method == RANDOM else 2,
                    label=f"{model} · {method} (area {area:.3f})")
    for ax, (_, title) in zip(axes, PANELS, strict=True):
        ax.set_title(title)
        ax.set_xlabel("fraction of pixels deleted / inserted, most salient first")
        ax.set_ylabel("mean probability of the predicted class")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="best", fontsize=7)
    fig.suptitle(f"faithfulness: each map against a random map (dashed){src.label}")
    return fig

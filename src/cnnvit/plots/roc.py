"""ROC curves from predictions_<split>.csv: one-vs-rest per class with micro and macro averages
(a binary task: the positive class's curve), per model and every model's averages together."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from cnnvit.errors import CnnvitError
from cnnvit.plots import sources, style
from cnnvit.plots.sources import Options, Source
from cnnvit.rundir import ModelEntry

LEGEND_CLASSES = 10  # more classes: their curves are drawn but not listed


@dataclass(frozen=True)
class Curve:
    name: str
    fpr: np.ndarray
    tpr: np.ndarray

    @property
    def area(self) -> float:
        """The area under the curve (AUC)."""
        return float(auc(self.fpr, self.tpr))


@dataclass(frozen=True)
class Roc:
    """One model's curves: per class (just the positive class when binary), micro, macro."""

    classes: list[Curve]
    averages: list[Curve]


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """Per split: each model's ROC figure and every model's averages together."""
    out = []
    for split in opts.splits():
        rocs = [(e, _roc(e, split)) for e in src.entries]
        out += [style.Drawing(f"roc_{split}_{sources.stem(e)}",
                              partial(_model_figure, src, e, r, split)) for e, r in rocs]
        out.append(style.Drawing(src.name(f"roc_{split}_all"),
                                 partial(_all_figure, src, rocs, split)))
    return out


def _roc(entry: ModelEntry, split: str) -> Roc:
    p = sources.predictions(entry, split)
    path = entry.dir.predictions(split)
    cols = sorted((c for c in p.columns if c.startswith("prob_")), key=lambda c: int(c[5:]))
    if len(cols) < 2:
        raise CnnvitError(f"{path}: no prob_<k> columns; evaluate the model again")
    probs, y = p[cols].to_numpy(float), p["label"].to_numpy(int)
    m = sources.metrics(entry, split)
    names = sources.class_names(m, len(cols), entry.dir.metrics(split))
    present = [k for k in range(len(cols)) if 0 < (y == k).sum() < len(y)]
    if len(cols) == 2:  # binary: the positive class's curve
        present = [k for k in present if k == 1]
    classes = [Curve(names[k], *roc_curve(y == k, probs[:, k])[:2]) for k in present]
    if len(cols) == 2 or not classes:
        return Roc(classes, [])
    onehot = (y[:, None] == np.arange(len(cols))[None, :])[:, present]
    micro = Curve("micro-average", *roc_curve(onehot.ravel(), probs[:, present].ravel())[:2])
    grid = np.unique(np.concatenate([c.fpr for c in classes]))
    macro = Curve("macro-average", grid,
                  np.mean([np.interp(grid, c.fpr, c.tpr) for c in classes], axis=0))
    return Roc(classes, [micro, macro])


def _model_figure(src: Source, entry: ModelEntry, roc: Roc, split: str) -> Figure:
    fig = style.figure(6.4, 6)
    ax = fig.subplots()
    color = src.colors[entry.name]
    binary = not roc.averages
    shades = colormaps["viridis"](np.linspace(0, 0.9, len(roc.classes)))
    listed = len(roc.classes) <= LEGEND_CLASSES
    for c, shade in zip(roc.classes, shades, strict=True):
        ax.plot(c.fpr, c.tpr, lw=2 if binary else 0.9, alpha=1 if binary else 0.7,
                color=color if binary else shade,
                label=f"{c.name} (AUC {c.area:.3f})" if listed or binary else None)
    for c, ls in zip(roc.averages, ("--", "-"), strict=False):
        ax.plot(c.fpr, c.tpr, lw=2.4, ls=ls, color=color, label=f"{c.name} (AUC {c.area:.3f})")
    style.diagonal(ax, "chance")
    what = "positive class" if binary else (
        "one-vs-rest per class" if listed else f"{len(roc.classes)} classes one-vs-rest (thin)")
    _finish(ax, f"{sources.label(entry)} · {split} · ROC, {what}{src.label}")
    return fig


def _all_figure(src: Source, rocs: list[tuple[ModelEntry, Roc]], split: str) -> Figure:
    fig = style.figure(6.4, 6)
    ax = fig.subplots()
    for entry, roc in rocs:
        for c, ls in zip(roc.averages or roc.classes, ("--", "-"), strict=False):
            ax.plot(c.fpr, c.tpr, lw=1.8, ls=ls, color=src.colors[entry.name],
                    label=f"{sources.label(entry)} {c.name} (AUC {c.area:.3f})")
    style.diagonal(ax, "chance")
    _finish(ax, f"{split} · ROC, every model{src.label}")
    return fig


def _finish(ax: Axes, title: str) -> None:
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)


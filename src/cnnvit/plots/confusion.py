"""Confusion matrices from metrics_<split>.json: counts and row-normalised. The figure and its
fonts scale with the class count, so names stay readable and apart up to 100 classes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnnvit.errors import CnnvitError
from cnnvit.plots import SPLITS, sources, style
from cnnvit.plots.sources import Options, Source

ANNOTATE_UP_TO = 30   # classes: beyond this the cells are too small for numbers


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """Per model (and seed) and split: counts and row-normalised (only the latter with
    --normalize)."""
    out = []
    for entry in src.entries:
        for split in opts.splits(SPLITS):
            m = sources.metrics(entry, split)
            path = entry.dir.metrics(split)
            counts = np.asarray(m.get("confusion_matrix") or [], dtype=float)
            if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or not counts.size:
                raise CnnvitError(f"{path}: no square confusion_matrix; evaluate the model "
                                  "again (`cnnvit evaluate <model dir>`)")
            names = sources.class_names(m, len(counts), path)
            for normalize in (True,) if opts.normalize else (False, True):
                kind = "row-normalised" if normalize else "counts"
                title = f"{sources.label(entry)} · {split} · confusion matrix ({kind}){src.label}"
                out.append(style.Drawing(
                    f"confusion_{split}_{sources.stem(entry)}" + ("_normalized" * normalize),
                    partial(confusion_figure, counts, names, title, normalize)))
    return out


def confusion_figure(counts: np.ndarray, names: Sequence[str], title: str,
                     normalize: bool) -> Figure:
    """The matrix (rows = true class) laid out in inches: cells of 0.6 in (10 classes) down
    to 0.2 in (100), fonts that fit a cell, x labels turned upright when they would touch."""
    k = len(names)
    cell = float(np.clip(6.0 / k, 0.2, 0.6))
    font = float(np.clip(cell * 72 * 0.5, 5, 10))
    labels = style.class_labels(names, max(1, int(cell * 72 // (font * 1.3))))
    widest = max(len(line) for t in labels for line in t.split("\n")) * font * 0.62 / 72
    upright = widest > cell * 0.9
    rows = max(t.count("\n") + 1 for t in labels) * font * 1.25 / 72
    left, bottom = widest + 0.6, (widest if upright else rows) + 0.65
    grid, right, top = cell * k, 1.2, 0.55
    width, height = max(left + grid + right, 6.0), bottom + grid + top
    fig = style.figure(width, height, layout=None)
    ax = fig.add_axes((left / width, bottom / height, grid / width, grid / height))
    cax = fig.add_axes(((left + grid + 0.15) / width, bottom / height, 0.18 / width,
                        grid / height))
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) \
        if normalize else counts
    top_value = 1.0 if normalize else max(float(values.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top_value, interpolation="nearest")
    fig.colorbar(image, cax=cax, label="fraction of the true class" if normalize else "images")
    cax.grid(False)
    ax.set_xticks(range(k), labels, rotation=90 if upright else 0, fontsize=font)
    ax.set_yticks(range(k), labels, fontsize=font)
    ax.grid(False)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= ANNOTATE_UP_TO:
        _annotate(ax, values, top_value, cell, normalize)
    fig.suptitle(title, y=1 - 0.12 / height, va="top")
    return fig


def _annotate(ax: Axes, values: np.ndarray, top_value: float, cell: float,
              normalize: bool) -> None:
    """Each non-zero cell's value, white on dark cells."""
    size = float(np.clip(cell * 72 * 0.3, 4.5, 9))
    for (i, j), v in np.ndenumerate(values):
        if v:
            ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                    fontsize=size, color="white" if v > 0.6 * top_value else "black")

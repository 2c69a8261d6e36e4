"""Reliability diagrams from the ECE bins of metrics_<split>.json: accuracy against confidence
per bin, and how many images each bin holds."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnvit.errors import CnnvitError
from cnnvit.plots import sources, style
from cnnvit.plots.sources import Options, Source
from cnnvit.rundir import ModelEntry

FIELDS = ("lower", "upper", "confidence", "accuracy", "count")


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """One reliability diagram per model (and seed) and split."""
    out = []
    for entry in src.entries:
        for split in opts.splits():
            m = sources.metrics(entry, split)
            bins = _bins(m.get("ece_bins"), str(entry.dir.metrics(split)))
            out.append(style.Drawing(f"reliability_{split}_{sources.stem(entry)}",
                                     partial(_figure, src, entry, split, bins,
                                             sources.number(m.get("ece")))))
    return out


def _bins(raw: Any, path: str) -> np.ndarray:
    """Non-empty bins as rows of (lower, upper, confidence, accuracy, count); bins may be
    objects with those keys or lists in that order."""
    try:
        rows = [[b[f] for f in FIELDS] if isinstance(b, dict) else list(b) for b in raw]
        table = np.array([r for r in rows if r[4]], dtype=float).reshape(-1, len(FIELDS))
    except (TypeError, KeyError, ValueError, IndexError) as e:
        raise CnnvitError(f"{path}: no readable ece_bins ({e}); evaluate the model again "
                          "(`cnnvit evaluate <model dir>`)") from e
    return table


def _figure(src: Source, entry: ModelEntry, split: str, bins: np.ndarray, ece: float) -> Figure:
    fig = style.figure(5.6, 6.4)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    color = src.colors[entry.name]
    lower, upper, confidence, accuracy, count = bins.T
    width, centre = upper - lower, (upper + lower) / 2
    top.bar(centre, accuracy, width=width, color=color, alpha=0.75, edgecolor="white",
            label="accuracy")
    top.bar(centre, confidence - accuracy, bottom=accuracy, width=width, fill=False,
            edgecolor="crimson", hatch="//", lw=0.8, label="gap to confidence")
    top.plot(confidence, confidence, "o", color="black", ms=3, label="mean confidence")
    style.diagonal(top, "perfect calibration")
    top.set_ylabel("accuracy")
    top.legend(loc="upper left")
    top.set_title(f"{sources.label(entry)} · {split} · reliability (ECE {ece:.4f}){src.label}",
                  fontsize=9)
    bottom.bar(centre, count, width=width, color=color, alpha=0.75, edgecolor="white")
    bottom.set_yscale("log" if len(count) and count.max() > 50 * max(count.min(), 1) else "linear")
    bottom.set_ylabel("images")
    bottom.set_xlabel("confidence")
    return fig

"""The look every figure shares: one colour per model, the Agg canvas, a fixed style, and
saving that is atomic and byte-for-byte repeatable."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple

import matplotlib.style
import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from cnnvit.io import atomic_write

DPI = 100
# what each format would otherwise stamp with the date or matplotlib's version
METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}


class Drawing(NamedTuple):
    """A figure to write: its file name without the extension and the function drawing it."""

    name: str
    draw: Callable[[], Figure]


def model_colors(names: Iterable[str]) -> dict[str, str]:
    """The colour of each model: the i-th of the sorted unique names gets the i-th colour of
    tab10, then of tab20's light shades (cycling beyond 20), so a model keeps its colour in
    every figure of a run whatever order or subset it is drawn in."""
    palette = [*colormaps["tab10"](np.arange(10)), *colormaps["tab20"](np.arange(1, 20, 2))]
    return {name: to_hex(palette[i % len(palette)])
            for i, name in enumerate(sorted(set(names)))}


@contextmanager
def context() -> Iterator[None]:
    """matplotlib's default style plus ours, whatever the user's matplotlibrc says."""
    with matplotlib.style.context("default"), rc_context({
            "svg.hashsalt": "cnnvit", "font.size": 9, "axes.titlesize": 10,
            "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": DPI}):
        yield


def figure(width: float, height: float, *,
           layout: Literal["constrained"] | None = "constrained") -> Figure:
    """A figure of `width` × `height` inches on an Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def panels(width: float, height: float, count: int) -> tuple[Figure, list[Axes]]:
    """A figure with `count` panels side by side."""
    fig = figure(width, height)
    axes = fig.subplots(1, count, squeeze=False)[0]
    return fig, list(axes)


def save(fig: Figure, path: Path, fmt: str) -> Path:
    """Write `fig` to `path` atomically, with no date or version in the file."""
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=DPI, metadata=METADATA[fmt]),
                 binary=True)
    return path


def interval_bars(ax: Axes, x: Sequence[float], y: Sequence[float],
                  bounds: Sequence[tuple[float, float] | None]) -> None:
    """Black error bars from each (low, high) around y (none where the bound is None)."""
    for xi, yi, b in zip(x, y, bounds, strict=True):
        if b is not None and np.isfinite(yi):
            err = [[max(0.0, yi - b[0])], [max(0.0, b[1] - yi)]]
            ax.errorbar([xi], [yi], yerr=err, fmt="none", color="black", capsize=4, lw=1.2,
                        zorder=5)


def class_labels(names: Sequence[str], lines: int = 1, width: int = 16) -> list[str]:
    """Class names wrapped to `width` characters a line, at most `lines` lines (then "…")."""
    return ["\n".join(textwrap.wrap(n, width, max_lines=lines, placeholder="…") or [""])
            for n in names]


def diagonal(ax: Axes, label: str | None = None) -> None:
    """The y = x line of ROC and reliability plots, on the unit square."""
    ax.plot([0, 1], [0, 1], ls="--", color="0.55", lw=1, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)

"""Training curves from history.csv: loss, accuracy and val macro-F1 per epoch, with the start
of an extension phase marked."""

from __future__ import annotations

from functools import partial

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnvit.plots import sources, style
from cnnvit.plots.sources import Options, Source
from cnnvit.rundir import ModelEntry

# panel title, train column (or None), val column
PANELS = (("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy"),
          ("val macro-F1", None, "val_f1_macro"))
History = list[tuple[ModelEntry, pd.DataFrame]]


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """One figure per model (and seed), and every model overlaid."""
    histories = [(e, sources.history(e)) for e in src.entries]
    out = [style.Drawing(f"curves_{sources.stem(e)}",
                         partial(_figure, src, [(e, h)], f"{sources.label(e)}: training curves"))
           for e, h in histories]
    out.append(style.Drawing(src.name("curves_all"),
                             partial(_figure, src, histories, "training curves, all models")))
    return out


def _figure(src: Source, histories: History, title: str) -> Figure:
    fig, axes = style.panels(13, 3.8, len(PANELS))
    one = len(histories) == 1
    named: set[str] = set()
    for entry, h in histories:
        color = src.colors[entry.name]
        prefix = "" if one or entry.name in named else f"{entry.name} "
        named.add(entry.name)
        for ax, (_, train, val) in zip(axes, PANELS, strict=True):
            if train:
                ax.plot(h["epoch"], h[train], ls="--", color=color, lw=1.3,
                        label=f"{prefix}train" if prefix or one else None)
            ax.plot(h["epoch"], h[val], ls="-", color=color, lw=1.6,
                    label=f"{prefix}val" if prefix or one else None)
            _mark_phases(ax, h, color)
    for ax, (name, _, _) in zip(axes, PANELS, strict=True):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name != "loss":
            ax.set_ylim(0, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6))
    fig.suptitle(title + src.label)
    return fig


def _mark_phases(ax: Axes, history: pd.DataFrame, color: str) -> None:
    """A dotted line and a label where an extension phase's schedule began."""
    if "phase_start" not in history:
        return
    for start in sorted({int(p) for p in history["phase_start"].dropna() if p > 0}):
        ax.axvline(start + 0.5, color=color, ls=":", lw=1.4)
        text = f"extension from epoch {start + 1}"
        if all(t.get_text() != text for t in ax.texts):  # once, whichever models share it
            ax.annotate(text, xy=(start + 0.5, 0.98), xycoords=("data", "axes fraction"),
                        rotation=90, ha="right", va="top", fontsize=7, color=color)

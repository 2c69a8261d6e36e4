"""The learning curve: test accuracy and macro-F1 against the number of training images (log
scale), one line per model; with several seeds, the mean and a ± std band, else each point's
Wilson interval. Drawn from `results/learning_curve.csv` (`cnnvit compare` writes it when the
run trained `--train-fractions`)."""

from __future__ import annotations

from functools import partial

import pandas as pd
from matplotlib.figure import Figure

from cnnvit.plots import sources, style
from cnnvit.plots.sources import NotAskedFor, Options, Source

FILE = "learning_curve.csv"
COLUMNS = ("model", "seed", "train_images", "accuracy", "accuracy_low", "accuracy_high",
           "f1_macro")


def drawings(src: Source, opts: Options) -> list[style.Drawing]:
    """The learning-curve figure, when the run trained fractions of its training split."""
    path = src.run.results / FILE
    if not path.is_file():
        raise NotAskedFor(f"{path}: missing; the run trained no fractions of its training "
                              f"split (`cnnvit run ... --train-fractions 0.1,0.25,0.5`)")
    table = sources.read_table(path, f"run `cnnvit compare {src.run.root}` again", COLUMNS)
    table = table[table["model"].isin({e.name for e in src.entries})]
    return [style.Drawing(src.name("learning_curve"), partial(_figure, src, table))]


def _figure(src: Source, table: pd.DataFrame) -> Figure:
    fig, axes = style.panels(11, 4.2, 2)
    seeded = table["seed"].notna().any()
    for ax, metric, title in ((axes[0], "accuracy", "test accuracy"),
                              (axes[1], "f1_macro", "test macro-F1")):
        for model, rows in table.groupby("model", sort=True):
            color = src.colors[str(model)]
            by_size = rows.groupby("train_images")[metric]
            mean = by_size.mean()
            ax.plot(mean.index, mean.to_numpy(), "o-", color=color, label=str(model), lw=1.6)
            if seeded:
                std = by_size.std().fillna(0.0).to_numpy()
                ax.fill_between(mean.index, mean.to_numpy() - std, mean.to_numpy() + std,
                                color=color, alpha=0.18, lw=0)
            elif metric == "accuracy":
                ax.fill_between(rows["train_images"], rows["accuracy_low"],
                                rows["accuracy_high"], color=color, alpha=0.18, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("training images (log scale)")
        ax.set_ylabel(title)
    axes[0].legend(loc="lower right")
    band = "mean ± std over seeds" if seeded else "shaded: 95 % Wilson interval of accuracy"
    fig.suptitle(f"Learning curve ({band}){src.label}")
    return fig

"""The sweep figure: test accuracy against FLOPs per image across image sizes.

    plot_sweep(sweep_dir) -> SWEEP_DIR/figures/sweep_accuracy_vs_flops.png

Drawn from `results/sweep_summary.csv` alone (`cnnvit compare SWEEP_DIR` writes it): one
panel per dataset (and variant), one line per model through its image sizes, x = FLOPs per
image (log), y = mean test accuracy with ±1 std error bars, each point labelled with its size.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnnvit.errors import CnnvitError
from cnnvit.plots import style

FIGURE = "sweep_accuracy_vs_flops.png"


def _wide(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × variant × model × size: accuracy mean/std and FLOPs mean."""
    keys = ["dataset", "variant", "model", "image_size"]
    acc = summary[summary["metric"] == "accuracy"].set_index(keys)[["mean", "std"]]
    flops = summary[summary["metric"] == "flops_per_image"].set_index(keys)["mean"]
    out = acc.join(flops.rename("flops")).reset_index()
    return out.sort_values([*keys]).fillna({"std": 0.0, "variant": ""})


def _panel(ax: Axes, part: pd.DataFrame, colors: dict[str, str], title: str) -> None:
    for model, line in part.groupby("model", sort=True):
        line = line.sort_values("image_size")
        ax.errorbar(line["flops"], line["mean"], yerr=line["std"], color=colors[str(model)],
                    marker="o", capsize=3, lw=1.4, label=str(model))
        for _, row in line.iterrows():
            ax.annotate(f"{int(row['image_size'])} px", (row["flops"], row["mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per image (forward, log scale)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(title)
    ax.legend(loc="lower right")


def draw(summary: pd.DataFrame) -> Figure:
    """The figure of a sweep summary (the long table of `compare.sweep.summarize`)."""
    wide = _wide(summary)
    colors = style.model_colors(wide["model"])
    groups = list(wide.groupby(["dataset", "variant"], sort=True))
    fig, axes = style.panels(5.5 * len(groups), 4.2, len(groups))
    for ax, ((dataset, variant), part) in zip(axes, groups, strict=True):
        _panel(ax, part, colors, f"{dataset}" + (f" ({variant})" if variant else ""))
    return fig


def plot_sweep(sweep_dir: str | Path) -> Path:
    """Draw `figures/sweep_accuracy_vs_flops.png` of a sweep directory; return its path."""
    root = Path(sweep_dir)
    csv = root / "results" / "sweep_summary.csv"
    if not csv.is_file():
        raise CnnvitError(f"{csv} not found; `cnnvit compare {root}` writes it")
    summary = pd.read_csv(csv, dtype={"variant": str})
    summary["variant"] = summary["variant"].fillna("")
    with style.context():
        fig = draw(summary)
        return style.save(fig, root / "figures" / FIGURE, "png")

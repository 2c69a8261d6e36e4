"""Overlay PNGs and galleries (matplotlib, Agg backend; one figure reused per model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CMAP = "jet"
ALPHA = 0.45
DISPLAY_MIN = 112  # small inputs (8 px digits, 28 px MedMNIST) are shown at least this large


def display_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 H×W×C → float H'×W'×3 in [0, 1] at `size` (nearest-neighbour: no invented detail)."""
    img = image.astype(np.float32) / 255.0
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    h, w = img.shape[:2]
    rows = (np.arange(size) * h // size).clip(0, h - 1)
    cols = (np.arange(size) * w // size).clip(0, w - 1)
    return img[rows][:, cols]


def upsample_map(m: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map to size×size (the map already has the input's size)."""
    h, w = m.shape
    rows = (np.arange(size) * h // size).clip(0, h - 1)
    cols = (np.arange(size) * w // size).clip(0, w - 1)
    return m[rows][:, cols]


class OverlayWriter:
    """Writes one PNG per sample: the input | the map over the input, with a colour bar."""

    def __init__(self, method: str, size: int) -> None:
        self.size = max(size, DISPLAY_MIN)
        blank = np.zeros((self.size, self.size, 3))
        self.fig, (ax_in, ax_map) = plt.subplots(1, 2, figsize=(6.4, 3.3), dpi=100,
                                                 layout="constrained")
        self.input = ax_in.imshow(blank)
        self.base = ax_map.imshow(blank)
        self.heat = ax_map.imshow(np.zeros((self.size, self.size)), cmap=CMAP, alpha=ALPHA,
                                  vmin=0, vmax=1)
        self.fig.colorbar(self.heat, ax=ax_map, fraction=0.046, pad=0.04,
                          label=f"{method} importance")
        for ax in (ax_in, ax_map):
            ax.set_xticks([])
            ax.set_yticks([])
        ax_in.set_title("input")
        ax_map.set_title(method)
        self.title = self.fig.suptitle("")

    def write(self, path: Path, image: np.ndarray, saliency: np.ndarray, title: str) -> None:
        shown = display_image(image, self.size)
        self.input.set_data(shown)
        self.base.set_data(shown)
        self.heat.set_data(upsample_map(saliency, self.size))
        self.title.set_text(title)
        self.fig.savefig(path)

    def close(self) -> None:
        plt.close(self.fig)


def gallery(path: Path, images: Sequence[np.ndarray], maps: dict[str, Sequence[np.ndarray]],
            row_titles: Sequence[str], cell_titles: dict[str, Sequence[str]], title: str,
            size: int = 96) -> None:
    """Rows = samples; columns = input | each model's map over the input."""
    models = list(maps)
    n_rows, n_cols = len(images), 1 + len(models)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 1.9 * n_rows + 0.5),
                             dpi=90, squeeze=False, layout="constrained")
    for r, image in enumerate(images):
        shown = display_image(image, size)
        axes[r, 0].imshow(shown)
        axes[r, 0].set_title(row_titles[r], fontsize=7)
        for c, name in enumerate(models, start=1):
            axes[r, c].imshow(shown)
            heat = axes[r, c].imshow(upsample_map(maps[name][r], size), cmap=CMAP,
                                     alpha=ALPHA, vmin=0, vmax=1)
            axes[r, c].set_title(cell_titles[name][r], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c, name in enumerate(models, start=1):
        axes[0, c].annotate(name, (0.5, 1.35), xycoords="axes fraction", ha="center",
                            fontsize=9, weight="bold")
    if models:
        fig.colorbar(heat, ax=axes[:, -1].tolist(), fraction=0.05, label="importance")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    plt.close(fig)

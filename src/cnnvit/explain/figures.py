"""Overlay PNGs and galleries (matplotlib, Agg backend).

The blending is done in numpy (colour map × alpha over the image) and each figure has a fixed
layout, so one overlay costs a single `savefig` of two images: hundreds of files take seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

CMAP = "jet"
ALPHA = 0.45
DISPLAY_MIN = 112  # small inputs (8 px digits, 28 px MedMNIST) are shown at least this large


def _nearest(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    rows = (np.arange(size) * h // size).clip(0, h - 1)
    cols = (np.arange(size) * w // size).clip(0, w - 1)
    return a[rows][:, cols]


def display_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 H×W×C → float size×size×3 in [0, 1] (nearest-neighbour: no invented detail)."""
    img = image.astype(np.float32) / 255.0
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return _nearest(img, size)


def blend(image: np.ndarray, saliency: np.ndarray, size: int) -> np.ndarray:
    """The map in colour over the image (both size×size), float RGB in [0, 1]."""
    base = display_image(image, size)
    heat = colormaps[CMAP](_nearest(saliency, size))[..., :3]
    return ((1 - ALPHA) * base + ALPHA * heat).clip(0, 1)


def _colorbar(fig: plt.Figure, rect: tuple[float, float, float, float], label: str) -> None:
    cax = fig.add_axes(rect)
    fig.colorbar(ScalarMappable(Normalize(0, 1), CMAP), cax=cax, label=label)


class OverlayWriter:
    """Writes one PNG per sample: the input | the map over the input, with a colour bar."""

    def __init__(self, method: str, size: int) -> None:
        self.size = max(size, DISPLAY_MIN)
        blank = np.zeros((self.size, self.size, 3))
        self.fig = plt.figure(figsize=(6.4, 3.4), dpi=100)
        ax_in = self.fig.add_axes((0.02, 0.04, 0.4, 0.8))
        ax_map = self.fig.add_axes((0.44, 0.04, 0.4, 0.8))
        _colorbar(self.fig, (0.86, 0.08, 0.022, 0.72), f"{method} importance")
        self.input = ax_in.imshow(blank)
        self.overlay = ax_map.imshow(blank)
        for ax, text in ((ax_in, "input"), (ax_map, f"{method} over the input")):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(text, fontsize=9)
        self.title = self.fig.suptitle("", fontsize=9)

    def write(self, path: Path, image: np.ndarray, saliency: np.ndarray, title: str) -> None:
        self.input.set_data(display_image(image, self.size))
        self.overlay.set_data(blend(image, saliency, self.size))
        self.title.set_text(title)
        self.fig.savefig(path)

    def close(self) -> None:
        plt.close(self.fig)


def _fit(text: str, pixels: int) -> str:
    """Shorten a caption to what fits above a tile `pixels` wide (6 pt text at 100 dpi)."""
    limit = max(8, int(pixels / 4.6))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def gallery(path: Path, images: Sequence[np.ndarray], maps: dict[str, Sequence[np.ndarray]],
            row_titles: Sequence[str], cell_titles: dict[str, Sequence[str]], title: str,
            size: int = 128) -> None:
    """Rows = samples; columns = input | each model's map over the input (one mosaic image)."""
    models = list(maps)
    n_rows, n_cols = len(images), 1 + len(models)
    gap, head = 4, 16  # pixels between tiles, and above each tile for its caption
    cell_w, cell_h = size + gap, size + head + gap
    mosaic = np.ones((n_rows * cell_h, n_cols * cell_w, 3))
    for r, image in enumerate(images):
        y = r * cell_h + head
        mosaic[y:y + size, :size] = display_image(image, size)
        for c, name in enumerate(models, start=1):
            mosaic[y:y + size, c * cell_w:c * cell_w + size] = blend(image, maps[name][r], size)
    dpi = 100
    width, height = mosaic.shape[1] / dpi + 1.1, mosaic.shape[0] / dpi + 0.6
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    ax = fig.add_axes((0.1 / width, 0.1 / height, mosaic.shape[1] / dpi / width,
                       mosaic.shape[0] / dpi / height))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for r in range(n_rows):
        y = r * cell_h + head - 3
        ax.text(0, y, _fit(row_titles[r], size), fontsize=6, va="bottom")
        for c, name in enumerate(models, start=1):
            ax.text(c * cell_w, y, _fit(cell_titles[name][r], size), fontsize=6, va="bottom")
    for c, name in enumerate(["input", *models]):
        ax.text(c * cell_w + size / 2, -6, name, fontsize=8, ha="center", va="bottom",
                weight="bold")
    _colorbar(fig, (1 - 0.8 / width, 0.15 / height, 0.15 / width, 0.6 * mosaic.shape[0] / dpi
                    / height), "importance")
    fig.suptitle(title, fontsize=9, y=1 - 0.05 / height, va="top")
    fig.savefig(path)
    plt.close(fig)

"""Overlay PNGs and galleries (matplotlib, Agg backend), readable at 100 % zoom.

Images are upscaled by a whole factor with nearest neighbour (no invented detail: 8 px digits
and 28 px MedMNIST images become ≥ 224 px overlay panels and ≥ 128 px gallery tiles) and put
on the figure pixel for pixel (`figimage`, no resampling). The map is drawn in a perceptually
uniform colour map (inferno) whose opacity grows with the saliency, from 0 (the image as it
is) to MAX_ALPHA at the map's maximum, so the image stays visible under it. Text is at least
8 pt at the fixed 100 dpi. The PNGs carry no software or time stamp: identical inputs give
identical bytes.

Blending is done in numpy and each figure's layout is fixed, so one overlay costs a single
`savefig`: hundreds of files take seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import IdentityTransform  # noqa: E402

CMAP = "inferno"
MAX_ALPHA = 0.6  # opacity of the colour where the map is 1 (0 where it is 0)
DPI = 100
FONT, TITLE_FONT = 8, 9  # pt
OVERLAY_MIN, GALLERY_MIN = 224, 128  # smallest panel / tile side, px
RIGHT, WRONG = "#1a7f37", "#cf222e"  # caption colours of correct / wrong predictions
FRAME = 3  # px, the red frame around a wrongly predicted tile
BAR = 14  # px, the colour bar's width
PAD, GAP = 8, 14  # px: figure margin, space between tiles
PNG_METADATA = {"Software": None}  # no version string: bytes depend on the inputs only
_MEASURE = RendererAgg(1, 1, DPI)


def display_size(side: int, minimum: int) -> int:
    """`side` times the smallest whole factor that reaches `minimum` px (at least 1)."""
    return side * max(1, -(-minimum // side))


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
    """The map in colour over the image (both size×size), float RGB in [0, 1]: opacity
    MAX_ALPHA × saliency, so a pixel the map gives 0 shows the image unchanged."""
    base = display_image(image, size)
    level = _nearest(np.clip(np.nan_to_num(saliency), 0.0, 1.0), size)
    alpha = (MAX_ALPHA * level)[..., None]
    return ((1 - alpha) * base + alpha * colormaps[CMAP](level)[..., :3]).clip(0, 1)


def _text_width(text: str, size: float, weight: str = "normal") -> float:
    prop = FontProperties(size=size, weight=weight)
    return float(_MEASURE.get_text_width_height_descent(text, prop, ismath=False)[0])


def fit(text: str, pixels: float, size: float = FONT, weight: str = "normal") -> str:
    """`text`, shortened with "…" until it is at most `pixels` wide at `size` pt."""
    while len(text) > 1 and _text_width(text, size, weight) > pixels:
        text = text[:-2].rstrip() + "…"
    return text


def wrap(text: str, pixels: float, size: float = TITLE_FONT) -> list[str]:
    """Greedy word wrap of `text` into lines at most `pixels` wide (a long word is shortened)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(f"{lines[-1]} {word}", size) <= pixels:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(fit(word, pixels, size))
    return lines or [""]


def _line_height(size: float) -> int:
    return int(np.ceil(size * DPI / 72 * 1.35))


def _figure(width: int, height: int) -> Figure:
    return plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def _text(fig: Figure, x: float, y: float, text: str, **kw: Any) -> Text:
    """Text whose top left (by default) is at pixel (x, y), y counted from the top."""
    kw.setdefault("fontsize", FONT)
    kw.setdefault("va", "top")
    return fig.text(x, fig.bbox.height - y, text, transform=IdentityTransform(), **kw)


def _colorbar(fig: Figure, canvas: np.ndarray, x: int, y: int, height: int) -> None:
    """A colour bar painted into `canvas` at pixel (x, y) from the top (BAR px wide, `height`
    tall, 1 at the top), with its ticks and label as text: no axes to redraw on every save."""
    level = np.linspace(1.0, 0.0, height - 2)
    canvas[y:y + height, x:x + BAR] = 0.2  # a dark outline
    canvas[y + 1:y + height - 1, x + 1:x + BAR - 1] = colormaps[CMAP](level)[:, None, :3]
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        row = y + 1 + (1 - value) * (height - 3)
        canvas[int(round(row)), x + BAR:x + BAR + 3] = 0.2
        _text(fig, x + BAR + 5, row, f"{value:g}", va="center_baseline")
    _text(fig, x + BAR + 32, y + height / 2, "importance", rotation=90, ha="center",
          rotation_mode="anchor")


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, metadata=PNG_METADATA)


class OverlayWriter:
    """Writes one PNG per sample: the input | the map over the input, with a colour bar."""

    def __init__(self, method: str, size: int) -> None:
        self.size = display_size(size, OVERLAY_MIN)
        line = _line_height(TITLE_FONT)
        self.top = PAD + 3 * line + 8  # two title lines, then the panel titles
        width = 2 * PAD + 2 * self.size + GAP + 90
        height = self.top + self.size + PAD
        self.width = width
        self.fig = _figure(width, height)
        self.canvas = np.ones((height, width, 3))
        self.image = self.fig.figimage(self.canvas, 0, 0, origin="upper", zorder=-1)
        self.lines = [_text(self.fig, PAD, PAD + i * line, "", fontsize=TITLE_FONT)
                      for i in range(2)]
        for x, label in ((PAD, "input"), (PAD + self.size + GAP, f"{method} over the input")):
            _text(self.fig, x, self.top - line - 2, fit(label, self.size, TITLE_FONT),
                  fontsize=TITLE_FONT)
        _colorbar(self.fig, self.canvas, PAD + 2 * self.size + GAP + 10, self.top, self.size)

    def write(self, path: Path, image: np.ndarray, saliency: np.ndarray, title: str,
              subtitle: str = "", colour: str = "black") -> None:
        """Save the overlay of `saliency` on `image` with a two-line title (the second line,
        e.g. the prediction, in `colour`)."""
        top, side, right = self.top, self.size, PAD + self.size + GAP
        self.canvas[top:top + side, PAD:PAD + side] = display_image(image, side)
        self.canvas[top:top + side, right:right + side] = blend(image, saliency, side)
        self.image.set_data(self.canvas)
        for text, value, color in ((self.lines[0], title, "black"),
                                   (self.lines[1], subtitle, colour)):
            text.set_text(fit(value, self.width - 2 * PAD, TITLE_FONT))
            text.set_color(color)
        _save(self.fig, path)

    def close(self) -> None:
        plt.close(self.fig)


@dataclass(frozen=True)
class Mark:
    """What a model predicted for a gallery sample, and whether it was right."""

    prediction: str
    confidence: float
    correct: bool

    @property
    def caption(self) -> str:
        return f"pred: {self.prediction} {'✓' if self.correct else '✗'}"

    @property
    def colour(self) -> str:
        return RIGHT if self.correct else WRONG


def prediction_marks(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray,
                     confidence: Sequence[float] | np.ndarray,
                     class_names: Sequence[str]) -> list[Mark]:
    """One model's marks for gallery samples with true classes `labels`."""
    return [Mark(class_names[int(p)], float(c), int(p) == int(y))
            for y, p, c in zip(labels, predictions, confidence, strict=True)]


@dataclass(frozen=True)
class Column:
    """One model's gallery column: its maps and marks, one per row."""

    name: str
    method: str
    maps: Sequence[np.ndarray]
    marks: Sequence[Mark]


@dataclass(frozen=True)
class Tile:
    """A drawn gallery tile: its row, column name, pixel box (x0, y0, x1, y1; from the top
    left of the PNG, exclusive ends), the caption under it and its mark (a wrong prediction's
    tile is framed red)."""

    row: int
    column: str
    box: tuple[int, int, int, int]
    caption: str
    mark: Mark


def _caption(mark: Mark, pixels: float) -> str:
    """`mark.caption` fitted to `pixels`, shortening the class name but keeping ✓ / ✗."""
    symbol = mark.caption[-2:]
    return fit(mark.caption[:-2], pixels - _text_width(symbol, FONT, "bold"),
               weight="bold") + symbol


def gallery(path: Path, images: Sequence[np.ndarray], captions: Sequence[str],
            columns: Sequence[Column], title: str, minimum: int = GALLERY_MIN) -> list[Tile]:
    """Rows = samples; columns = the input (with its two-line caption, lines split at "\\n") |
    each model's map over the input, captioned "pred: <class> ✓" in green, or "pred: <class> ✗"
    in red with a red frame round the tile, and the confidence. Returns the tiles drawn."""
    side = display_size(max(image.shape[0] for image in images), minimum)
    line = _line_height(FONT)
    cell_w, cell_h = side + GAP, side + 2 * line + 4 + GAP
    grid_w = (1 + len(columns)) * cell_w - GAP
    width = 2 * PAD + grid_w + 90
    title_lines = wrap(title, width - 2 * PAD)
    top = PAD + len(title_lines) * _line_height(TITLE_FONT) + 2 * line + 12
    height = top + len(images) * cell_h - GAP + PAD
    canvas = np.ones((height, width, 3))
    tiles = []
    for r, image in enumerate(images):
        y = top + r * cell_h
        canvas[y:y + side, PAD:PAD + side] = display_image(image, side)
        for c, column in enumerate(columns, start=1):
            x, mark = PAD + c * cell_w, column.marks[r]
            if not mark.correct:
                canvas[y - FRAME:y + side + FRAME, x - FRAME:x + side + FRAME] = to_rgb(WRONG)
            canvas[y:y + side, x:x + side] = blend(image, column.maps[r], side)
            tiles.append(Tile(r, column.name, (x, y, x + side, y + side),
                              _caption(mark, side), mark))
    fig = _figure(width, height)
    _colorbar(fig, canvas, PAD + grid_w + 10, top, min(2 * side, len(images) * cell_h - GAP))
    fig.figimage(canvas, 0, 0, origin="upper", zorder=-1)
    for i, text in enumerate(title_lines):
        _text(fig, PAD, PAD + i * _line_height(TITLE_FONT), text, fontsize=TITLE_FONT)
    for c, (name, method) in enumerate([("input", ""), *((k.name, k.method) for k in columns)]):
        _text(fig, PAD + c * cell_w, top - 2 * line - 4, fit(name, side, weight="bold"),
              weight="bold")
        _text(fig, PAD + c * cell_w, top - line - 4, fit(method, side))
    for r, caption in enumerate(captions):
        for i, text in enumerate(caption.split("\n")[:2]):
            _text(fig, PAD, top + r * cell_h + side + 4 + i * line, fit(text, side))
    for tile in tiles:
        x, y = tile.box[0], tile.box[3] + 4
        _text(fig, x, y, tile.caption, color=tile.mark.colour, weight="bold")
        _text(fig, x, y + line, f"confidence {tile.mark.confidence:.2f}")
    _save(fig, path)
    plt.close(fig)
    return tiles

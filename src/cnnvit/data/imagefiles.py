"""Decode image files into one uint8 N×H×W×C array, whatever their modes and sizes.

Modes: grey modes ("1", "L", "LA", 16-bit "I;16*" and 32-bit "I") stay grey unless another
image has colour; everything else ("RGB", "RGBA", palette "P", "CMYK", ...) is colour, and one
colour image makes the whole set RGB (grey images are repeated into 3 channels, losslessly).
Transparency (RGBA, LA, PA, a palette's or PNG's transparent colour) is composited onto white,
never dropped, so transparent regions do not show whatever colour they happened to store.
"I;16*" and "I" images are read as 16-bit (0..65535 scaled to 0..255, values outside clipped).
32-bit float images ("F") have no fixed range and are refused like unreadable files.
Sizes: images that differ from the target size (the requested one, else the most common) are
resized with bilinear filtering (antialiased when shrinking). Every conversion, resize and
skipped file is counted in the returned notes; `strict=True` refuses them instead, naming the
first offending file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from cnnvit.errors import DataError

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SHOWN = 5  # file names listed in a note before "and N more"
# what PIL raises for a file it cannot decode (and `decode` for float pixels)
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class UnsupportedImage(ValueError):
    """A readable image cnnvit cannot convert without guessing (e.g. float pixels)."""


@dataclass
class Decoded:
    """One image: uint8 H×W (grey) or H×W×3 pixels and the file's PIL mode (+ "with
    transparency" when a non-alpha mode carries a transparent colour)."""

    pixels: np.ndarray
    mode: str

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


@dataclass
class Images:
    """The decoded images, which of the given files they are, and what was done to them."""

    array: np.ndarray       # uint8 N×H×W×C
    kept: list[int]         # index into the given files of each image
    notes: list[str]


def decode(path: Path | BinaryIO) -> Decoded:
    """Read one image file (a path, or its bytes as an open binary file) as grey or RGB uint8
    pixels (see the module docstring)."""
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "F":
            raise UnsupportedImage("32-bit float pixels have no fixed range; save as 8-bit")
        if mode == "I" or mode.startswith("I;16"):
            values = np.asarray(im).astype(np.float64) / 257.0
            return Decoded(np.clip(np.round(values), 0, 255).astype(np.uint8), mode)
        target = "L" if mode in GREY_MODES else "RGB"
        if mode in ALPHA_MODES or "transparency" in im.info:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            flat = Image.alpha_composite(white, im.convert("RGBA"))
            label = mode if mode in ALPHA_MODES else f"{mode} with transparency"
            return Decoded(np.asarray(flat.convert(target)), label)
        return Decoded(np.asarray(im if mode == target else im.convert(target)), mode)


def read_images(files: list[Path], root: Path, *, size: int | None = None,
                strict: bool = False) -> Images:
    """Decode `files` into one array: unreadable files skipped (listed in a note), modes and
    sizes unified (counted in notes); `strict` refuses each of these instead. size: the side
    that images of differing sizes are resized to (None: the most common size); a set of one
    size keeps it (the batch pipeline resizes on the device)."""
    decoded, kept, unreadable = [], [], []
    for i, f in enumerate(files):
        try:
            decoded.append(decode(f))
            kept.append(i)
        except DECODE_ERRORS as e:
            reason = unreadable_reason(e, f)
            if strict:
                raise DataError(f"{f} cannot be read as an image ({reason}); remove or replace "
                                f"it (without --strict it would be skipped)") from e
            unreadable.append(f"{_rel(f, root)} ({reason})")
    if not decoded:
        raise DataError(f"{root}: none of the {len(files)} image files can be read (e.g. "
                        f"{unreadable[0]}); check the files are images")
    if strict:
        _refuse_mixed(decoded, [files[i] for i in kept])
    colour = any(d.pixels.ndim == 3 for d in decoded)
    sizes = Counter(d.size for d in decoded)
    mixed = len(sizes) > 1
    target = (size, size) if size and mixed else sizes.most_common(1)[0][0]
    notes = _notes(decoded, colour, target, "the requested size" if size else
                   "the most common size")
    if unreadable:
        notes.insert(0, f"skipped {len(unreadable)} unreadable image file"
                        f"{'s' if len(unreadable) > 1 else ''}: {shown(unreadable)}")
    array = np.stack([_unified(d, colour, target) for d in decoded])
    return Images(array, kept, notes)


def unreadable_reason(error: Exception, path: Path) -> str:
    """Why a file could not be decoded, in a few words."""
    if path.is_file() and path.stat().st_size == 0:
        return "an empty file, 0 bytes"
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return reason.replace(f" '{path}'", "")  # PIL repeats the path the message already names


def _refuse_mixed(decoded: list[Decoded], files: list[Path]) -> None:
    """--strict: every image must have the first image's mode and size."""
    first = decoded[0]
    for d, f in zip(decoded, files, strict=True):
        if d.mode != first.mode:
            raise DataError(f"{f} is a {d.mode} image but {files[0]} is {first.mode}: --strict "
                            f"refuses mixed image modes (convert them all to one mode, or drop "
                            f"--strict to convert them automatically)")
        if d.size != first.size:
            raise DataError(f"{f} is {_wh(d.size)} but {files[0]} is {_wh(first.size)}: --strict "
                            f"refuses images of different sizes (resize them to one size, or "
                            f"drop --strict to resize them automatically)")


def _unified(d: Decoded, colour: bool, target: tuple[int, int]) -> np.ndarray:
    """H×W×C pixels at the target size, RGB when `colour`, else grey."""
    pixels = d.pixels
    if d.size != target:
        pixels = np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BILINEAR))
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.repeat(pixels, 3, axis=2) if colour and pixels.shape[2] == 1 else pixels


def _notes(decoded: list[Decoded], colour: bool, target: tuple[int, int],
           why: str) -> list[str]:
    """What unifying changed: images converted to the common mode, images resized."""
    common = "RGB" if colour else "L"
    changed = Counter(d.mode for d in decoded if d.mode != common)
    notes = []
    if changed:
        parts = [f"{n} from {mode}{_detail(mode)}" for mode, n in sorted(changed.items())]
        total = sum(changed.values())
        notes.append(f"converted {total} image{'s' if total > 1 else ''} to "
                     f"{'RGB' if colour else 'grey'}: {', '.join(parts)}")
    sizes = Counter(d.size for d in decoded)
    resized = sum(n for s, n in sizes.items() if s != target)
    if resized:
        found = ", ".join(f"{_wh(s)} ×{n}" for s, n in sizes.most_common())
        notes.append(f"resized {resized} image{'s' if resized > 1 else ''} to {_wh(target)} "
                     f"({why}; sizes found: {found})")
    return notes


def _detail(mode: str) -> str:
    if mode in ALPHA_MODES or mode.endswith("transparency"):
        return " (alpha composited on white)"
    if mode == "I" or mode.startswith("I;16"):
        return " (16-bit, scaled to 0..255)"
    return ""


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def shown(items: list[str]) -> str:
    """The first few items and how many more."""
    more = len(items) - SHOWN
    return ", ".join(items[:SHOWN]) + (f" and {more} more" if more > 0 else "")

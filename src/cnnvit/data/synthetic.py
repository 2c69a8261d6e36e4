"""Synthetic MedMNIST-layout datasets with learnable classes, for tests and demos."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from cnnvit.data.types import SPLITS
from cnnvit.errors import DataError
from cnnvit.io import atomic_write

# Class k draws shape k % 6 in colour k % 8 at angle 2πk/K around the centre.
PALETTE = np.array([[230, 60, 60], [60, 200, 80], [70, 110, 240], [240, 210, 50],
                    [200, 70, 220], [60, 210, 220], [250, 140, 40], [235, 235, 235]], np.float32)
Mask = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SHAPES: tuple[Mask, ...] = (
    lambda dy, dx, r: dy**2 + dx**2 <= r**2,                                        # disc
    lambda dy, dx, r: np.maximum(abs(dy), abs(dx)) <= 0.8 * r,                      # square
    lambda dy, dx, r: abs(dy) + abs(dx) <= 1.1 * r,                                 # diamond
    lambda dy, dx, r: (dy**2 + dx**2 <= r**2) & (dy**2 + dx**2 >= (0.55 * r)**2),   # ring
    lambda dy, dx, r: ((abs(dy) <= 0.3 * r) & (abs(dx) <= r))
    | ((abs(dx) <= 0.3 * r) & (abs(dy) <= r)),                                      # plus
    lambda dy, dx, r: (dy <= 0.8 * r) & (abs(dx) <= (dy + r) * 0.55),               # triangle
)
CHUNK_PIXELS = 1 << 20  # draw in chunks of about this many pixels to bound memory


def write_synthetic(path: str | os.PathLike, shape: tuple[int, int, int] = (28, 28, 3),
                    classes: int = 8, samples: tuple[int, int, int] = (800, 100, 200),
                    seed: int = 0) -> Path:
    """Write a SYNTHETIC MedMNIST-layout .npz (H×W×C images, labels N×1, a `synthetic` marker
    and `class_names` "synthetic_0".."synthetic_{K-1}"); returns its path."""
    height, width, channels = _check(shape, classes, samples)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {"synthetic": np.array(True),
                                     "class_names": np.array([f"synthetic_{k}"
                                                              for k in range(classes)])}
    for name, n in zip(SPLITS, samples, strict=True):
        labels = rng.permutation(np.arange(n) % classes)
        images = draw(labels, classes, height, width, channels, rng)
        arrays[f"{name}_images"] = images[..., 0] if channels == 1 else images
        arrays[f"{name}_labels"] = labels.reshape(-1, 1)
    out = Path(path)
    # every array is numeric; np.savez is typed loosely so that **arrays is not matched against
    # its allow_pickle parameter (numpy < 2.1 has none and would store it as an array)
    savez = cast(Callable[..., None], np.savez)
    atomic_write(out, lambda f: savez(f, **arrays), binary=True)
    return out


def draw(labels: np.ndarray, classes: int, height: int, width: int, channels: int,
         rng: np.random.Generator) -> np.ndarray:
    """uint8 N×H×W×C images of each label's pattern with jittered position, size, brightness,
    background level and gaussian grain (shared by the channels)."""
    out = np.empty((len(labels), height, width, channels), np.uint8)
    step = max(1, CHUNK_PIXELS // (height * width))
    for start in range(0, len(labels), step):
        part = labels[start:start + step]
        out[start:start + step] = _draw_chunk(part, classes, height, width, channels, rng)
    return out


def _draw_chunk(labels: np.ndarray, classes: int, height: int, width: int, channels: int,
                rng: np.random.Generator) -> np.ndarray:
    n, side = len(labels), min(height, width)
    angle = 2 * np.pi * labels / classes
    cy = height / 2 + 0.22 * side * np.sin(angle) + rng.normal(0, 0.04 * side, n)
    cx = width / 2 + 0.22 * side * np.cos(angle) + rng.normal(0, 0.04 * side, n)
    radius = (0.2 * side * rng.uniform(0.8, 1.2, n)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy = yy[None] - cy[:, None, None].astype(np.float32)
    dx = xx[None] - cx[:, None, None].astype(np.float32)
    mask = np.zeros((n, height, width), bool)
    kind = labels % len(SHAPES)
    for k, shape in enumerate(SHAPES):
        sel = kind == k
        if sel.any():
            mask[sel] = shape(dy[sel], dx[sel], radius[sel, None, None])
    colour = PALETTE[labels % len(PALETTE)]
    if channels == 1:
        colour = colour.mean(axis=1, keepdims=True)
    colour = colour * rng.uniform(0.7, 1.0, (n, 1)).astype(np.float32)
    background = rng.uniform(15, 60, (n, 1, 1, 1)).astype(np.float32)
    images = np.where(mask[..., None], colour[:, None, None, :], background)
    images += rng.standard_normal((n, height, width, 1), dtype=np.float32) * 12  # grain
    return np.clip(images + 0.5, 0, 255).astype(np.uint8)


def _check(shape: tuple[int, int, int], classes: int,
           samples: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 8 or shape[0] != shape[1]:
        raise DataError(f"synthetic shape must be S×S×C with S >= 8 and C 1 or 3, got {shape}")
    if classes < 2:
        raise DataError(f"synthetic data needs at least 2 classes, got {classes}")
    if len(samples) != 3 or min(samples) < classes:
        raise DataError(f"synthetic samples must be three counts train,val,test of at least "
                        f"{classes} (one per class), got {samples}")
    return shape[0], shape[1], shape[2]

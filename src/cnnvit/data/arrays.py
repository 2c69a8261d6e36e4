"""Turn raw arrays from any source into validated uint8 images, int64 labels and Splits."""

from __future__ import annotations

import numpy as np

from cnnvit.data.types import SPLITS, Split
from cnnvit.errors import DataError
from cnnvit.metrics import TASKS


def to_images(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 N×H×W×C (C 1 or 3): adds the channel axis to N×H×W, refuses lossy conversions."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images must be N×H×W (grey) or N×H×W×C with C 1 or 3, "
                        f"got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind not in "biuf" or (images.size and not (
            np.all(images == np.round(images)) and images.min() >= 0 and images.max() <= 255)):
        raise DataError(f"{where}: images are {images.dtype} with values that are not whole "
                        f"numbers in 0..255; save them as uint8 0..255")
    return images.astype(np.uint8)


def to_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """int64 class indices (N,) from N or N×1 labels; refuses multi-label and non-integer labels."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be N or N×1 class indices, got shape "
                        f"{labels.shape}; multi-label data is not supported yet")
    if labels.dtype.kind not in "biuf" or (labels.size and not (
            np.all(labels == np.round(labels)) and labels.min() >= 0)):
        raise DataError(f"{where}: labels must be non-negative whole class indices, "
                        f"got {labels.dtype}")
    return labels.astype(np.int64)


def check_task(task: str, where: str) -> str:
    """Return `task` if cnnvit can train it; refuse multi-label and ordinal-regression clearly."""
    if task in TASKS:
        return task
    raise DataError(f"{where}: task '{task}' is not supported yet (cnnvit trains single-label "
                    f"{' and '.join(TASKS)} classifiers only); choose another dataset")


def default_task(num_classes: int) -> str:
    """MedMNIST's convention: two classes is a binary-class task."""
    return "binary-class" if num_classes == 2 else "multi-class"


def build_splits(raw: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int,
                 where: str) -> dict[str, Split]:
    """Validated Splits from {split: (images, labels)}: one square image shape for all splits,
    no empty split, every label below `num_classes` (at least 2)."""
    if num_classes < 2:
        raise DataError(f"{where}: found {num_classes} class; a classifier needs at least 2")
    splits = {}
    for name in SPLITS:
        images = to_images(raw[name][0], f"{where} {name}")
        labels = to_labels(raw[name][1], f"{where} {name}")
        if len(labels) == 0:
            raise DataError(f"{where}: the {name} split is empty; every split needs images")
        if labels.max() >= num_classes:
            raise DataError(f"{where} {name}: label {labels.max()} is out of range for "
                            f"{num_classes} classes; give one class name per label")
        splits[name] = Split(images, labels)
    shapes = {name: s.images.shape[1:] for name, s in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{where}: image shapes differ between splits {shapes}; "
                        f"store every split at one size and channel count")
    height, width, _ = shapes["train"]
    if height != width:
        raise DataError(f"{where}: images are {height}×{width}, not square; "
                        f"crop or resize them to a square size first")
    return splits

"""Seeded stratified splits, shared by every source that has to carve its own splits."""

from __future__ import annotations

import numpy as np

from cnnvit.errors import DataError

SPLIT_SEED = 0  # fixed: every run, whatever its training seed, compares on the same split


def carve(labels: np.ndarray, size: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the indices of `labels` into (rest, carved) with `size` carved images.
    Both index arrays are sorted, so the original order is kept inside each part."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    try:
        rest, carved = train_test_split(index, test_size=size, stratify=labels,
                                        random_state=seed)
    except ValueError as e:
        counts = np.bincount(labels)
        raise DataError(f"cannot carve a stratified split of {size} from {len(labels)} images "
                        f"(smallest class has {counts[counts > 0].min()}): {e}; "
                        f"add images so every class has a few in each split") from e
    return np.sort(rest), np.sort(carved)


def three_way(labels: np.ndarray, val: float = 0.1, test: float = 0.2,
              seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices with the given val and test fractions of the total."""
    n = len(labels)
    rest, test_idx = carve(labels, round(test * n), seed)
    train_sub, val_sub = carve(labels[rest], round(val * n), seed)
    return {"train": rest[train_sub], "val": rest[val_sub], "test": test_idx}


def note(val: float = 0.1, test: float = 0.2) -> str:
    """The split_note for a `three_way` split."""
    train = 1 - val - test
    return (f"stratified {train:.0%}/{val:.0%}/{test:.0%} train/val/test split with fixed seed "
            f"{SPLIT_SEED} (the same for every run)")

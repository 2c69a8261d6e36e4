"""Training on a fraction of the training split, for learning curves.

The subset is stratified (each class keeps its share), nested (a smaller fraction's images are
among a larger one's) and seeded: it depends only on the labels, the fraction and the seed, so
every model of a study, and every run of it, trains on the same images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cnnvit.data.types import Dataset, Split


def nested_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified `fraction` of `labels`: for each class, the first
    round(fraction × its count) (at least one) of a seeded permutation of its indices."""
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):  # the same draws, in the same order, for every fraction
        members = np.flatnonzero(labels == cls)
        order = members[rng.permutation(len(members))]
        keep.append(order[:max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(keep))


def with_train_fraction(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """`ds` with its training split cut to `nested_subset` (itself when fraction is 1); the
    validation and test splits are unchanged."""
    if fraction >= 1:
        return ds
    train = ds["train"]
    keep = nested_subset(train.labels, fraction, seed)
    note = (f"trained on {fraction:g} of the training split: {len(keep)} of {len(train)} "
            f"images, stratified, nested, seed {seed}")
    info = dataclasses.replace(ds.info, split_note=f"{ds.info.split_note}; {note}".lstrip("; "))
    return Dataset(info, {**ds.splits, "train": Split(train.images[keep], train.labels[keep])})

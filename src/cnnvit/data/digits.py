"""`digits`: scikit-learn's bundled 8×8 handwritten digits, the offline default."""

from __future__ import annotations

import numpy as np

from cnnvit.data import split
from cnnvit.data.types import Dataset, DatasetInfo
from cnnvit.data.validate import build_splits


def load(spec: str) -> Dataset:
    """1797 grey 8×8 digits scaled from 0..16 to uint8 0..255, split 70/10/20 (fixed seed)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * 255 / 16).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    index = split.three_way(labels)
    names = [str(i) for i in range(10)]
    valid = build_splits({s: (images[i], labels[i]) for s, i in index.items()},
                         "digits (scikit-learn)", class_names=names,
                         metadata="scikit-learn's digits")
    return Dataset(DatasetInfo(spec=spec, name="digits", task="multi-class", class_names=names,
                               channels=1, image_size=8, source="digits",
                               split_note=split.note(), notes=valid.notes), valid.splits)

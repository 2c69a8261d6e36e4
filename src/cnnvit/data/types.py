"""The in-memory form every data source ends in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: uint8 images (N, H, W, C) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×H×W×C, got {self.images.dtype} "
                             f"{self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DatasetInfo:
    """What a dataset is: enough to build the model, the loss and the metrics."""

    spec: str                      # the spec the user gave, e.g. "medmnist:bloodmnist"
    name: str                      # short name, e.g. "bloodmnist"
    task: str                      # "multi-class" or "binary-class"
    class_names: list[str]
    channels: int
    image_size: int                # native side length (square images)
    source: str                    # "digits", "medmnist", "cifar", "npz", "folder", "synthetic"
    synthetic: bool = False
    md5: str | None = None         # checksum of the file the data came from, when one exists
    files: list[str] = field(default_factory=list)
    split_note: str = ""           # how the splits were made (official / seeded stratified ...)
    notes: list[str] = field(default_factory=list)  # warnings: absent classes, skipped files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Dataset:
    """A loaded dataset: info plus the train, val and test splits."""

    info: DatasetInfo
    splits: dict[str, Split]

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]

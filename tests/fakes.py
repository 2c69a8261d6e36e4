"""Small files in the real formats of MedMNIST and CIFAR, written by the tests."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import medmnist
import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from cnnvit import data

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_fake_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 20) -> Path:
    """cifar-10-batches-py with data_batch_1..5, test_batch and batches.meta (latin1 pickles of
    {"data": uint8 N×3072 (channel-major rows), "labels": [...]}); torchvision's md5 lists are
    patched to the fake files' md5s."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_list, test_list = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": name, "labels": [i % 10 for i in range(per_batch)],
                 "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        (test_list if name == "test_batch" else train_list).append([name, md5(folder / name)])
    meta = {"label_names": NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", test_list)
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return folder


def write_fake(directory: Path, flag: str, size: int = 28, classes: int = 8,
               channels: int = 3, n: tuple[int, int, int] = (24, 8, 16)) -> Path:
    """A MedMNIST-format npz: uint8 images N×S×S(×3), uint8 labels N×1."""
    rng = np.random.default_rng(0)
    shape = (size, size, 3) if channels == 3 else (size, size)
    arrays = {}
    for split, count in zip(data.SPLITS, n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % classes).astype(np.uint8)[:, None]
    suffix = "" if size == 28 else f"_{size}"
    path = directory / f"{flag}{suffix}.npz"
    np.savez_compressed(path, **arrays)
    return path


def trust(monkeypatch: pytest.MonkeyPatch, flag: str, path: Path, size: int = 28) -> str:
    """Make medmnist.INFO list the fake file's md5 (on a copy of the flag's entry)."""
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    key = "MD5" if size == 28 else f"MD5_{size}"
    monkeypatch.setitem(medmnist.INFO, flag, {**medmnist.INFO[flag], key: digest})
    return digest



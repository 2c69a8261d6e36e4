"""`cifar10` / `cifar100` through torchvision, with a fixed stratified validation split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnvit.data import checksum, split
from cnnvit.data.download import explained_failure
from cnnvit.data.spec import resolve_root
from cnnvit.data.types import Dataset, DatasetInfo
from cnnvit.data.validate import build_splits
from cnnvit.errors import DataError

if TYPE_CHECKING:  # torchvision is imported lazily; CIFAR100 subclasses CIFAR10
    from torchvision.datasets import CIFAR10

CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
DEFAULT_ROOT = Path("~/.cache/cnnvit")
VAL_FRACTION = 10  # val = 1/10 of the official train set: 5000 images for CIFAR-10 and -100


def _dataset_class(name: str) -> type[CIFAR10]:
    import torchvision.datasets

    return getattr(torchvision.datasets, CLASSES[name])


def _missing_message(name: str, cls: type[CIFAR10], directory: Path) -> str:
    return (f"{cls.filename} not found in {directory} (nor its extracted folder "
            f"{cls.base_folder}): download {cls.url} (md5 {cls.tgz_md5}) into {directory}, "
            f"or run `cnnvit data fetch {name}` (or add --download) to download it")


def _corrupt_message(name: str, cls: type[CIFAR10], directory: Path, detail: str) -> str:
    return (f"{directory / cls.base_folder} failed torchvision's checksum check ({detail}); "
            f"delete that folder and run `cnnvit data fetch {name}`")


def _intact(cls: type[CIFAR10], directory: Path) -> bool:
    """torchvision's own per-file md5 check of the extracted folder, metadata included."""
    from torchvision.datasets.utils import check_integrity

    files = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    return all(check_integrity(str(directory / cls.base_folder / f), md5) for f, md5 in files)


def _prepare(name: str, root: str | None, download: bool) -> tuple[type[CIFAR10], Path]:
    """Make the extracted folder exist: extract a present archive, or download when asked."""
    from torchvision.datasets.utils import download_and_extract_archive, extract_archive

    cls = _dataset_class(name)
    directory = resolve_root(root, DEFAULT_ROOT)
    if (directory / cls.base_folder).is_dir():
        return cls, directory
    archive = directory / cls.filename
    if archive.is_file():
        if checksum.md5(archive) != cls.tgz_md5:
            raise DataError(f"{archive} does not have md5 {cls.tgz_md5}: the archive is corrupt "
                            f"or another version; delete it and run `cnnvit data fetch {name}`")
        extract_archive(str(archive), str(directory))
    elif download:
        with explained_failure(archive, _missing_message(name, cls, directory)):
            download_and_extract_archive(cls.url, str(directory), filename=cls.filename,
                                         md5=cls.tgz_md5)
    else:
        raise DataError(_missing_message(name, cls, directory))
    return cls, directory


def load(spec: str, name: str, *, root: str | None, download: bool,
         strict: bool = False) -> Dataset:
    """Official test set; val = a stratified 10% of the official train set (fixed seed)."""
    cls, directory = _prepare(name, root, download)
    try:
        train, test = cls(str(directory), train=True), cls(str(directory), train=False)
    except RuntimeError as e:
        raise DataError(_corrupt_message(name, cls, directory, str(e))) from e
    labels = np.asarray(train.targets, dtype=np.int64)
    rest, val = split.carve(labels, len(labels) // VAL_FRACTION)
    raw = {"train": (train.data[rest], labels[rest]), "val": (train.data[val], labels[val]),
           "test": (test.data, np.asarray(test.targets))}
    names = list(train.classes)
    valid = build_splits(raw, str(directory / cls.base_folder), class_names=names,
                         metadata=cls.meta["filename"], strict=strict)
    note = (f"official test set; val = {len(val)} images carved from the official train set "
            f"(stratified, fixed seed {split.SPLIT_SEED}, the same for every run)")
    return Dataset(DatasetInfo(spec=spec, name=name, task="multi-class", class_names=names,
                               channels=3, image_size=32, source="cifar", md5=cls.tgz_md5,
                               files=[str(directory / cls.base_folder)], split_note=note,
                               notes=valid.notes), valid.splits)


def fetch(name: str, root: str | None) -> list[Path]:
    """Download and extract the archive unless the extracted folder is already present."""
    cls, directory = _prepare(name, root, download=True)
    if not _intact(cls, directory):
        raise DataError(_corrupt_message(name, cls, directory, "a file is missing or differs"))
    return [directory / cls.base_folder]


def verify(name: str, root: str | None) -> str:
    """Check the extracted folder exists and passes torchvision's per-file md5 check."""
    cls = _dataset_class(name)
    directory = resolve_root(root, DEFAULT_ROOT)
    if not (directory / cls.base_folder).is_dir():
        raise DataError(_missing_message(name, cls, directory))
    if not _intact(cls, directory):
        raise DataError(_corrupt_message(name, cls, directory, "a file is missing or differs"))
    return f"ok: {directory / cls.base_folder} passes torchvision's md5 check"


"""`folder:<path>`: class-per-directory images, with or without train/val/test subfolders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cnnvit.data import split
from cnnvit.data.arrays import build_splits, default_task
from cnnvit.data.types import SPLITS, Dataset, DatasetInfo
from cnnvit.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
VAL_FROM_TRAIN = 0.1


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(path: Path) -> dict[str, list[Path]]:
    """{class name: sorted image files} for the class folders directly under `path`."""
    classes = {}
    for d in _subdirs(path):
        files = sorted(f for f in d.iterdir()
                       if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not files:
            raise DataError(f"{d} has no images ({', '.join(EXTENSIONS)}); "
                            f"remove the folder or add images")
        classes[d.name] = files
    if not classes:
        raise DataError(f"no class folders in {path}: expected {path}/<class>/<images> or "
                        f"{path}/{{train,val,test}}/<class>/<images>")
    return classes


def _read_images(files: list[Path]) -> np.ndarray:
    """One uint8 N×H×W×C array: grey (C=1) when every image is grey, else RGB; all one size."""
    sizes, modes = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
                modes.append(im.mode)
        except OSError as e:
            raise DataError(f"cannot read image {f} ({e}); remove or replace it") from e
    other = next((i for i, size in enumerate(sizes) if size != sizes[0]), None)
    if other is not None:
        (w0, h0), (w1, h1) = sizes[0], sizes[other]
        raise DataError(f"image sizes differ: {files[0]} is {w0}×{h0} but {files[other]} is "
                        f"{w1}×{h1}; resize all images to one size first")
    mode = "L" if all(m in GREY_MODES for m in modes) else "RGB"
    arrays = []
    for f in files:
        with Image.open(f) as im:
            arrays.append(np.asarray(im.convert(mode)))
    stacked = np.stack(arrays)
    return stacked[..., None] if mode == "L" else stacked


def load(spec: str, path: str) -> Dataset:
    """Flat layout: a stratified 70/10/20 split (fixed seed). Split layout: the given splits,
    with val carved from train (10%, stratified, fixed seed) when there is no val folder."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    top = {d.name for d in _subdirs(root)}
    if {"train", "test"} <= top and top <= set(SPLITS):
        per_split = {s: _class_files(root / s) for s in SPLITS if s in top}
        names = sorted(per_split["train"])
        for s, classes in per_split.items():
            if sorted(classes) != names:
                raise DataError(f"class folders differ between splits: train has "
                                f"{', '.join(names)} but {s} has {', '.join(sorted(classes))}; "
                                f"use the same class folders in every split")
    else:
        per_split = {"all": _class_files(root)}
        names = sorted(per_split["all"])
    entries = [(s, names.index(c), f) for s, classes in per_split.items()
               for c, files in classes.items() for f in files]
    images = _read_images([f for _, _, f in entries])
    labels = np.array([k for _, k, _ in entries], dtype=np.int64)
    origin = np.array([s for s, _, _ in entries])
    if "all" in per_split:
        index = split.three_way(labels)
        note = split.note()
    else:
        index = {s: np.flatnonzero(origin == s) for s in per_split}
        note = "train/val/test folders as given"
        if "val" not in index:
            train = index["train"]
            rest, val = split.carve(labels[train], round(VAL_FROM_TRAIN * len(train)))
            index["train"], index["val"] = train[rest], train[val]
            note = (f"train/test folders as given; val = {len(val)} images carved from train "
                    f"({VAL_FROM_TRAIN:.0%}, stratified, fixed seed {split.SPLIT_SEED})")
    splits = build_splits({s: (images[i], labels[i]) for s, i in index.items()}, len(names),
                          str(root))
    return Dataset(DatasetInfo(spec=spec, name=root.name, task=default_task(len(names)),
                               class_names=names, channels=images.shape[3],
                               image_size=images.shape[1], source="folder", files=[str(root)],
                               split_note=note), splits)

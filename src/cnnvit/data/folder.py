"""`folder:<path>`: class-per-directory images, with or without train/val/test subfolders.

Images anywhere under a class folder belong to that class (sub-folders are walked; symlinked
folders are not followed, so a link loop cannot hang the walk). Files that are not images
(`.txt`, `.DS_Store`, `Thumbs.db`, ...) and unreadable images (0 bytes, truncated) are skipped
and counted in `DatasetInfo.notes`; mixed modes and sizes are unified as `imagefiles` describes.
With train/val/test folders the class list is the union of the class folders: a class missing
from val or test loads with a note, but every class needs train images. `strict=True` refuses
every skip and conversion instead, naming the first offending file (hidden and OS metadata
files, `.*`, `Thumbs.db`, `desktop.ini`, are always just skipped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnvit.data import split
from cnnvit.data.imagefiles import read_images, shown
from cnnvit.data.types import SPLITS, Dataset, DatasetInfo
from cnnvit.data.validate import build_splits, check_task
from cnnvit.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
VAL_FROM_TRAIN = 0.1


@dataclass
class Walk:
    """The image files found under a dataset folder, and every entry skipped on the way."""

    root: Path
    strict: bool = False
    skipped: list[str] = field(default_factory=list)

    def skip(self, path: Path, why: str = "") -> None:
        """Record a skipped entry; --strict refuses it unless it is a hidden or system file."""
        system = path.name.startswith(".") or path.name.lower() in SYSTEM_FILES
        if self.strict and not system:
            raise DataError(f"{path} is {why or 'not an image'}: --strict refuses anything but "
                            f"image files ({', '.join(EXTENSIONS)}) in a dataset folder (move it "
                            f"out, or drop --strict to skip it)")
        self.skipped.append(path.relative_to(self.root).as_posix() + (f" ({why})" if why else ""))

    def subdirs(self, path: Path) -> list[Path]:
        """The visible folders directly under `path`; other entries are skipped."""
        dirs = []
        for p in sorted(path.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                dirs.append(p)
            else:
                self.skip(p, "a hidden folder" if p.is_dir() else "not in a class folder")
        return dirs

    def images(self, directory: Path) -> list[Path]:
        """Image files anywhere under `directory`, in sorted order; symlinked folders are
        recorded and not followed."""
        found = []
        for top, dirs, names in os.walk(directory, onerror=self._unreadable, followlinks=False):
            here = Path(top)
            for d in sorted(dirs):
                if (here / d).is_symlink():
                    self.skip(here / d, "a symlinked folder, not followed")
                elif d.startswith("."):
                    self.skip(here / d, "a hidden folder")
            dirs[:] = sorted(d for d in dirs
                             if not d.startswith(".") and not (here / d).is_symlink())
            for f in (here / name for name in sorted(names)):
                if f.suffix.lower() in EXTENSIONS and not f.name.startswith(".") and f.is_file():
                    found.append(f)
                elif f.is_symlink() and not f.exists():
                    self.skip(f, "a broken or looping symlink")
                else:
                    self.skip(f, "" if f.is_file() else "not a regular file")
        return found

    def _unreadable(self, error: OSError) -> None:
        self.skip(Path(str(error.filename)), f"an unreadable folder: {error.strerror}")

    def classes(self, path: Path) -> dict[str, list[Path]]:
        """{class name: image files} for the class folders directly under `path`."""
        classes = {d.name: self.images(d) for d in self.subdirs(path)}
        if not classes:
            raise DataError(f"no class folders in {path}: expected {path}/<class>/<images> or "
                            f"{path}/{{train,val,test}}/<class>/<images>")
        return classes


def _layout(walk: Walk) -> tuple[dict[str, dict[str, list[Path]]], list[str]]:
    """({split or "all": {class: files}}, sorted class names); a class folder that is not in
    train is refused (a typo would otherwise become a class the model never sees)."""
    root = walk.root
    top = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if not ({"train", "test"} <= top and top <= set(SPLITS)):
        per_split = {"all": walk.classes(root)}
        return per_split, sorted(per_split["all"])
    for entry in sorted(root.iterdir()):
        if entry.name not in top:
            walk.skip(entry, "not in a class folder")
    per_split = {s: walk.classes(root / s) for s in SPLITS if s in top}
    names = sorted(per_split["train"])
    for s, classes in per_split.items():
        extra = sorted(set(classes) - set(names))
        if extra:
            raise DataError(f"class folders differ between splits: {root / s} has "
                            f"{', '.join(extra)}, which train lacks (train has "
                            f"{', '.join(names)}); use the train class folders in every split")
    return per_split, names


def _require_train_images(labels: np.ndarray, origin: np.ndarray, names: list[str],
                          root: Path) -> None:
    """Every class needs readable images in train (or anywhere, for the flat layout)."""
    train = labels[(origin == "train") | (origin == "all")]
    for k, name in enumerate(names):
        if not np.any(train == k):
            where = root / name if "all" in origin else root / "train" / name
            raise DataError(f"{where} has no readable images ({', '.join(EXTENSIONS)}); "
                            f"remove the folder or add images")


def _split_index(labels: np.ndarray, origin: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """Indices of each split and the split note: a stratified 70/10/20 split of a flat layout,
    the given folders otherwise, with val carved from train when there is no val folder."""
    if "all" in origin:
        return split.three_way(labels), split.note()
    index = {s: np.flatnonzero(origin == s) for s in SPLITS if s in origin}
    if "val" in index:
        return index, "train/val/test folders as given"
    train = index["train"]
    rest, val = split.carve(labels[train], round(VAL_FROM_TRAIN * len(train)))
    index["train"], index["val"] = train[rest], train[val]
    return index, (f"train/test folders as given; val = {len(val)} images carved from train "
                   f"({VAL_FROM_TRAIN:.0%}, stratified, fixed seed {split.SPLIT_SEED})")


def load(spec: str, path: str, *, size: int | None = None, strict: bool = False) -> Dataset:
    """Load a class-per-directory dataset (see the module docstring). size: the side length that
    images of differing sizes are resized to (None: the most common size)."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    walk = Walk(root, strict)
    per_split, names = _layout(walk)
    entries = [(s, names.index(c), f) for s, classes in per_split.items()
               for c, files in classes.items() for f in files]
    if not entries:
        raise DataError(f"{root} has no images ({', '.join(EXTENSIONS)}) in its class folders")
    read = read_images([f for _, _, f in entries], root, size=size, strict=strict)
    labels = np.array([entries[i][1] for i in read.kept], dtype=np.int64)
    origin = np.array([entries[i][0] for i in read.kept])
    _require_train_images(labels, origin, names, root)
    index, note = _split_index(labels, origin)
    valid = build_splits({s: (read.array[i], labels[i]) for s, i in index.items()}, str(root),
                         class_names=names, metadata="the class folders", strict=strict)
    skipped = ([f"skipped {len(walk.skipped)} entr{'ies' if len(walk.skipped) > 1 else 'y'} "
                f"that are not images: {shown(walk.skipped)}"] if walk.skipped else [])
    return Dataset(DatasetInfo(spec=spec, name=root.name, task=check_task(None, len(names), ""),
                               class_names=names, channels=read.array.shape[3],
                               image_size=read.array.shape[1], source="folder",
                               files=[str(root)], split_note=note,
                               notes=skipped + read.notes + valid.notes), valid.splits)

"""`npz:<path>` and `synthetic:<path>`: MedMNIST-layout .npz files (+ optional class-name JSON)."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from cnnvit.data import checksum
from cnnvit.data.types import SPLITS, Dataset, DatasetInfo
from cnnvit.data.validate import build_splits, check_task
from cnnvit.errors import DataError

KEYS = tuple(f"{s}_{part}" for s in SPLITS for part in ("images", "labels"))
RESAVE = "re-save the arrays with numpy.savez (cnnvit never loads pickled data)"


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in a MedMNIST-layout .npz, read with allow_pickle=False; refuses files that
    are not npz archives, hold pickled objects, or lack the six split arrays."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz archive ({_not_zip(path)}); {RESAVE}")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                arrays[key] = _member(z, key, path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "pickle" in reason:
            reason = "it holds pickled objects"
        raise DataError(f"{path} is not a readable .npz archive ({reason}); {RESAVE}") from e
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; an npz dataset needs "
                        f"{', '.join(KEYS)} (the MedMNIST layout)")
    return arrays


def _member(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of the archive; an object (pickled) array is refused by name."""
    try:
        return z[key]
    except ValueError as e:
        if "pickle" not in str(e):
            raise
        raise DataError(f"{path}: array '{key}' holds pickled Python objects (dtype object), "
                        f"which cnnvit will not load; convert it to a numeric array (class_names: "
                        f"a string array) and {RESAVE}") from e


def _not_zip(path: Path) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an archive of named arrays"
    if head.startswith(b"PK"):
        return "it starts like a zip archive but is truncated or damaged"
    if head[:1] == b"\x80":
        return "it is a Python pickle, which cnnvit will not load"
    if not head:
        return "it is empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "it is not a zip archive"
    return "it is a text file"


def raw_splits(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images, labels)} from the layout's six arrays."""
    return {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}


def load(spec: str, path: str, *, require_synthetic: bool = False,
         strict: bool = False) -> Dataset:
    """Load an npz dataset; `require_synthetic` refuses files not written by write_synthetic."""
    file = Path(path)
    arrays = read_arrays(file)
    synthetic = bool(np.asarray(arrays.get("synthetic", False)).any())
    if require_synthetic and not synthetic:
        raise DataError(f"{file} has no synthetic marker, so it was not written by "
                        f"`cnnvit data synth`; load it as npz:{file}")
    names, task, metadata = class_names(file, arrays)
    valid = build_splits(raw_splits(arrays), str(file), class_names=names, metadata=metadata,
                         names_hint=f"a class_names array in the file, or a JSON list of names "
                                    f"in {file.with_suffix('.json')}", strict=strict)
    names = names or [str(i) for i in range(valid.num_classes)]
    train = valid.splits["train"].images
    info = DatasetInfo(spec=spec, name=file.stem, task=check_task(task, len(names), str(file)),
                       class_names=names, channels=train.shape[3], image_size=train.shape[1],
                       source="synthetic" if synthetic else "npz", synthetic=synthetic,
                       md5=checksum.md5(file), files=[str(file)],
                       split_note="train/val/test splits as stored in the file",
                       notes=valid.notes)
    return Dataset(info, valid.splits)


def class_names(file: Path, arrays: dict[str, np.ndarray]
                ) -> tuple[list[str] | None, str | None, str]:
    """(class names, task, where they came from): from `<stem>.json` beside the file, else the
    npz's `class_names` array; names None means "infer from the labels", task None the default."""
    names, task = None, None
    side = file.with_suffix(".json")
    source = str(side)
    if side.is_file():
        names, task = _read_names_json(side)
    if names is None and "class_names" in arrays:
        names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
        source = f"the class_names array of {file.name}"
    return names, task, source


def _read_names_json(path: Path) -> tuple[list[str] | None, str | None]:
    """(names, task) from a JSON list of names, {"class_names": [...], "task": ...} or
    MedMNIST-style {"label": {"0": name, ...}, "task": ...}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not readable JSON ({e})") from e
    task = data.get("task") if isinstance(data, dict) else None
    names = data
    if isinstance(data, dict):
        names = data.get("class_names")
        if names is None and isinstance(data.get("label"), dict):
            label = data["label"]
            names = [label.get(str(i)) for i in range(len(label))]
    if names is None and task is not None:
        return None, str(task)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: expected a list of class names, {{\"class_names\": [...]}} or "
                        f"{{\"label\": {{\"0\": name, ...}}}} with names for labels 0..K-1")
    return names, None if task is None else str(task)

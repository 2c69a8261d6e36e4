"""`npz:<path>` and `synthetic:<path>`: MedMNIST-layout .npz files (+ optional class-name JSON)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from cnnvit.data import checksum
from cnnvit.data.arrays import build_splits, check_task, default_task, to_labels
from cnnvit.data.types import SPLITS, Dataset, DatasetInfo
from cnnvit.errors import DataError

KEYS = tuple(f"{s}_{part}" for s in SPLITS for part in ("images", "labels"))


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in a MedMNIST-layout .npz; refuses files without the six split arrays."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({e})") from e
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; an npz dataset needs "
                        f"{', '.join(KEYS)} (the MedMNIST layout)")
    return arrays


def raw_splits(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images, labels)} from the layout's six arrays."""
    return {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}


def load(spec: str, path: str, *, require_synthetic: bool = False) -> Dataset:
    """Load an npz dataset; `require_synthetic` refuses files not written by write_synthetic."""
    file = Path(path)
    arrays = read_arrays(file)
    synthetic = bool(np.asarray(arrays.get("synthetic", False)).any())
    if require_synthetic and not synthetic:
        raise DataError(f"{file} has no synthetic marker, so it was not written by "
                        f"`cnnvit data synth`; load it as npz:{file}")
    raw = raw_splits(arrays)
    names, task = class_names(file, arrays, raw)
    splits = build_splits(raw, len(names), str(file))
    train = splits["train"].images
    info = DatasetInfo(spec=spec, name=file.stem, task=task, class_names=names,
                       channels=train.shape[3], image_size=train.shape[1],
                       source="synthetic" if synthetic else "npz", synthetic=synthetic,
                       md5=checksum.md5(file), files=[str(file)],
                       split_note="train/val/test splits as stored in the file")
    return Dataset(info, splits)


def class_names(file: Path, arrays: dict[str, np.ndarray],
                raw: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[list[str], str]:
    """Class names and task: from `<stem>.json` beside the file, else the npz's `class_names`
    array, else "0".."K-1" with K = largest label + 1."""
    names, task = None, None
    side = file.with_suffix(".json")
    if side.is_file():
        names, task = _read_names_json(side)
    if names is None and "class_names" in arrays:
        names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
    if names is None:
        top = max(int(to_labels(labels, f"{file} {s}").max(initial=0))
                  for s, (_, labels) in raw.items())
        names = [str(i) for i in range(top + 1)]
    return names, check_task(task or default_task(len(names)), str(file))


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

"""The data boundary: every source's raw arrays pass through here before they become `Split`s.

Each check raises a one-line `DataError` that names the file (or dataset), the split, the
offending value and its first index, and says what to do:

- images: N×H×W or N×H×W×C (C 1 or 3) numbers; float images must be finite whole numbers in
  0..255 (a NaN/inf pixel, a 0..1 float image or a 16-bit range is refused, never rescaled);
- labels: N or N×1 whole, non-negative class indices (no NaN, strings, one-hot or multi-label);
- one label per image, no empty split, one square image shape for all splits.

The class count K comes from the metadata when the source has one (class names, MedMNIST's
INFO, CIFAR's meta, class folders): every label must lie in 0..K-1. Without metadata K is the
largest label + 1 over all splits, with one guard against a stray value: a label that appears
in one split only, is larger than every label of the other splits, and leaves class indices
between them that no split uses (e.g. 0..7 everywhere plus one 50 in train) is an error, since
it would silently add empty classes. A class that is merely missing from some splits (a rare
class absent from val or test, or a class the metadata names that no split uses) loads, with a
note in `DatasetInfo.notes` (logged as a warning by `cnnvit.data.load`); `strict=True` refuses
it instead.

Also here: `check_task` (a declared task must fit the class count), `did_you_mean` (the close
name for a mistyped spec) and `safe_name` (any user string made safe as a file name).
"""

from __future__ import annotations

import difflib
import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cnnvit.data.types import SPLITS, Split
from cnnvit.errors import DataError
from cnnvit.metrics import TASKS

RawSplits = dict[str, tuple[np.ndarray, np.ndarray]]
UNSAFE_CHARS = frozenset('/\\:<>"|?*')
WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                             *(f"lpt{i}" for i in range(10))})
MAX_NAME = 100  # characters kept by safe_name, well below every file system's limit


@dataclass
class Checked:
    """Validated splits, their class count and the notes (warnings) to record."""

    splits: dict[str, Split]
    num_classes: int
    notes: list[str]


def _at(where: str, split: str) -> str:
    return f"{where} ({split} split)"


def _num(value: np.generic) -> str:
    """A pixel or label value as the user would write it (6 significant digits)."""
    return f"{value.item():.6g}" if isinstance(value.item(), float) else str(value.item())


def _first(mask: np.ndarray) -> int:
    """Index of the first True of a boolean array (flattened)."""
    return int(np.flatnonzero(mask.reshape(-1))[0])


def to_images(images: np.ndarray, where: str, split: str) -> np.ndarray:
    """uint8 N×H×W×C (C 1 or 3): adds the channel axis to N×H×W; refuses lossy conversions."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{_at(where, split)}: images must be N×H×W (grey) or N×H×W×C with C 1 "
                        f"or 3, got shape {images.shape}; save grey images as N×H×W and colour "
                        f"images as N×H×W×3 (drop an alpha channel)")
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind not in "biuf":
        raise DataError(f"{_at(where, split)}: images are {images.dtype}, not numbers; "
                        f"save them as uint8 0..255")
    if images.size:
        _check_pixel_values(images, where, split)
    return images.astype(np.uint8)


def _check_pixel_values(images: np.ndarray, where: str, split: str) -> None:
    """Refuse NaN/inf and values that are not whole numbers in 0..255, naming the first."""
    per_image = int(np.prod(images.shape[1:]))
    if images.dtype.kind == "f":
        finite = np.isfinite(images)
        if not finite.all():
            i = _first(~finite)
            raise DataError(f"{_at(where, split)}: image {i // per_image} has a "
                            f"{_num(images.reshape(-1)[i])} pixel; replace NaN/inf pixels and "
                            f"save the images as uint8 0..255")
    bad = (images < 0) | (images > 255) | (images != np.round(images))
    if not bad.any():
        return
    i = _first(bad)
    hint = ""
    if images.dtype.kind == "f" and images.min() >= 0 and images.max() <= 1:
        hint = " (the images look like 0..1 floats: multiply by 255 and round)"
    elif images.max() > 255:
        hint = (f" (the images reach {_num(images.max())}, a 12- or 16-bit range: scale "
                f"them to 0..255)")
    raise DataError(f"{_at(where, split)}: image {i // per_image} has pixel value "
                    f"{_num(images.reshape(-1)[i])}, not a whole number in 0..255{hint}; save "
                    f"the images as uint8 0..255")


def to_labels(labels: np.ndarray, where: str, split: str) -> np.ndarray:
    """int64 class indices (N,) from N or N×1 labels; refuses multi-label, one-hot, strings,
    NaN, fractional and negative labels, naming the first offending value and its index."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    at = _at(where, split)
    if labels.ndim != 1:
        raise DataError(f"{at}: labels must be N or N×1 class indices, got shape {labels.shape}; "
                        f"multi-label data is not supported yet (one-hot labels: save "
                        f"labels.argmax(axis=1))")
    if labels.dtype.kind not in "biuf":
        first = repr(labels[0].item()) if labels.size else "none"
        raise DataError(f"{at}: labels are {labels.dtype} (first {first}), not class indices; "
                        f"map each class to 0..K-1 and save the labels as integers")
    if not labels.size:
        return labels.astype(np.int64)
    checks = ((~np.isfinite(labels) if labels.dtype.kind == "f" else None,
               "is not a number"),
              (labels != np.round(labels), "is not a whole number"),
              (labels < 0, "is negative; class indices start at 0"))
    for bad, what in checks:
        if bad is not None and bad.any():
            i = _first(bad)
            count = int(bad.sum())
            raise DataError(f"{at}: label {_num(labels[i])} at index {i} {what} ({count} such "
                            f"label{'s' if count > 1 else ''}); save the labels as integer class "
                            f"indices 0..K-1")
    return labels.astype(np.int64)


def check_task(task: str | None, num_classes: int, where: str) -> str:
    """The task: `task` (None: "binary-class" for two classes, as in MedMNIST, else
    "multi-class"); refuses multi-label, ordinal-regression and a binary task without 2 classes."""
    if task is None:
        return "binary-class" if num_classes == 2 else "multi-class"
    if task not in TASKS:
        raise DataError(f"{where}: task '{task}' is not supported yet (cnnvit trains single-label "
                        f"{' and '.join(TASKS)} classifiers only); choose another dataset")
    if task == "binary-class" and num_classes != 2:
        raise DataError(f"{where}: task 'binary-class' needs 2 classes, but there are "
                        f"{num_classes}; declare the task 'multi-class' or give 2 class names")
    return task


def build_splits(raw: RawSplits, where: str, *, class_names: Sequence[str] | None = None,
                 metadata: str = "the metadata", names_hint: str = "",
                 strict: bool = False) -> Checked:
    """Validated Splits from {split: (images, labels)} (see the module docstring).

    class_names: the classes the metadata (described by `metadata`) names; None infers their
    count from the labels. names_hint: where the user could name the classes (for the
    stray-label error). strict: refuse a class missing from a split instead of noting it.
    """
    splits = {name: _split(raw[name], where, name) for name in SPLITS}
    _check_shapes(splits, where)
    labels = {name: s.labels for name, s in splits.items()}
    if class_names is None:
        num_classes = _inferred_count(labels, where, names_hint)
    else:
        num_classes = len(class_names)
        _check_range(labels, num_classes, where, metadata)
    if num_classes < 2:
        raise DataError(f"{where}: found {num_classes} class{'es' if num_classes != 1 else ''}; "
                        f"a classifier needs at least 2 (add images of another class)")
    names = [str(k) for k in range(num_classes)] if class_names is None else list(class_names)
    notes = absent_classes(labels, names)
    if strict and notes:
        raise DataError(f"{where}: {notes[0]}; --strict refuses a class missing from a split "
                        f"(add its images there, or drop --strict to load with a warning)")
    return Checked(splits, num_classes, notes)


def _split(pair: tuple[np.ndarray, np.ndarray], where: str, name: str) -> Split:
    """One validated split: images and labels checked, one label per image, not empty."""
    images, labels = to_images(pair[0], where, name), to_labels(pair[1], where, name)
    if len(images) != len(labels):
        first = min(len(images), len(labels))
        unmatched = "has no label" if len(images) > len(labels) else "has no image"
        raise DataError(f"{_at(where, name)}: {len(images)} images but {len(labels)} labels "
                        f"(item {first} {unmatched}); store exactly one label per image")
    if len(labels) == 0:
        raise DataError(f"{_at(where, name)}: the split is empty; every split needs images")
    return Split(images, labels)


def _check_shapes(splits: dict[str, Split], where: str) -> None:
    """One square image shape for all splits."""
    shapes = {name: s.images.shape[1:] for name, s in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{where}: image shapes differ between splits {shapes}; "
                        f"store every split at one size and channel count")
    height, width, _ = shapes["train"]
    if height != width:
        raise DataError(f"{where}: images are {height}×{width}, not square; "
                        f"crop or resize them to a square size first")


def _check_range(labels: dict[str, np.ndarray], num_classes: int, where: str,
                 metadata: str) -> None:
    """Every label below the metadata's class count."""
    for split, y in labels.items():
        bad = y >= num_classes
        if bad.any():
            i = _first(bad)
            raise DataError(f"{_at(where, split)}: label {y[i]} at index {i} is out of range for "
                            f"{num_classes} classes (labels 0..{num_classes - 1}, named by "
                            f"{metadata}; {int(bad.sum())} such label{'s' if bad.sum() > 1 else ''}"
                            f"); fix the label, or give one class name per label")


def _inferred_count(labels: dict[str, np.ndarray], where: str, names_hint: str) -> int:
    """Largest label + 1 over all splits, refusing a stray label (see the module docstring)."""
    used = {split: set(np.unique(y).tolist()) for split, y in labels.items()}
    everywhere = set().union(*used.values())
    for split, values in used.items():
        others = set().union(*(v for s, v in used.items() if s != split))
        top = max(others)
        for value in sorted(v for v in values - others if v > top):
            gap = [k for k in range(top + 1, value) if k not in everywhere]
            if gap:
                i = _first(labels[split] == value)
                hint = f" ({names_hint})" if names_hint else ""
                raise DataError(
                    f"{_at(where, split)}: label {value} at index {i} appears only in the "
                    f"{split} split and lies beyond every label of the other splits (which stop "
                    f"at {top}), "
                    f"with {len(gap)} class indices ({_span(gap)}) that no split uses: it looks "
                    f"like a stray value that would silently add {len(gap)} empty classes; fix "
                    f"the label, or name all {value + 1} classes{hint}")
    return max(everywhere) + 1


def _span(values: Sequence[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}..{values[-1]}"


def absent_classes(labels: dict[str, np.ndarray], names: Sequence[str]) -> list[str]:
    """Notes for classes missing from a split (not an error: rare classes do this)."""
    present = {s: set(np.unique(y).tolist()) for s, y in labels.items()}
    indices = range(len(names))
    nowhere = [k for k in indices if not any(k in p for p in present.values())]
    notes = []
    for split, have in present.items():
        missing = [k for k in indices if k not in have and k not in nowhere]
        if missing:
            effect = ("the model cannot learn {}" if split == "train"
                      else "per-class metrics of {} are undefined there")
            notes.append(f"the {split} split has no images of {_classes(missing, names)} "
                         f"({effect.format('them' if len(missing) > 1 else 'it')})")
    if nowhere:
        notes.append(f"no split has images of {_classes(nowhere, names)}")
    return notes


def _classes(indices: Sequence[int], names: Sequence[str], shown: int = 8) -> str:
    """'class 3' / "classes 3 ('moth'), 5 ('zebra') and 2 more"."""
    text = ", ".join(str(k) if names[k] == str(k) else f"{k} ({names[k]!r})"
                     for k in indices[:shown])
    more = f" and {len(indices) - shown} more" if len(indices) > shown else ""
    return f"class{'es' if len(indices) > 1 else ''} {text}{more}"


def did_you_mean(word: str, choices: Iterable[str], tail: str = "") -> str:
    """'did you mean X<tail>? ' for the closest of `choices` (difflib), else ''."""
    close = difflib.get_close_matches(word.strip().lower(), list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(c + tail for c in close)}? " if close else ""


def safe_name(text: str) -> str:
    """A file-name-safe form of any user string (class name, model name): no path separators,
    `..`, drive colons, control characters or Windows device names, never empty; a name that
    had to change gets a short hash of the original so distinct inputs stay distinct."""
    kept = "".join("_" if c in UNSAFE_CHARS or unicodedata.category(c).startswith("C") else c
                   for c in text)
    while ".." in kept:
        kept = kept.replace("..", "_")
    kept = kept.strip(" .")[:MAX_NAME] or "_"
    if kept.split(".")[0].lower() in WINDOWS_DEVICES:
        kept = f"_{kept}"
    if kept == text:
        return kept
    return f"{kept}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"

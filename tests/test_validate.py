"""The data boundary's checks, through `cnnvit.data.load` on small files in the real formats:
every bad input is one DataError line naming the file, the split, the value and its index."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from cnnvit import data
from cnnvit.errors import DataError
from tests.fakes import trust, write_fake

EIGHT = np.arange(8)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """md5 caches go to a temporary cnnvit cache, never the user's."""
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_npz(path: Path, labels: dict[str, np.ndarray] | None = None,
              images: dict[str, np.ndarray] | None = None, n: tuple[int, int, int] = (24, 8, 16),
              **extra: np.ndarray) -> Path:
    """A MedMNIST-layout npz: grey 12×12 uint8 images, labels N×1 cycling 0..7, overridable."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(data.SPLITS, n, strict=True):
        arrays[f"{split}_images"] = (images or {}).get(
            split, rng.integers(0, 256, (count, 12, 12), dtype=np.uint8))
        arrays[f"{split}_labels"] = (labels or {}).get(split, (np.arange(count) % 8)[:, None])
    np.savez(path, **arrays, **extra)
    return path


def refused(spec: str, *needles: str, strict: bool = False) -> str:
    """The one-line DataError `spec` raises, checked to contain every needle."""
    with pytest.raises(DataError) as e:
        data.load(spec, strict=strict)
    message = str(e.value)
    assert "\n" not in message and e.value.code == 2
    for needle in needles:
        assert needle in message, (needle, message)
    assert "allow_pickle" not in message
    return message


def with_value(value: float, at: int, size: int = 24) -> np.ndarray:
    labels = (np.arange(size) % 8).astype(np.float64)
    labels[at] = value
    return labels


# ---------------------------------------------------------------- labels and the class count


def test_stray_label_in_one_split_is_refused_without_metadata(tmp_path) -> None:
    path = write_npz(tmp_path / "stray.npz", labels={"train": with_value(50, 17).astype(int)})
    message = refused(f"npz:{path}", str(path), "(train split)", "label 50 at index 17",
                      "appears only in the train split", "8..49", "stray")
    assert str(tmp_path / "stray.json") in message  # where to name the classes if 51 are meant


def test_stray_label_is_out_of_range_for_the_metadata(tmp_path) -> None:
    names = np.array([f"cell_{k}" for k in range(8)])
    path = write_npz(tmp_path / "named.npz", labels={"val": with_value(50, 5, 8).astype(int)},
                     class_names=names)
    refused(f"npz:{path}", str(path), "(val split)", "label 50 at index 5",
            "out of range for 8 classes", "class_names array")
    (tmp_path / "named.json").write_text(json.dumps([f"c{k}" for k in range(8)]))
    refused(f"npz:{path}", "(val split)", "label 50 at index 5", str(tmp_path / "named.json"))


def test_medmnist_labels_beyond_info_name_the_split_and_index(tmp_path, monkeypatch) -> None:
    path = write_fake(tmp_path, "bloodmnist", classes=9)
    trust(monkeypatch, "bloodmnist", path)
    with pytest.raises(DataError) as e:
        data.load("bloodmnist", root=str(tmp_path))
    message = str(e.value)
    for needle in (str(path), "(train split)", "label 8 at index 8",
                   "medmnist.INFO['bloodmnist']"):
        assert needle in message


def test_rare_class_missing_from_val_and_test_loads_with_a_note(tmp_path, caplog) -> None:
    train = np.arange(24) % 8
    train[5] = 8  # class 8: adjacent to the others, in train only
    path = write_npz(tmp_path / "rare.npz", labels={"train": train})
    with caplog.at_level(logging.WARNING, logger="cnnvit.data"):
        ds = data.load(f"npz:{path}")
    assert ds.info.num_classes == 9 and ds["train"].labels[5] == 8
    assert ds.info.notes == [
        "the val split has no images of class 8 (per-class metrics of it are undefined there)",
        "the test split has no images of class 8 (per-class metrics of it are undefined there)"]
    assert [r.getMessage() for r in caplog.records] == [f"npz:{path}: {n}"
                                                        for n in ds.info.notes]
    assert "the val split has no images of class 8" in data.describe(ds)
    refused(f"npz:{path}", str(path), "class 8", "--strict", strict=True)


def test_class_absent_from_train_is_noted_by_name(tmp_path) -> None:
    names = np.array(["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"])
    path = write_npz(tmp_path / "absent.npz", labels={"train": np.arange(24) % 7},
                     class_names=names)
    notes = data.load(f"npz:{path}").info.notes
    assert notes == ["the train split has no images of class 7 ('hen') (the model cannot "
                     "learn it)"]


@pytest.mark.parametrize("value, needle", [
    (-1, "label -1 at index 3 is negative"),
    (2.5, "label 2.5 at index 3 is not a whole number"),
    (np.nan, "label nan at index 3 is not a number"),
])
def test_bad_label_values_are_named_with_their_index(tmp_path, value, needle) -> None:
    path = write_npz(tmp_path / "bad.npz", labels={"test": with_value(value, 3, 16)})
    refused(f"npz:{path}", str(path), "(test split)", needle)


def test_string_labels_are_refused(tmp_path) -> None:
    labels = np.array(["cat", "dog"] * 4)
    path = write_npz(tmp_path / "s.npz", labels={"val": labels})
    refused(f"npz:{path}", str(path), "(val split)", "'cat'", "integers")


def test_image_and_label_counts_must_match(tmp_path) -> None:
    path = write_npz(tmp_path / "count.npz", n=(100, 8, 16),
                     labels={"train": (np.arange(90) % 8)[:, None]})
    refused(f"npz:{path}", str(path), "(train split)", "100 images but 90 labels",
            "item 90 has no label")


def test_multi_column_labels_are_refused(tmp_path) -> None:
    path = write_npz(tmp_path / "onehot.npz", labels={"train": np.eye(8)[np.arange(24) % 8]})
    refused(f"npz:{path}", str(path), "(train split)", "(24, 8)", "argmax")


@pytest.mark.parametrize("shape", [(24, 12, 12, 4), (24, 12, 12, 1, 1), (24, 144)])
def test_image_shapes_are_checked(tmp_path, shape) -> None:
    path = write_npz(tmp_path / "shape.npz", images={"train": np.zeros(shape, np.uint8)})
    refused(f"npz:{path}", str(path), "(train split)", str(shape), "C 1 or 3")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_are_refused(tmp_path, bad) -> None:
    images = np.zeros((8, 12, 12), np.float32)
    images[3, 5, 7] = bad
    path = write_npz(tmp_path / "nan.npz", images={"val": images})
    refused(f"npz:{path}", str(path), "(val split)", f"image 3 has a {bad} pixel")


def test_unit_float_and_sixteen_bit_images_get_a_hint(tmp_path) -> None:
    unit = np.full((24, 12, 12), 0.5, np.float32)
    path = write_npz(tmp_path / "unit.npz", images={"train": unit})
    refused(f"npz:{path}", "(train split)", "image 0 has pixel value 0.5", "multiply by 255")
    deep = np.zeros((16, 12, 12), np.uint16)
    deep[2, 0, 0] = 4095
    path = write_npz(tmp_path / "deep.npz", images={"test": deep})
    refused(f"npz:{path}", "(test split)", "image 2 has pixel value 4095", "16-bit")


def test_a_single_class_is_refused(tmp_path) -> None:
    zeros = {s: np.zeros(n, int) for s, n in zip(data.SPLITS, (24, 8, 16), strict=True)}
    path = write_npz(tmp_path / "one.npz", labels=zeros)
    refused(f"npz:{path}", str(path), "found 1 class", "at least 2")


def test_binary_task_needs_two_classes(tmp_path) -> None:
    path = write_npz(tmp_path / "bin.npz")
    (tmp_path / "bin.json").write_text(json.dumps({"task": "binary-class"}))
    refused(f"npz:{path}", str(path), "'binary-class' needs 2 classes", "there are 8")


# ---------------------------------------------------------------- npz files that are not npz


def test_text_file_named_npz(tmp_path) -> None:
    path = tmp_path / "x.npz"
    path.write_text("index,label\n0,1\n")
    refused(f"npz:{path}", str(path), "not a valid .npz archive", "text file", "numpy.savez",
            "pickled")


def test_pickle_and_npy_files_named_npz(tmp_path) -> None:
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps({"train_images": [1, 2]}))
    refused(f"npz:{pickled}", str(pickled), "Python pickle", "will not load", "numpy.savez")
    single = tmp_path / "a.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    refused(f"npz:{single}", str(single), "single .npy array", "numpy.savez")


def test_object_array_inside_npz_is_refused_by_name(tmp_path) -> None:
    path = write_npz(tmp_path / "obj.npz", class_names=np.array([{"a": 1}], dtype=object))
    refused(f"npz:{path}", str(path), "'class_names'", "pickled", "will not load",
            "numpy.savez")


def test_truncated_npz_is_refused(tmp_path) -> None:
    path = write_npz(tmp_path / "cut.npz")
    path.write_bytes(path.read_bytes()[:-300])
    refused(f"npz:{path}", str(path), "truncated or damaged", "numpy.savez")


# ---------------------------------------------------------------- specs and names


@pytest.mark.parametrize("spec, suggestion", [
    ("bloodmnst", "did you mean bloodmnist?"),
    ("medmnist:bloodmnst", "did you mean bloodmnist?"),
    ("nzp:/data/x.npz", "did you mean npz:/data/x.npz?"),
    ("cifar11", "cifar10"),
])
def test_unknown_dataset_suggests_the_close_one(tmp_path, spec, suggestion) -> None:
    with pytest.raises(DataError) as e:
        data.load(spec, root=str(tmp_path))
    assert suggestion in str(e.value) and "\n" not in str(e.value)


def test_unrelated_name_gets_no_suggestion() -> None:
    with pytest.raises(DataError) as e:
        data.load("imagenet")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("text", ["../../etc", "/etc/passwd", "a/b", "C:\\Windows\\x", "..",
                                  ".", "", " ", "tab\there", "new\nline", "nul\x00", "CON",
                                  "a..b", "~/x", "é/ü"])
def test_safe_name_cannot_escape_or_break_a_folder(tmp_path, text) -> None:
    name = data.safe_name(text)
    assert name and name not in (".", "..") and ".." not in name
    assert not any(c in name for c in "/\\:") and name.isprintable()
    assert not Path(name).is_absolute() and name.split(".")[0].lower() != "con"
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    (tmp_path / name).write_text("ok")  # a real, writable file name


def test_safe_name_keeps_plain_names_and_separates_distinct_ones() -> None:
    for plain in ("basophil", "Big cat", "class_3", "ünïcode", "tv-resnet50"):
        assert data.safe_name(plain) == plain
    assert len({data.safe_name(t) for t in ("a/b", "a_b", "a\\b", "a:b")}) == 4
    assert data.safe_name("a/b") == data.safe_name("a/b")

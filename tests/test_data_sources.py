"""Data sources that need no downloads: digits, npz, synthetic, folder; specs and describe()."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from cnnvit import data
from cnnvit.data import checksum
from cnnvit.errors import DataError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """md5 caches go to a temporary cnnvit cache, never the user's."""
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path_factory.mktemp("cache")))


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and excinfo.value.code == 2
    return message


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("spec, expected", [
    ("digits", ("digits", "")),
    ("cifar10", ("cifar", "cifar10")),
    ("CIFAR100", ("cifar", "cifar100")),
    ("medmnist:BloodMNIST", ("medmnist", "bloodmnist")),
    ("bloodmnist", ("medmnist", "bloodmnist")),
    ("npz:/a/b.npz", ("npz", "/a/b.npz")),
    ("synthetic:/a/s.npz", ("synthetic", "/a/s.npz")),
    ("folder:/imgs", ("folder", "/imgs")),
])
def test_parse_spec(spec: str, expected: tuple[str, str]) -> None:
    assert data.parse_spec(spec) == expected


def test_parse_spec_expands_home() -> None:
    kind, path = data.parse_spec("npz:~/x.npz")
    assert kind == "npz" and not path.startswith("~")


@pytest.mark.parametrize("spec", ["imagenet", "npz:", "foo:bar", ""])
def test_unknown_spec_lists_valid_forms(spec: str) -> None:
    with pytest.raises(DataError) as e:
        data.load(spec)
    message = one_line_error(e)
    for form in ("digits", "cifar10", "medmnist:<flag>", "npz:<path>", "folder:<path>",
                 "synthetic:<path>"):
        assert form in message


def test_fetch_local_specs_has_nothing_to_fetch(tmp_path) -> None:
    with pytest.raises(DataError, match="nothing to fetch"):
        data.fetch("digits")
    with pytest.raises(DataError, match="nothing to fetch"):
        data.fetch(f"npz:{tmp_path / 'x.npz'}")


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_split_sizes() -> None:
    ds = data.load("digits")
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 1258, "val": 180, "test": 359}
    for split in ds.splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (8, 8, 1)
        assert split.labels.dtype == np.int64
    info = ds.info
    assert (info.task, info.channels, info.image_size, info.source) == \
        ("multi-class", 1, 8, "digits")
    assert info.class_names == [str(i) for i in range(10)] and not info.synthetic
    assert "seed 0" in info.split_note
    assert ds["train"].images.max() == 255  # 16 -> 255


def test_digits_split_is_stratified_and_fixed() -> None:
    a, b = data.load("digits"), data.load("digits")
    total = sum(np.bincount(a[s].labels, minlength=10) for s in data.SPLITS)
    for s in data.SPLITS:
        np.testing.assert_array_equal(a[s].images, b[s].images)  # the split is fixed
        counts = np.bincount(a[s].labels, minlength=10)
        expected = total * len(a[s]) / total.sum()
        assert np.all(np.abs(counts - expected) <= 1.5)


# ---------------------------------------------------------------- npz


def write_npz(path, n=(20, 6, 8), shape=(12, 12), classes=3, label_cols=1, dtype=np.uint8,
              **extra) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(data.SPLITS, n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, *shape)).astype(dtype)
        labels = np.arange(count) % classes
        arrays[f"{split}_labels"] = np.repeat(labels[:, None], label_cols, axis=1)
    np.savez(path, **arrays, **extra)


def test_npz_grey_round_trip(tmp_path) -> None:
    path = tmp_path / "mine.npz"
    write_npz(path)
    ds = data.load(f"npz:{path}")
    assert ds["train"].images.shape == (20, 12, 12, 1) and len(ds["test"]) == 8
    info = ds.info
    assert (info.name, info.source, info.channels, info.image_size) == ("mine", "npz", 1, 12)
    assert info.class_names == ["0", "1", "2"] and info.task == "multi-class"
    assert info.md5 == hashlib.md5(path.read_bytes()).hexdigest()
    assert info.files == [str(path)] and not info.synthetic
    with np.load(path) as z:
        np.testing.assert_array_equal(ds["val"].images[..., 0], z["val_images"])


def test_npz_rgb_two_classes_is_binary(tmp_path) -> None:
    path = tmp_path / "rgb.npz"
    write_npz(path, shape=(10, 10, 3), classes=2)
    ds = data.load(f"npz:{path}")
    assert ds.info.channels == 3 and ds.info.task == "binary-class"


@pytest.mark.parametrize("content, names, task", [
    (["cat", "dog", "eel"], ["cat", "dog", "eel"], "multi-class"),
    ({"class_names": ["a", "b", "c", "d"], "task": "multi-class"}, ["a", "b", "c", "d"],
     "multi-class"),
    ({"label": {"0": "x", "1": "y", "2": "z"}, "task": "multi-class"}, ["x", "y", "z"],
     "multi-class"),
])
def test_npz_class_names_json(tmp_path, content, names, task) -> None:
    path = tmp_path / "named.npz"
    write_npz(path)
    (tmp_path / "named.json").write_text(json.dumps(content))
    info = data.load(f"npz:{path}").info
    assert info.class_names == names and info.task == task


def test_npz_json_with_too_few_names_is_refused(tmp_path) -> None:
    path = tmp_path / "few.npz"
    write_npz(path, classes=3)
    (tmp_path / "few.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(DataError, match="out of range for 2 classes"):
        data.load(f"npz:{path}")


def test_npz_json_multilabel_task_is_refused(tmp_path) -> None:
    path = tmp_path / "ml.npz"
    write_npz(path)
    (tmp_path / "ml.json").write_text(json.dumps({"class_names": ["a", "b", "c"],
                                                  "task": "multi-label, binary-class"}))
    with pytest.raises(DataError, match="not supported yet"):
        data.load(f"npz:{path}")


def test_npz_lossless_float_images_convert(tmp_path) -> None:
    path = tmp_path / "f.npz"
    write_npz(path, dtype=np.float32)
    assert data.load(f"npz:{path}")["train"].images.dtype == np.uint8


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": np.float32, "extra_scale": 0.5}, "uint8"),
    ({"label_cols": 3}, "multi-label"),
    ({"shape": (12, 12, 4)}, "C 1 or 3"),
    ({"shape": (12, 10)}, "not square"),
])
def test_npz_bad_arrays_are_refused(tmp_path, kwargs, match) -> None:
    path = tmp_path / "bad.npz"
    scale = kwargs.pop("extra_scale", None)
    write_npz(path, **kwargs)
    if scale is not None:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["train_images"] = arrays["train_images"] * scale + 0.25
        np.savez(path, **arrays)
    with pytest.raises(DataError, match=match) as e:
        data.load(f"npz:{path}")
    one_line_error(e)


def test_npz_missing_keys_and_missing_file(tmp_path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, train_images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match="train_labels"):
        data.load(f"npz:{path}")
    with pytest.raises(DataError, match="no such file"):
        data.load(f"npz:{tmp_path / 'absent.npz'}")


def test_verify_local_npz_reports_md5(tmp_path) -> None:
    path = tmp_path / "v.npz"
    write_npz(path)
    assert hashlib.md5(path.read_bytes()).hexdigest() in data.verify(f"npz:{path}")
    assert data.verify("digits").startswith("ok")


# ---------------------------------------------------------------- synthetic


def test_synthetic_round_trip(tmp_path) -> None:
    path = data.write_synthetic(tmp_path / "s.npz", shape=(28, 28, 3), classes=5,
                                samples=(50, 10, 20), seed=3)
    for spec in (f"synthetic:{path}", f"npz:{path}"):
        ds = data.load(spec)
        assert ds.info.synthetic and ds.info.source == "synthetic"
        assert ds.info.class_names == [f"synthetic_{k}" for k in range(5)]
        assert ds["train"].images.shape == (50, 28, 28, 3) and len(ds["test"]) == 20
        assert np.bincount(ds["val"].labels).tolist() == [2] * 5
    with np.load(path) as z:
        assert z["train_labels"].shape == (50, 1)  # MedMNIST layout


def test_synthetic_grey_and_deterministic(tmp_path) -> None:
    a = data.write_synthetic(tmp_path / "a.npz", shape=(16, 16, 1), classes=3,
                             samples=(9, 3, 3), seed=1)
    b = data.write_synthetic(tmp_path / "b.npz", shape=(16, 16, 1), classes=3,
                             samples=(9, 3, 3), seed=1)
    with np.load(a) as za, np.load(b) as zb:
        assert za["train_images"].shape == (9, 16, 16)  # grey stored N×H×W like MedMNIST
        for key in za.files:
            np.testing.assert_array_equal(za[key], zb[key])
    assert data.load(f"synthetic:{a}").info.channels == 1


def test_synthetic_classes_are_learnable(tmp_path) -> None:
    from sklearn.neighbors import NearestCentroid

    ds = data.load(f"synthetic:{data.write_synthetic(tmp_path / 's.npz', samples=(400, 50, 200))}")
    model = NearestCentroid().fit(ds["train"].images.reshape(400, -1) / 255, ds["train"].labels)
    accuracy = model.score(ds["test"].images.reshape(200, -1) / 255, ds["test"].labels)
    assert accuracy > 0.9


def test_synthetic_spec_refuses_plain_npz(tmp_path) -> None:
    path = tmp_path / "plain.npz"
    write_npz(path)
    with pytest.raises(DataError, match="synthetic marker"):
        data.load(f"synthetic:{path}")


@pytest.mark.parametrize("kwargs", [
    {"shape": (28, 28, 2)}, {"shape": (4, 4, 3)}, {"classes": 1}, {"samples": (5, 1, 1)},
])
def test_write_synthetic_rejects_bad_arguments(tmp_path, kwargs) -> None:
    with pytest.raises(DataError):
        data.write_synthetic(tmp_path / "x.npz", **kwargs)


# ---------------------------------------------------------------- folder


def write_images(directory, count: int, size=(12, 12), mode="RGB", value=0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 7)
    for i in range(count):
        Image.new(mode, size, colour).save(directory / f"img_{i}.png")


def test_folder_flat_layout_is_split_70_10_20(tmp_path) -> None:
    for k, name in enumerate(["zebra", "ant", "moth"]):
        write_images(tmp_path / "ds" / name, 10, value=40 * k)
    (tmp_path / "ds" / "ant" / "notes.txt").write_text("not an image")
    ds = data.load(f"folder:{tmp_path / 'ds'}")
    assert ds.info.class_names == ["ant", "moth", "zebra"]
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 21, "val": 3, "test": 6}
    assert np.bincount(ds["val"].labels).tolist() == [1, 1, 1]
    assert ds["train"].images.shape[1:] == (12, 12, 3) and ds.info.source == "folder"
    # pixels follow their labels: "moth" (sorted index 1) was drawn with value 80
    assert np.all(ds["test"].images[ds["test"].labels == 1][..., 0] == 80)
    assert "seed 0" in ds.info.split_note


def test_folder_split_layout_with_and_without_val(tmp_path) -> None:
    for split, count in (("train", 10), ("test", 4)):
        for name in ("a", "b"):
            write_images(tmp_path / split / name, count, mode="L")
    ds = data.load(f"folder:{tmp_path}")
    assert ds.info.channels == 1 and ds.info.task == "binary-class"
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 18, "val": 2, "test": 8}
    assert "carved from train" in ds.info.split_note
    for name in ("a", "b"):
        write_images(tmp_path / "val" / name, 3, mode="L")
    ds = data.load(f"folder:{tmp_path}")
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 20, "val": 6, "test": 8}


def test_folder_mixed_sizes_refused_with_strict(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10, size=(20, 20))
    with pytest.raises(DataError, match="different sizes") as e:
        data.load(f"folder:{tmp_path}", strict=True)
    message = one_line_error(e)
    assert "12×12" in message and "20×20" in message and str(tmp_path / "b") in message


def test_folder_class_sets_must_match(tmp_path) -> None:
    write_images(tmp_path / "train" / "a", 4)
    write_images(tmp_path / "train" / "b", 4)
    write_images(tmp_path / "test" / "a", 2)
    write_images(tmp_path / "test" / "c", 2)
    with pytest.raises(DataError, match="class folders differ"):
        data.load(f"folder:{tmp_path}")


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        data.load(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="no class folders"):
        data.load(f"folder:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        data.load(f"folder:{tmp_path}")


# ---------------------------------------------------------------- describe and checksum


def test_describe_mentions_everything(tmp_path) -> None:
    path = data.write_synthetic(tmp_path / "s.npz", classes=3, samples=(30, 6, 9))
    ds = data.load(f"synthetic:{path}")
    text = data.describe(ds)
    for needle in ("SYNTHETIC", "synthetic_2", "multi-class", "28×28", "3 channels", ds.info.md5,
                   "as stored in the file", "train 30", "val 6", "test 9", str(path)):
        assert needle in text
    row = next(line for line in text.splitlines() if "synthetic_0" in line)
    assert row.split()[1:] == ["10", "(33.3%)", "2", "(33.3%)", "3", "(33.3%)"]
    digits_text = data.describe(data.load("digits"))
    assert "SYNTHETIC" not in digits_text and "1 channel " in digits_text


def test_md5_is_cached_in_cnnvit_cache_not_beside_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path / "cache"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "f.bin"
    path.write_bytes(b"abc")
    assert checksum.md5(path) == hashlib.md5(b"abc").hexdigest()
    assert [p.name for p in data_dir.iterdir()] == ["f.bin"]
    (cache,) = (tmp_path / "cache" / "md5").glob("*.json")
    entry = json.loads(cache.read_text())
    assert entry["md5"] == hashlib.md5(b"abc").hexdigest() and entry["path"] == str(path)
    path.write_bytes(b"abcd")  # new size: the cache no longer applies
    assert checksum.md5(path) == hashlib.md5(b"abcd").hexdigest()
    # a matching entry is reused, not recomputed
    cache.write_text(json.dumps({**json.loads(cache.read_text()), "md5": "0" * 32}))
    assert checksum.md5(path) == "0" * 32


def test_md5_cache_location_follows_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CNNVIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checksum.cache_dir() == tmp_path / "xdg" / "cnnvit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert checksum.cache_dir() == tmp_path / "home" / ".cache" / "cnnvit"


def test_unwritable_cache_just_recomputes(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("CNNVIT_CACHE", str(blocker))
    path = tmp_path / "g.bin"
    path.write_bytes(b"xyz")
    for _ in range(2):
        assert checksum.md5(path) == hashlib.md5(b"xyz").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.bin", "not_a_dir"]

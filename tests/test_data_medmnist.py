"""MedMNIST source against small fake files in MedMNIST's exact format (never the network)."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import medmnist
import numpy as np
import pytest
import torchvision.datasets.utils

from cnnvit import data
from cnnvit.errors import DataError
from tests.fakes import trust, write_fake


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """md5 caches go to a temporary cnnvit cache, never the user's."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CNNVIT_CACHE", str(folder))
    return folder


def test_bloodmnist_loads(tmp_path, cache, monkeypatch) -> None:
    path = write_fake(tmp_path, "bloodmnist")
    digest = trust(monkeypatch, "bloodmnist", path)
    ds = data.load("bloodmnist", root=str(tmp_path))
    info = ds.info
    assert (info.name, info.source, info.task, info.channels, info.image_size) == \
        ("bloodmnist", "medmnist", "multi-class", 3, 28)
    assert info.class_names[0] == "basophil" and len(info.class_names) == 8
    assert info.md5 == digest and info.files == [str(path)] and "official" in info.split_note
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 24, "val": 8, "test": 16}
    assert ds["train"].images.shape == (24, 28, 28, 3) and ds["train"].labels.dtype == np.int64
    with np.load(path) as z:
        np.testing.assert_array_equal(ds["test"].images, z["test_images"])
        np.testing.assert_array_equal(ds["test"].labels, z["test_labels"][:, 0])
    assert [p.name for p in tmp_path.iterdir()] == ["bloodmnist.npz"]  # nothing written beside
    assert list((cache / "md5").glob("*.json"))  # md5 cached in cnnvit's cache for the next run
    assert data.load("medmnist:bloodmnist", root=str(tmp_path)).info.md5 == digest
    assert data.verify("bloodmnist", root=str(tmp_path)).startswith("ok")


def test_wrong_md5_is_refused(tmp_path) -> None:
    write_fake(tmp_path, "bloodmnist")  # not the real file: md5 differs from medmnist.INFO
    for call in (data.load, data.verify):
        with pytest.raises(DataError) as e:
            call("bloodmnist", root=str(tmp_path))
        message = str(e.value)
        assert "\n" not in message and medmnist.INFO["bloodmnist"]["MD5"] in message
        assert "delete it" in message and "cnnvit data fetch medmnist:bloodmnist" in message


def test_missing_file_error_names_file_url_md5_and_directory(tmp_path) -> None:
    info = medmnist.INFO["bloodmnist"]
    with pytest.raises(DataError) as e:
        data.load("medmnist:bloodmnist", root=str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and e.value.code == 2
    for needle in ("bloodmnist.npz", info["url"], info["MD5"], str(tmp_path),
                   "cnnvit data fetch medmnist:bloodmnist", "--download"):
        assert needle in message


def test_cnnvit_data_env_is_the_default_root(tmp_path, monkeypatch) -> None:
    trust(monkeypatch, "bloodmnist", write_fake(tmp_path, "bloodmnist"))
    monkeypatch.setenv("CNNVIT_DATA", str(tmp_path))
    assert data.load("bloodmnist").info.files == [str(tmp_path / "bloodmnist.npz")]


def test_size_picks_the_native_file(tmp_path, monkeypatch) -> None:
    with pytest.raises(DataError) as e:
        data.load("bloodmnist", size=64, root=str(tmp_path))
    message = str(e.value)
    assert "bloodmnist_64.npz" in message and medmnist.INFO["bloodmnist"]["url_64"] in message
    assert "--size 64" in message
    path = write_fake(tmp_path, "bloodmnist", size=64)
    trust(monkeypatch, "bloodmnist", path, size=64)
    ds = data.load("bloodmnist", size=64, root=str(tmp_path))
    assert ds.info.image_size == 64 and ds.info.files == [str(path)]


def test_invalid_size_lists_the_native_sizes(tmp_path) -> None:
    with pytest.raises(DataError, match="28, 64, 128, 224"):
        data.load("bloodmnist", size=32, root=str(tmp_path))


def test_grey_binary_dataset(tmp_path, monkeypatch) -> None:
    path = write_fake(tmp_path, "pneumoniamnist", classes=2, channels=1)
    trust(monkeypatch, "pneumoniamnist", path)
    ds = data.load("medmnist:pneumoniamnist", root=str(tmp_path))
    assert ds.info.channels == 1 and ds.info.task == "binary-class"
    assert ds.info.class_names == ["normal", "pneumonia"]
    assert ds["train"].images.shape == (24, 28, 28, 1)


@pytest.mark.parametrize("spec, match", [
    ("medmnist:chestmnist", "multi-label"),
    ("retinamnist", "ordinal-regression"),
    ("medmnist:organmnist3d", "3D"),
    ("medmnist:notaflag", "unknown MedMNIST dataset"),
])
def test_unsupported_datasets_are_refused(tmp_path, spec, match) -> None:
    with pytest.raises(DataError, match=match) as e:
        data.load(spec, root=str(tmp_path))
    assert "bloodmnist" in str(e.value)  # the message lists datasets that do work
    assert "chestmnist" not in str(e.value).split("choose one of")[1]


def test_labels_beyond_the_class_list_are_refused(tmp_path, monkeypatch) -> None:
    path = write_fake(tmp_path, "bloodmnist", classes=9)
    trust(monkeypatch, "bloodmnist", path)
    with pytest.raises(DataError, match="out of range for 8 classes"):
        data.load("bloodmnist", root=str(tmp_path))


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    for call in (lambda: data.load("bloodmnist", root=str(tmp_path), download=True),
                 lambda: data.fetch("bloodmnist", root=str(tmp_path))):
        with pytest.raises(DataError) as e:
            call()
        message = str(e.value)
        assert "\n" not in message and "download of bloodmnist.npz failed" in message
        assert "no route to host" in message and medmnist.INFO["bloodmnist"]["url"] in message


def test_fetch_downloads_into_the_root(tmp_path, monkeypatch) -> None:
    source = write_fake(tmp_path, "bloodmnist")
    trust(monkeypatch, "bloodmnist", source)
    target = tmp_path / "data"
    calls = []

    def fake_download(url: str, root: str, filename: str, md5: str) -> None:
        calls.append((url, filename, md5))
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, Path(root) / filename)

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fake_download)
    assert data.fetch("medmnist:bloodmnist", root=str(target)) == [target / "bloodmnist.npz"]
    assert calls == [(medmnist.INFO["bloodmnist"]["url"], "bloodmnist.npz",
                      medmnist.INFO["bloodmnist"]["MD5"])]
    data.fetch("medmnist:bloodmnist", root=str(target))  # present: no second download
    assert len(calls) == 1
    assert len(data.load("bloodmnist", root=str(target))["val"]) == 8


def test_medmnist_default_root_is_the_fallback(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(medmnist.info, "DEFAULT_ROOT", str(tmp_path))
    with pytest.raises(DataError, match=f"not found in {tmp_path}"):
        data.load("bloodmnist")

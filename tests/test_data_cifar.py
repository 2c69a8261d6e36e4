"""CIFAR source against a tiny folder in CIFAR's real pickle format (never the network)."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
from torchvision.datasets import CIFAR10, CIFAR100

from cnnvit import data
from cnnvit.errors import DataError
from tests.fakes import NAMES, md5, write_fake_cifar10


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """md5 caches go to a temporary cnnvit cache, never the user's."""
    monkeypatch.setenv("CNNVIT_CACHE", str(tmp_path_factory.mktemp("cache")))


def test_cifar10_loads_with_a_stratified_val_split(tmp_path, monkeypatch) -> None:
    folder = write_fake_cifar10(tmp_path, monkeypatch)
    ds = data.load("cifar10", root=str(tmp_path))
    info = ds.info
    assert (info.name, info.source, info.task, info.channels, info.image_size) == \
        ("cifar10", "cifar", "multi-class", 3, 32)
    assert info.class_names == NAMES and info.files == [str(folder)] and info.notes == []
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 90, "val": 10, "test": 20}
    assert np.bincount(ds["val"].labels, minlength=10).tolist() == [1] * 10
    assert "10 images carved" in info.split_note and "seed 0" in info.split_note
    with open(folder / "test_batch", "rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][3]
    np.testing.assert_array_equal(ds["test"].images[3], row.reshape(3, 32, 32).transpose(1, 2, 0))
    again = data.load("cifar10", root=str(tmp_path))
    np.testing.assert_array_equal(ds["val"].images, again["val"].images)
    assert data.verify("cifar10", root=str(tmp_path)).startswith("ok")
    assert data.fetch("cifar10", root=str(tmp_path)) == [folder]  # present: nothing downloaded


def test_cifar_corrupt_file_is_refused(tmp_path, monkeypatch) -> None:
    folder = write_fake_cifar10(tmp_path, monkeypatch)
    (folder / "data_batch_3").write_bytes(b"garbage")
    for call in (data.load, data.verify):
        with pytest.raises(DataError, match="checksum") as e:
            call("cifar10", root=str(tmp_path))
        assert "\n" not in str(e.value) and "delete that folder" in str(e.value)


@pytest.mark.parametrize("spec, cls", [("cifar10", CIFAR10), ("cifar100", CIFAR100)])
def test_cifar_missing_names_archive_url_md5_and_directory(tmp_path, spec, cls) -> None:
    for call in (data.load, data.verify):
        with pytest.raises(DataError) as e:
            call(spec, root=str(tmp_path))
        message = str(e.value)
        assert "\n" not in message
        for needle in (cls.filename, cls.url, cls.tgz_md5, str(tmp_path),
                       f"cnnvit data fetch {spec}"):
            assert needle in message


def test_cifar_uses_cnnvit_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CNNVIT_DATA", str(tmp_path))
    with pytest.raises(DataError, match=f"not found in {tmp_path}"):
        data.load("cifar10")


def test_cifar_archive_is_extracted_when_present(tmp_path, monkeypatch) -> None:
    source = tmp_path / "src"
    write_fake_cifar10(source, monkeypatch)
    target = tmp_path / "data"
    target.mkdir()
    archive = target / CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    ds = data.load("cifar10", root=str(target))
    assert len(ds["test"]) == 20 and (target / CIFAR10.base_folder).is_dir()


def test_cifar_failed_download_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError) as e:
        data.fetch("cifar10", root=str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and "download of cifar-10-python.tar.gz failed" in message
    assert CIFAR10.url in message and CIFAR10.tgz_md5 in message

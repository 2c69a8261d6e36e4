"""CIFAR source against a tiny folder in CIFAR's real pickle format (never the network)."""

from __future__ import annotations

import hashlib
import pickle
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import CIFAR10, CIFAR100

from cnnvit import data
from cnnvit.errors import DataError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("CNNVIT_DATA", raising=False)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_fake_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 20) -> Path:
    """cifar-10-batches-py with data_batch_1..5, test_batch and batches.meta (latin1 pickles of
    {"data": uint8 N×3072 (channel-major rows), "labels": [...]}); torchvision's md5 lists are
    patched to the fake files' md5s."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_list, test_list = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": name, "labels": [i % 10 for i in range(per_batch)],
                 "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        (test_list if name == "test_batch" else train_list).append([name, md5(folder / name)])
    meta = {"label_names": NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", test_list)
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return folder


def test_cifar10_loads_with_a_stratified_val_split(tmp_path, monkeypatch) -> None:
    folder = write_fake_cifar10(tmp_path, monkeypatch)
    ds = data.load("cifar10", root=str(tmp_path))
    info = ds.info
    assert (info.name, info.source, info.task, info.channels, info.image_size) == \
        ("cifar10", "cifar", "multi-class", 3, 32)
    assert info.class_names == NAMES and info.files == [str(folder)]
    assert {s: len(ds[s]) for s in data.SPLITS} == {"train": 90, "val": 10, "test": 20}
    assert np.bincount(ds["val"].labels, minlength=10).tolist() == [1] * 10
    assert "10 images carved" in info.split_note and "seed 0" in info.split_note
    with open(folder / "test_batch", "rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][3]
    np.testing.assert_array_equal(ds["test"].images[3], row.reshape(3, 32, 32).transpose(1, 2, 0))
    again = data.load("cifar10", root=str(tmp_path), seed=7)
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

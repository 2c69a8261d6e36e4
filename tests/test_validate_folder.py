"""Messy `folder:` datasets: mixed modes and sizes are unified and counted, junk and broken
files are skipped and listed, symlink loops are harmless, and strict mode refuses instead."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnvit import data
from cnnvit.errors import DataError


def write_images(directory: Path, count: int, mode: str = "RGB", size: tuple[int, int] = (12, 12),
                 value: int = 40, start: int = 0) -> None:
    """`count` flat PNG images of one PIL mode; `value` is the red (or grey) level."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        if mode == "I;16":
            im = Image.fromarray(np.full(size[::-1], value * 257, np.uint16))
        elif mode == "P":
            im = Image.new("RGB", size, (value, 0, 0)).convert("P", palette=Image.ADAPTIVE)
        else:
            colour = {"L": value, "LA": (value, 0), "RGB": (value, 0, 0),
                      "RGBA": (value, 0, 0, 0)}[mode]
            im = Image.new(mode, size, colour)
        im.save(directory / f"{mode.replace(';', '')}_{i}.png")


def refused(path: Path, *needles: str, strict: bool = True) -> str:
    with pytest.raises(DataError) as e:
        data.load(f"folder:{path}", strict=strict)
    message = str(e.value)
    assert "\n" not in message and e.value.code == 2
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def all_images(ds: data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([ds[s].images for s in data.SPLITS]),
            np.concatenate([ds[s].labels for s in data.SPLITS]))


def test_mixed_modes_become_rgb_and_are_counted(tmp_path) -> None:
    write_images(tmp_path / "grey", 6, "L", value=90)
    write_images(tmp_path / "grey", 4, "I;16", value=90, start=6)
    write_images(tmp_path / "clear", 10, "RGBA", value=40)  # fully transparent
    write_images(tmp_path / "red", 8, "RGB", value=200)
    write_images(tmp_path / "red", 2, "P", value=200, start=8)
    ds = data.load(f"folder:{tmp_path}")
    images, labels = all_images(ds)
    assert ds.info.channels == 3 and images.shape[1:] == (12, 12, 3)
    clear, grey, red = (images[labels == k] for k in range(3))
    assert np.all(clear == 255)                    # alpha composited on white
    assert np.all(grey == 90)                      # L repeated; I;16 scaled 90*257 -> 90
    assert np.all(red[..., 0] == 200) and np.all(red[..., 1:] == 0)
    assert ("converted 22 images to RGB: 4 from I;16 (16-bit, scaled to 0..255), 6 from L, "
            "2 from P, 10 from RGBA (alpha composited on white)") in ds.info.notes


def test_grey_only_stays_grey(tmp_path) -> None:
    write_images(tmp_path / "a", 10, "L", value=10)
    write_images(tmp_path / "b", 10, "I;16", value=250)
    write_images(tmp_path / "c", 10, "LA", value=30)
    ds = data.load(f"folder:{tmp_path}")
    images, labels = all_images(ds)
    assert ds.info.channels == 1
    assert [int(images[labels == k].max()) for k in range(3)] == [10, 250, 255]


def test_mixed_sizes_are_resized_to_the_most_common_or_requested(tmp_path) -> None:
    write_images(tmp_path / "a", 10, size=(12, 12))
    write_images(tmp_path / "b", 7, size=(12, 12))
    write_images(tmp_path / "b", 3, size=(20, 16), start=7)
    ds = data.load(f"folder:{tmp_path}")
    assert ds.info.image_size == 12 and ds["train"].images.shape[1:3] == (12, 12)
    assert ("resized 3 images to 12×12 (the most common size; sizes found: 12×12 ×17, "
            "20×16 ×3)") in ds.info.notes
    ds = data.load(f"folder:{tmp_path}", size=16)
    assert ds.info.image_size == 16
    assert any(n.startswith("resized 20 images to 16×16 (the requested size")
               for n in ds.info.notes)


def test_one_size_is_kept_even_when_a_size_is_requested(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    ds = data.load(f"folder:{tmp_path}", size=28)
    assert ds.info.image_size == 12 and ds.info.notes == []


def test_non_images_are_skipped_with_a_count(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("about")
    ds = data.load(f"folder:{tmp_path}")
    assert sum(len(ds[s]) for s in data.SPLITS) == 20
    assert ds.info.notes[0] == ("skipped 4 entries that are not images: README.md (not in a "
                                "class folder), a/.DS_Store, a/notes.txt, b/Thumbs.db")


def test_empty_and_corrupt_images_are_skipped_and_listed(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    good = (tmp_path / "b" / "RGB_0.png").read_bytes()
    (tmp_path / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    ds = data.load(f"folder:{tmp_path}")
    assert sum(len(ds[s]) for s in data.SPLITS) == 20
    (note,) = [n for n in ds.info.notes if "unreadable" in n]
    assert note.startswith("skipped 2 unreadable image files: a/empty.png (an empty file, 0 "
                           "bytes), b/cut.png (")


def test_images_in_sub_folders_count_and_symlink_loops_do_not_hang(tmp_path) -> None:
    write_images(tmp_path / "a", 6)
    write_images(tmp_path / "a" / "batch2", 4)
    write_images(tmp_path / "b", 10)
    os.symlink(tmp_path, tmp_path / "a" / "batch2" / "up")  # a loop back to the root
    os.symlink("self.png", tmp_path / "b" / "self.png")     # a link to itself
    ds = data.load(f"folder:{tmp_path}")
    assert ds.info.class_names == ["a", "b"]
    assert np.bincount(all_images(ds)[1]).tolist() == [10, 10]
    skipped = ds.info.notes[0]
    assert "a/batch2/up (a symlinked folder, not followed)" in skipped
    assert "b/self.png (a broken or looping symlink)" in skipped


def test_class_with_only_unreadable_images_is_refused(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"")
    refused(tmp_path, str(tmp_path / "b"), "no readable images", strict=False)


def test_float_tiff_is_skipped_not_guessed(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    Image.fromarray(np.full((12, 12), 0.5, np.float32)).save(tmp_path / "b" / "f.tif")
    notes = data.load(f"folder:{tmp_path}").info.notes
    assert any("b/f.tif (32-bit float pixels have no fixed range" in n for n in notes)


def test_split_layout_class_missing_from_val_is_noted(tmp_path) -> None:
    for split, count in (("train", 10), ("val", 3), ("test", 4)):
        write_images(tmp_path / split / "a", count)
    for split, count in (("train", 10), ("test", 4)):
        write_images(tmp_path / split / "b", count, value=99)
    ds = data.load(f"folder:{tmp_path}")
    assert ds.info.class_names == ["a", "b"]
    assert ds.info.notes == ["the val split has no images of class 1 ('b') (per-class metrics "
                             "of it are undefined there)"]
    refused(tmp_path, str(tmp_path), "val split has no images of class 1 ('b')", "--strict")


def test_split_layout_class_only_outside_train_is_refused(tmp_path) -> None:
    write_images(tmp_path / "train" / "a", 10)
    write_images(tmp_path / "train" / "b", 10)
    write_images(tmp_path / "test" / "a", 4)
    write_images(tmp_path / "test" / "Bee", 4)
    refused(tmp_path, str(tmp_path / "test"), "Bee", "which train lacks", strict=False)


# ---------------------------------------------------------------- strict refuses, naming the file


def test_strict_refuses_mixed_modes(tmp_path) -> None:
    write_images(tmp_path / "a", 10, "RGB")
    write_images(tmp_path / "b", 10, "RGBA")
    refused(tmp_path, str(tmp_path / "b" / "RGBA_0.png"), "RGBA", "RGB", "--strict")


def test_strict_refuses_non_images_but_not_system_files(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "Thumbs.db").write_bytes(b"\0")
    assert len(data.load(f"folder:{tmp_path}", strict=True).info.notes) == 1  # counted, loaded
    (tmp_path / "b" / "labels.csv").write_text("x")
    refused(tmp_path, str(tmp_path / "b" / "labels.csv"), "not an image", "--strict")


def test_strict_refuses_unreadable_images(tmp_path) -> None:
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    (tmp_path / "b" / "empty.png").write_bytes(b"")
    refused(tmp_path, str(tmp_path / "b" / "empty.png"), "0 bytes", "--strict")

"""Plain PNGs decoded a batch at a time (`deploy.png_batch`) give PIL's pixels, and every
other file (or damaged one) is left to PIL: same pixels, same reasons, in the same order.

The PNGs here are written by a small encoder of the PNG specification's five row filters
(independent of PIL's encoder, which picks its own filters), so that every filter appears on
every row, the first row included."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnvit.data.imagefiles import decode
from cnnvit.deploy import png_batch
from cnnvit.deploy.images import Item, load, load_all

COLOURS = {1: 0, 3: 2}  # channels: PNG colour type


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(pixels: np.ndarray, filters: list[int]) -> bytes:
    """The rows of uint8 H×W×C pixels, each filtered by its filter type (0-4), the slow way."""
    h, w, c = pixels.shape
    rows = pixels.reshape(h, w * c).astype(int).tolist()
    out = bytearray()
    for y, kind in enumerate(filters):
        prior = rows[y - 1] if y else [0] * (w * c)
        line = rows[y]
        out.append(kind)
        for x in range(w * c):
            a = line[x - c] if x >= c else 0
            up_left = prior[x - c] if x >= c else 0
            guess = (0, a, prior[x], (a + prior[x]) // 2, _paeth(a, prior[x], up_left))[kind]
            out.append((line[x] - guess) % 256)
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(pixels: np.ndarray, filters: list[int], *, before: tuple[bytes, ...] = (),
         parts: int = 1, header: tuple[int, ...] = ()) -> bytes:
    """A PNG file of `pixels` (uint8 H×W×C, C 1 or 3): `before` chunks between IHDR and the
    image data, the data split into `parts` IDAT chunks; `header` overrides (depth, colour,
    compression, filter, interlace)."""
    h, w, c = pixels.shape
    fields = header or (8, COLOURS[c], 0, 0, 0)
    data = zlib.compress(_filtered(pixels, filters), 9)
    cut = np.linspace(0, len(data), parts + 1).astype(int)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, *fields))
            + b"".join(before)
            + b"".join(_chunk(b"IDAT", data[a:b]) for a, b in zip(cut[:-1], cut[1:], strict=True))
            + _chunk(b"IEND", b""))


def _pil(data: bytes) -> np.ndarray:
    """What the training loader decodes (PIL), as H×W×C."""
    pixels = decode(io.BytesIO(data)).pixels
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _cases(rng: np.random.Generator) -> list[tuple[bytes, np.ndarray]]:
    """Plain PNGs: grey and RGB, several sizes, every filter on the first row and random
    filters below, image data in one or several IDAT chunks, harmless ancillary chunks."""
    gamma = _chunk(b"gAMA", struct.pack(">I", 45455))
    dpi = _chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1))
    cases = []
    for c in (1, 3):
        for h, w in ((1, 1), (3, 5), (8, 8), (28, 28), (9, 2)):
            for first in range(5):
                pixels = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
                pixels[h // 2:] //= 3  # smooth and rough rows
                filters = [first] + rng.integers(0, 5, h - 1).tolist()
                data = _png(pixels, filters, before=(gamma, dpi)[:first % 3],
                            parts=1 + first % 3)
                cases.append((data, pixels))
    return cases


def test_plain_pngs_decode_to_pils_pixels_in_one_batch() -> None:
    cases = _cases(np.random.default_rng(0))
    plains = [png_batch.parse(data) for data, _ in cases]
    assert all(p is not None for p in plains)
    decoded = png_batch.decode([p for p in plains if p is not None])  # sizes and modes mixed
    for (data, pixels), got in zip(cases, decoded, strict=True):
        assert np.array_equal(_pil(data), pixels)  # the encoder is right
        assert got.dtype == np.uint8 and got.flags.writeable
        assert np.array_equal(got, pixels)


def test_a_batch_split_into_several_tall_images_decodes_the_same(monkeypatch) -> None:
    cases = _cases(np.random.default_rng(1))
    plains = [p for p in (png_batch.parse(data) for data, _ in cases) if p is not None]
    whole = png_batch.decode(plains)
    monkeypatch.setattr(png_batch, "TALL_BYTES", 100)  # a few 8×8 images a tall image
    for a, b in zip(whole, png_batch.decode(plains), strict=True):
        assert np.array_equal(a, b)


def test_other_pngs_are_left_to_pil() -> None:
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (6, 7, 1), dtype=np.uint8)
    rows = [1] * 6
    good = _png(grey, rows)
    text = _chunk(b"tEXt", b"Comment\x00hello")
    bad_filter = bytearray(_filtered(grey, rows))
    bad_filter[0] = 5
    not_plain = {
        "palette": (8, 3, 0, 0, 0), "grey+alpha": (8, 4, 0, 0, 0), "rgba": (8, 6, 0, 0, 0),
        "16-bit": (16, 0, 0, 0, 0), "4-bit": (4, 0, 0, 0, 0), "interlaced": (8, 0, 0, 0, 1),
        "compression 1": (8, 0, 1, 0, 0), "filter method 1": (8, 0, 0, 1, 0),
    }
    for name, header in not_plain.items():
        assert png_batch.parse(_png(grey, rows, header=header)) is None, name
    at = good.index(b"IDAT") - 4
    gamma = _chunk(b"gAMA", bytes(4))
    files = {
        "transparency": _png(grey, rows, before=(_chunk(b"tRNS", b"\x00\x07"),)),
        "text chunk": _png(grey, rows, before=(text,)),
        "text after the data": good[:-12] + text + good[-12:],
        "short gamma": _png(grey, rows, before=(_chunk(b"gAMA", b"\x00\x01"),)),
        "bad ancillary checksum": good[:at] + gamma[:-1] + bytes([gamma[-1] ^ 1]) + good[at:],
        "bad header checksum": good[:29] + b"\x00\x00\x00\x00" + good[33:],
        "no end": good[:-12],
        "truncated": good[:-20],
        "bad filter byte": good[:33] + _chunk(b"IDAT", zlib.compress(bytes(bad_filter)))
        + _chunk(b"IEND", b""),
        "rows missing": good[:33] + _chunk(b"IDAT", zlib.compress(_filtered(grey, rows)[:-8]))
        + _chunk(b"IEND", b""),
        "stream without its checksum": good[:33]
        + _chunk(b"IDAT", zlib.compress(_filtered(grey, rows))[:-4]) + _chunk(b"IEND", b""),
        "rows too many": good[:33] + _chunk(b"IDAT", zlib.compress(_filtered(grey, rows) + b"\0"))
        + _chunk(b"IEND", b""),
        "JPEG": b"\xff\xd8\xff\xe0" + good,
        "empty": b"",
    }
    for name, data in files.items():
        assert png_batch.parse(data) is None, name
    assert png_batch.parse(good) is not None
    assert png_batch.parse(good[:at] + gamma + good[at:]) is not None


def test_the_decompression_bomb_limit_is_pils(monkeypatch) -> None:
    data = _png(np.zeros((8, 8, 1), np.uint8), [0] * 8)
    assert png_batch.parse(data) is not None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 63)
    assert png_batch.parse(data) is None  # PIL warns above the limit and refuses above twice
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert png_batch.parse(data) is not None


def _same(a, b) -> bool:
    """Two `Loaded` results agree: the same item, pixels and reason."""
    if a.item != b.item or a.reason != b.reason or (a.pixels is None) != (b.pixels is None):
        return False
    return a.pixels is None or (a.pixels.shape == b.pixels.shape
                                and np.array_equal(a.pixels, b.pixels))


def test_a_mixed_batch_loads_as_each_file_alone(tmp_path: Path) -> None:
    """Plain PNGs of several sizes, PNGs PIL must decode, damaged files, another format and
    an npz image, in one batch, into grey and colour models: each result is what decoding
    that file alone through PIL gives, in the order given."""
    cases = _cases(np.random.default_rng(3))[::4]
    rgba = Image.fromarray(np.random.default_rng(4).integers(0, 256, (5, 5, 4), np.uint8))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    extra = [buffer.getvalue(), cases[0][0][:40], b"not an image", b"", cases[1][0]]
    items = []
    for i, data in enumerate([d for d, _ in cases] + extra):
        (tmp_path / f"{i:02d}.png").write_bytes(data)
        items.append(Item(f"{i:02d}.png", tmp_path / f"{i:02d}.png"))
    items.insert(3, Item("x.npz:test:0", pixels=np.full((4, 4, 1), 9, np.uint8)))
    for channels in (1, 3):
        together = load_all(items, channels)
        assert [x.item for x in together] == items
        alone = [load(item, channels) for item in items]
        assert all(_same(a, b) for a, b in zip(together, alone, strict=True))
        assert sum(x.pixels is None for x in together) == 3


def test_damaged_plain_pngs_load_as_pil_decides(tmp_path: Path) -> None:
    """Random damage to plain PNGs (bytes changed, cut, inserted): each file loads exactly as
    PIL alone loads it (pixels, or PIL's reason), whether or not it still looks plain."""
    rng = np.random.default_rng(5)
    sources = [data for data, _ in _cases(rng)[::7]]
    items, still_plain = [], 0
    for i in range(300):
        data = bytearray(sources[i % len(sources)])
        at = int(rng.integers(8, len(data)))
        kind = i % 3
        if kind == 0:
            data[at] ^= int(rng.integers(1, 256))
        elif kind == 1:
            del data[at:]
        else:
            data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8))
        still_plain += png_batch.parse(bytes(data)) is not None
        (tmp_path / f"{i:03d}.png").write_bytes(bytes(data))
        items.append(Item(f"{i:03d}.png", tmp_path / f"{i:03d}.png"))
    together = load_all(items, 1)
    assert all(_same(a, load(item, 1)) for a, item in zip(together, items, strict=True))
    assert 0 < still_plain < len(items)  # damage PIL ignores too (IDAT checksums) stays plain


@pytest.mark.parametrize("channels", [1, 3])
def test_pil_written_pngs_are_plain(tmp_path: Path, channels: int) -> None:
    """What PIL, MedMNIST's `save` and `cnnvit` write is plain: the fast path is the common
    one."""
    pixels = np.random.default_rng(6).integers(0, 256, (28, 28, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(tmp_path / "a.png")
    plain = png_batch.parse((tmp_path / "a.png").read_bytes())
    assert plain is not None
    assert np.array_equal(png_batch.decode([plain])[0], pixels)

"""Plain PNG files decoded many at a time, with PIL's own PNG decoder.

Most of the cost of a small PNG in PIL is per-file work in Python (identifying the format,
parsing chunks, building the image object), not decoding. `parse` reads the plainest PNGs'
chunks itself and `decode` has PIL's PNG ("zip") decoder unfilter a whole batch of them at
once: the images' rows are stacked into one tall image with a row of zeros (filter None)
before each image, since PNG unfilters every row against the row above it and the first row
of a file against zeros, so each image's rows decode exactly as in its own file.

Plain here means: 8-bit grey or RGB, not interlaced; an IHDR of 13 bytes, then only gAMA,
cHRM, sRGB or pHYs chunks (PIL's minimum length, valid checksum) before contiguous IDAT
chunks, then IEND; the image data one complete zlib stream of exactly the image's rows with
valid filter bytes; no more pixels than PIL's decompression-bomb limit. For such a file PIL
decodes these same bytes into the same pixels. Anything else (palette, alpha, transparency,
16-bit, text chunks, damage of any kind) is not plain: `parse` gives None and the caller
decodes the file with PIL, which gives its pixels or its reason for refusing it. No torch here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"  # signature, then a 13-byte IHDR
# IHDR: width, height, depth, colour, compression, filter, interlace; then its checksum
IHDR = struct.Struct(">IIBBBBBI")
CHUNK = struct.Struct(">I4s")  # length, type
CRC = struct.Struct(">I")
COLOURS = {0: ("L", 1), 2: ("RGB", 3)}  # PNG colour type: PIL mode, channels
ANCILLARY = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9}  # PIL's minimum lengths
TALL_BYTES = 1 << 23  # rows decoded in one tall image at most (bounds the extra memory)


@dataclass(frozen=True)
class Plain:
    """A plain PNG's mode, size and filtered rows (each row: its filter byte, then pixels)."""

    mode: str
    width: int
    height: int
    rows: bytes

    @property
    def key(self) -> tuple[str, int, int]:
        return self.mode, self.width, self.height


def parse(data: bytes) -> Plain | None:
    """The rows of a plain PNG file's bytes, or None when the file is not plain (see the
    module docstring)."""
    try:
        return _parse(data)
    except (struct.error, zlib.error):
        return None


def _parse(data: bytes) -> Plain | None:
    if not data.startswith(HEAD):
        return None
    width, height, depth, colour, compression, filtering, interlace, crc = \
        IHDR.unpack_from(data, len(HEAD))
    limit = Image.MAX_IMAGE_PIXELS
    if ((depth, compression, filtering, interlace) != (8, 0, 0, 0) or colour not in COLOURS
            or zlib.crc32(data[12:29]) != crc or not width or not height
            or (limit is not None and width * height > limit)):
        return None
    pos, image_data = 33, []
    while True:
        length, kind = CHUNK.unpack_from(data, pos)
        start, pos = pos + 8, pos + 12 + length
        if pos > len(data):
            return None
        if kind == b"IDAT":
            image_data.append(data[start:pos - 4])
        elif kind == b"IEND" and image_data:
            break
        elif image_data or length < ANCILLARY.get(kind, 1 << 32) \
                or zlib.crc32(data[start - 4:pos - 4]) != CRC.unpack_from(data, pos - 4)[0]:
            return None  # another chunk, a short one, a bad checksum, data not contiguous
    mode, channels = COLOURS[colour]
    stride = 1 + width * channels
    stream = zlib.decompressobj()
    rows = stream.decompress(b"".join(image_data), height * stride + 1)
    if len(rows) != height * stride or not stream.eof or max(rows[::stride]) > 4:
        return None
    return Plain(mode, width, height, rows)


def decode(plains: list[Plain]) -> list[np.ndarray]:
    """Each plain PNG's pixels, uint8 H×W×C (writable), in order: those of one mode and size
    decoded together (see the module docstring)."""
    groups: dict[tuple[str, int, int], list[int]] = {}
    for i, plain in enumerate(plains):
        groups.setdefault(plain.key, []).append(i)
    pixels: list[np.ndarray] = [np.empty(0, np.uint8)] * len(plains)
    for members in groups.values():
        step = max(1, TALL_BYTES // len(plains[members[0]].rows))
        for s in range(0, len(members), step):
            part = members[s:s + step]
            for i, image in zip(part, _decode_tall([plains[i] for i in part]), strict=True):
                pixels[i] = image
    return pixels


def _decode_tall(plains: list[Plain]) -> np.ndarray:
    """N×H×W×C pixels of plain PNGs of one mode and size, as one tall image."""
    first = plains[0]
    blank = bytes(len(first.rows) // first.height)  # a row of zeros with filter None
    stream = zlib.compress(blank + blank.join(p.rows for p in plains), 0)
    tall = Image.frombytes(first.mode, (first.width, len(plains) * (first.height + 1)),
                           stream, "zip", first.mode)
    return np.array(tall).reshape(len(plains), first.height + 1, first.width, -1)[:, 1:]

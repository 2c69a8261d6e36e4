"""The images `cnnvit predict` reads: files, folders (recursively) and npz archives, decoded
as the training loader decodes them, batch by batch (in threads ahead of the model, or
between its batches).

Decoding is `cnnvit.data.imagefiles.decode` (PIL: grey or RGB, transparency on white, 16-bit
scaled) of each file's bytes, except that the plain PNGs of a batch are decoded together by
`deploy.png_batch` (the same pixels, without PIL's per-file work); the channels are then
made the model's: a grey image into a colour model is repeated into 3 channels (as the
training loader unifies a mixed set), a colour image into a grey model becomes PIL's "L"
(ITU-R 601-2 luma). An npz is read as `npz:<path>` datasets are, and each of its split
arrays becomes images named `<file>:<split>:<index>`. No torch here.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cnnvit.data.folder import SYSTEM_FILES, Walk
from cnnvit.data.imagefiles import DECODE_ERRORS, decode, unreadable_reason
from cnnvit.data.npz import read_arrays
from cnnvit.data.types import SPLITS
from cnnvit.data.validate import to_images
from cnnvit.deploy import png_batch
from cnnvit.deploy.png_batch import Plain
from cnnvit.errors import CnnvitError

READ_MAX = 2**28  # bytes: a larger file is left to PIL to read (likely no image)


@dataclass(frozen=True)
class Item:
    """One input image: its name in the output, and its file or its pixels (from an npz)."""

    name: str
    path: Path | None = None
    pixels: np.ndarray | None = None


@dataclass
class Loaded:
    """A decoded input: uint8 H×W×C pixels in the model's channels, or why it is unreadable."""

    item: Item
    pixels: np.ndarray | None
    reason: str = ""


@dataclass
class Inputs:
    """Every image to predict, and the entries of the given folders that are not images."""

    items: list[Item] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)


def collect(paths: list[str]) -> Inputs:
    """The images named by `paths`: files as given (whatever their extension), image files
    anywhere under folders (sorted; hidden entries skipped as training does), npz archives."""
    found = Inputs()
    for text in paths:
        path = Path(text)
        if path.is_dir():
            walk = Walk(path.resolve())
            found.items += [Item(_shown(f, path), f) for f in walk.images(path.resolve())]
            found.not_images += [s for s in walk.skipped if not _hidden(s)]
        elif path.suffix.lower() == ".npz" and path.is_file():
            found.items += _npz_items(path)
        elif path.exists():
            found.items.append(Item(text, path))
        else:
            raise CnnvitError(f"{text}: no such file or folder; pass image files, folders of "
                              "images or an .npz archive")
    if not found.items:
        raise CnnvitError(f"no images in {', '.join(paths)}: expected image files (PNG, JPEG, "
                          "TIFF, BMP, ...), folders holding them, or an .npz archive")
    return found


def _hidden(entry: str) -> bool:
    """A skipped folder entry ("a/b (why)") that is hidden or OS metadata: not worth a note."""
    name = entry.split(" (")[0].rsplit("/", 1)[-1]
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _shown(file: Path, folder: Path) -> str:
    """The name of a file found under `folder`, as the user would write it."""
    return str(folder / file.relative_to(folder.resolve()))


def _npz_items(path: Path) -> list[Item]:
    """One item per image of each split array of a MedMNIST-layout npz."""
    arrays = read_arrays(path)
    items = []
    for split in SPLITS:
        images = to_images(arrays[f"{split}_images"], str(path), split)
        items += [Item(f"{path}:{split}:{i}", pixels=images[i]) for i in range(len(images))]
    return items


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """uint8 H×W or H×W×C pixels as H×W×`channels` (see the module docstring)."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if have == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=2)
    if have == 3 and channels == 1:
        return np.array(Image.fromarray(pixels).convert("L"))[..., None]  # writable
    raise CnnvitError(f"cannot give a {have}-channel image to a model of {channels} input "
                      "channels; pass grey or RGB images")


def read_bytes(path: Path) -> bytes:
    """A file's bytes, read at once (less work than PIL's own reading of the file); empty for
    a huge file (likely no image), a short read or a file that cannot be opened, which are
    left to PIL (and its reason)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size) if size <= READ_MAX else b""
    except OSError:
        return b""
    finally:
        os.close(fd)
    return data if len(data) == size else b""


def read_pixels(path: Path, data: bytes | None = None) -> np.ndarray:
    """`decode` of a file's bytes `data` (None: read them; empty: left to PIL): the same
    pixels as decoding the file; an unreadable one is decoded again from its path, for PIL's
    reason naming the file."""
    data = read_bytes(path) if data is None else data
    if data:
        try:
            return decode(io.BytesIO(data)).pixels
        except DECODE_ERRORS:
            pass
    return decode(path).pixels


def load(item: Item, channels: int, data: bytes | None = None) -> Loaded:
    """Decode one item (a file, or its bytes `data` when already read) into the model's
    channels, as a writable array (PIL's are read-only, which `torch.from_numpy` in the
    training pipeline warns about); an unreadable file gives its reason."""
    if item.pixels is not None:
        pixels = to_channels(item.pixels, channels)
    else:
        assert item.path is not None
        try:
            pixels = to_channels(read_pixels(item.path, data), channels)
        except DECODE_ERRORS as e:
            return Loaded(item, None, unreadable_reason(e, item.path))
    return Loaded(item, np.require(pixels, requirements="W"))


def load_all(items: list[Item], channels: int) -> list[Loaded]:
    """`load` of each item, in order, with the plain PNG files among them decoded together
    (`deploy.png_batch`: the same pixels, without PIL's per-file work)."""
    loaded: list[Loaded | None] = [None] * len(items)
    plains: list[Plain] = []
    where: list[int] = []
    for i, item in enumerate(items):
        data = read_bytes(item.path) if item.path is not None else None
        plain = png_batch.parse(data) if data else None
        if plain is None:
            loaded[i] = load(item, channels, data)
        else:
            plains.append(plain)
            where.append(i)
    for i, pixels in zip(where, png_batch.decode(plains), strict=True):
        loaded[i] = Loaded(items[i], to_channels(pixels, channels))
    return [d for d in loaded if d is not None]


def batches(items: list[Item], batch_size: int, channels: int, workers: int | None = None
            ) -> Iterator[list[Loaded]]:
    """The items decoded, in order, `batch_size` at a time: `workers` threads (None: one a
    core, at most 8) decode the next two batches, each thread a contiguous share, while the
    caller works on this one; 0 workers: the caller decodes each batch when it asks for it
    (best when the model already keeps every core busy)."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    starts = range(0, len(items), batch_size)

    if workers == 0:
        yield from (load_all(items[start:start + batch_size], channels) for start in starts)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        ahead: deque[list[Future[list[Loaded]]]] = deque()
        left = iter(starts)

        def submit() -> None:
            start = next(left, None)
            if start is not None:
                batch = items[start:start + batch_size]
                step = -(-len(batch) // workers)
                ahead.append([pool.submit(load_all, batch[i:i + step], channels)
                              for i in range(0, len(batch), step)])

        submit()
        submit()
        while ahead:
            futures = ahead.popleft()
            submit()
            yield [loaded for f in futures for loaded in f.result()]


def by_size(images: list[np.ndarray]) -> list[np.ndarray]:
    """Indices of `images` grouped by their shape (each group is resized as one batch)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return [np.array(idx, dtype=np.int64) for idx in groups.values()]

"""The models of `cnnvit demo` and their answers to one image: each model's top classes, the
map of the explain stage's method over the input as the model saw it
(`TorchModel.explain`, drawn by `explain.figures.blend`), and its test accuracy; and the
checks an upload passes before it is decoded (`read_image`). Loading them from a run is
demo_load.py; the page that shows them, demo_app.py.
"""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnvit.errors import CnnvitError
from cnnvit.rundir import RunDir

if TYPE_CHECKING:
    from torch import nn

    from cnnvit.data.types import Split
    from cnnvit.deploy.torch_model import TorchModel

MAX_PIXELS = 24_000_000  # the largest image decoded (a 24-megapixel photo, 6000×4000)
SHOWN = 224  # px, the side the input and the overlays are drawn at (at least)


class UploadError(CnnvitError):
    """An upload the demo refuses: shown on the page with HTTP `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Accuracy:
    """A model's test accuracy in the run and its confidence interval (None: none recorded)."""

    value: float
    low: float | None
    high: float | None
    what: str  # how the interval was made

    @property
    def text(self) -> str:
        from cnnvit import fmt

        interval = "" if self.low is None else f" [{fmt.metric(self.low)}, " \
                                                f"{fmt.metric(self.high)}]"
        return f"{fmt.metric(self.value)}{interval}"


@dataclass(frozen=True)
class Sample:
    """A test sample offered as a thumbnail: its index in the test split and true class."""

    index: int
    label: int
    note: str  # "misclassified by <model> in the run", or ""
    thumb: str  # data URI


@dataclass(frozen=True)
class Ranked:
    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class ModelResult:
    """What one model says about one image."""

    model: str
    family: str
    method: str
    colour: str
    top: list[Ranked]
    overlay: str | None  # data URI: the map over the input as the model saw it
    no_map: str  # why there is no overlay
    side: int  # the model's input side, px
    accuracy: Accuracy | None

    def to_dict(self) -> dict[str, Any]:
        acc = self.accuracy
        return {"model": self.model, "family": self.family, "method": self.method,
                "prediction": self.top[0].name, "probability": self.top[0].probability,
                "top_k": [vars(t) for t in self.top], "overlay": self.overlay,
                "no_map": self.no_map,
                "input_size": self.side,
                "accuracy": None if acc is None else {**vars(acc), "text": acc.text}}


@dataclass
class DemoModel:
    """One model of the run, loaded, with the explain stage's method for it."""

    name: str
    backend: TorchModel
    method: str
    layer: str | nn.Module | None  # Grad-CAM layer: its name, then (after `prepare`) the module
    accuracy: Accuracy | None
    colour: str

    @property
    def family(self) -> str:
        return self.backend.facts.family

    def answer(self, pixels: np.ndarray, top_k: int, class_names: list[str]) -> ModelResult:
        """The top classes for uint8 H×W×C `pixels` (no gradients) and the map of the first."""
        from cnnvit.explain.figures import blend, display_size

        probs = self.backend.probabilities([pixels])[0]  # engine.evaluate.predict: no_grad
        order = np.argsort(-probs, kind="stable")[:top_k]
        top = [Ranked(int(k), class_names[int(k)], float(probs[k])) for k in order]
        size = self.backend.facts.image_size
        try:
            seen, maps, used = self.backend.explain([pixels], np.array([top[0].index]),
                                                    self.method, self.layer)
        except CnnvitError as e:  # e.g. no default Grad-CAM layer: the answer, without a map
            return ModelResult(self.name, self.family, self.method, self.colour, top, None,
                               e.message, size, self.accuracy)
        overlay = blend(seen[0], maps[0], display_size(size, SHOWN))
        return ModelResult(self.name, self.family, used, self.colour, top, png_uri(overlay), "",
                           size, self.accuracy)

    def prepare(self, class_names: list[str]) -> None:
        """Answer a blank image once: resolves "auto" to its method and the Grad-CAM layer to
        its module (found by dry runs, which would otherwise repeat on every request, as the
        explain stage finds it once per run), and pays the slow first calls before the first
        user."""
        from torch import nn

        from cnnvit.explain.cams import target_layer
        from cnnvit.explain.methods import ATTENTION_METHODS

        size, channels = self.backend.facts.image_size, self.backend.facts.channels
        self.method = self.answer(np.zeros((size, size, channels), np.uint8), 1,
                                  class_names).method
        if self.method in (*ATTENTION_METHODS, "auto") or isinstance(self.layer, nn.Module):
            return  # no layer to find, or found already
        try:
            self.layer = target_layer(self.backend.model, self.layer, size)
        except CnnvitError:
            pass  # each answer says why it has no map


@dataclass
class Outcome:
    """Every model's answer for one image, and how long they took."""

    title: str
    image: str  # data URI of the input as given
    results: list[ModelResult]
    seconds: float


@dataclass
class Demo:
    """A run's models, loaded once, and what the page offers."""

    run: RunDir
    models: list[DemoModel]
    class_names: list[str]
    channels: int
    top_k: int
    test: Split | None
    samples: list[Sample]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, pixels: np.ndarray, title: str) -> Outcome:
        """Every model's top classes and map for uint8 H×W×C `pixels` (model channels)."""
        start = time.perf_counter()
        with self.lock:
            results = [m.answer(pixels, self.top_k, self.class_names) for m in self.models]
        return Outcome(title, png_uri(shown(pixels, SHOWN)), results,
                       time.perf_counter() - start)

    def sample(self, index: int) -> Outcome:
        """The answer for test sample `index` (an UploadError when there is none)."""
        if self.test is None or not 0 <= index < len(self.test.labels):
            have = "no test images" if self.test is None else \
                f"test samples 0 to {len(self.test.labels) - 1}"
            raise UploadError(f"no test sample {index}: the demo has {have}", 404)
        label = self.class_names[int(self.test.labels[index])]
        return self.predict(self.test.images[index], f"test sample #{index} · true class: "
                                                     f"{label}")
# -- images ----------------------------------------------------------------------------------


def read_image(data: bytes, channels: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An uploaded file as uint8 H×W×`channels` pixels, decoded as `cnnvit predict` decodes;
    refused (UploadError) when empty, not an image, or over `max_pixels`, which is checked
    from the header before any pixel is decoded."""
    from cnnvit.deploy.images import Item, load

    if not data:
        raise UploadError("the file is empty (0 bytes): choose an image file (PNG, JPEG, TIFF, "
                          "BMP, ...)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:
        raise UploadError(f"the image is too large to decode ({e}); the demo takes images of "
                          f"at most {max_pixels / 1e6:g} megapixels: shrink it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError("the file is not an image that can be read: choose a PNG, JPEG, "
                          "TIFF, BMP, GIF or WebP file") from None
    if width * height > max_pixels:
        raise UploadError(f"the image is too large to decode ({width}×{height} px); the demo "
                          f"takes images of at most {max_pixels / 1e6:g} megapixels: shrink "
                          "it first")
    with tempfile.TemporaryDirectory(prefix="cnnvit-demo-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        loaded = load(Item("upload", path), channels)
    if loaded.pixels is None:
        raise UploadError(f"the image cannot be decoded ({loaded.reason}); save it again as "
                          "PNG or JPEG and upload that")
    return loaded.pixels


def shown(pixels: np.ndarray, minimum: int) -> np.ndarray:
    """uint8 H×W×3 pixels for the page: a small image enlarged by the smallest whole factor
    that reaches `minimum` px (nearest neighbour, as the explain figures draw it: no invented
    detail), a large one shrunk to fit `minimum` px."""
    h, w = pixels.shape[:2]
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    if max(h, w) <= minimum:
        factor = -(-minimum // max(h, w))
        return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    im = Image.fromarray(rgb)
    im.thumbnail((minimum, minimum), Image.Resampling.LANCZOS)
    return np.asarray(im)


def png_uri(pixels: np.ndarray) -> str:
    """A data URI of uint8 (or float in [0, 1]) H×W×3 pixels as PNG."""
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


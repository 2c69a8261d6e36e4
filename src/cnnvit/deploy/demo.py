"""`cnnvit demo DIR`: a local web page showing, for every model of a run side by side, the top
classes of an uploaded image (or of one of the run's test samples), the map of the explain
stage's method over it, and the model's test accuracy with its confidence interval.

A small FastAPI app served by uvicorn renders one self-contained page (Jinja2; inline CSS and
a few lines of inline JS; every image a data URI): no request leaves the machine. FastAPI's
/docs pages (which load Swagger UI from a CDN) are switched off and a Content-Security-Policy
forbids any other origin. docs/demo.md says why this is not Gradio.

Everything is `cnnvit predict`'s and the explain stage's own code: decoding
(`deploy.images.load`), the model with its training preprocessing (`deploy.torch_model`),
maps (`explain.explain` with the method of `explain/<model>/index.csv`) drawn by
`explain.figures.blend`, and the intervals of results/statistics.json read by
`plots.sources.intervals`. Models load once, at start; one request at a time uses them.
An upload is checked before it is decoded (byte cap, image header, pixel count): a bad one
gets a message on the page and the server goes on serving.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import logging
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.rundir import ModelEntry, RunDir

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    from cnnvit.data.types import Split
    from cnnvit.deploy.torch_model import TorchModel

MAX_UPLOAD_BYTES = 20 * 2**20  # the largest file accepted
MAX_PIXELS = 24_000_000  # the largest image decoded (a 24-megapixel photo, 6000×4000)
FORM_SLACK = 64 * 2**10  # multipart boundary and part headers around the file
DRAIN_LIMIT = 256 * 2**20  # an oversized upload is read (and dropped) up to this, then cut
PER_CLASS, MAX_SAMPLES, THUMB = 2, 48, 64  # test-sample thumbnails: per class, in all, px
SHOWN = 224  # px, the side the input and the overlays are drawn at (at least)
# package → the modules any of which provides it (python-multipart ≥ 0.0.13: python_multipart)
NEEDS = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",),
         "python-multipart": ("python_multipart", "multipart")}
CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; form-action 'self'; base-uri 'none'")
log = logging.getLogger("cnnvit.demo")


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


@dataclass
class DemoModel:
    """One model of the run, loaded, with the explain stage's method for it."""

    name: str
    backend: TorchModel
    method: str
    layer: Any  # Grad-CAM layer: its name, then (after `_prepare`) the module; None: default
    accuracy: Accuracy | None
    colour: str

    @property
    def family(self) -> str:
        return self.backend.facts.family


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
        pixels = np.require(pixels, np.uint8, ["C", "W"])  # PIL's arrays are read-only
        with self.lock:
            results = [_predict_one(m, pixels, self.top_k, self.class_names)
                       for m in self.models]
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


def require_packages() -> None:
    """A one-line error when the web packages are missing."""
    missing = [pkg for pkg, modules in NEEDS.items()
               if all(importlib.util.find_spec(m) is None for m in modules)]
    if missing:
        raise CnnvitError(f"cnnvit demo needs {', '.join(missing)}: pip install "
                          "'cnnvit[demo]'")


# -- loading ---------------------------------------------------------------------------------


def load_demo(run_dir: str | Path, *, top_k: int = 3, device: str = "cpu") -> Demo:
    """Load the first seed of every model of the run, their accuracies and the test split."""
    from cnnvit.deploy.predict import check_top_k
    from cnnvit.deploy.torch_model import TorchModel
    from cnnvit.plots.sources import open_run

    src = open_run(run_dir)
    entries = _first_seeds(src.run)
    accuracies = _accuracies(src, entries)
    models = []
    for entry in entries:
        backend = TorchModel(entry.dir, device)
        check_top_k(top_k, backend.facts)
        method, layer = _explain_method(src.run, entry.name)
        models.append(DemoModel(entry.name, backend, method, layer, accuracies.get(entry.name),
                                src.colors[entry.name]))
    facts = [m.backend.facts for m in models]
    for m in models:
        _prepare(m, facts[0].class_names)
    if any(f.class_names != facts[0].class_names or f.channels != facts[0].channels
           for f in facts):
        raise CnnvitError(f"{src.run.root}: the models were trained on different classes or "
                          "channels; start one demo per dataset")
    test = _test_split(models[0])
    return Demo(src.run, models, facts[0].class_names, facts[0].channels, top_k, test,
                _samples(src.run, test, models[0].name))


def _prepare(m: DemoModel, class_names: list[str]) -> None:
    """Answer a blank image once: resolves "auto" to its method and the Grad-CAM layer to its
    module (found by dry runs, which would otherwise repeat on every request, as the explain
    stage finds it once per run), and pays the slow first calls before the first user."""
    from cnnvit.explain.cams import target_layer
    from cnnvit.explain.methods import ATTENTION_METHODS

    size, channels = m.backend.facts.image_size, m.backend.facts.channels
    m.method = _predict_one(m, np.zeros((size, size, channels), np.uint8), 1,
                            class_names).method
    if m.method not in (*ATTENTION_METHODS, "auto"):
        try:
            m.layer = target_layer(m.backend.model, m.layer, size)
        except CnnvitError:
            pass  # each answer says why it has no map


def _first_seeds(run: RunDir) -> list[ModelEntry]:
    """The first seed of each model (as the explain stage explains)."""
    first: dict[str, ModelEntry] = {}
    for entry in run.models():
        first.setdefault(entry.name, entry)
    return list(first.values())


def _explain_method(run: RunDir, name: str) -> tuple[str, str | None]:
    """(method, Grad-CAM layer) the explain stage used for `name`; ("auto", None) when it did
    not run: the stage's default."""
    import pandas as pd

    index = run.explain / name / "index.csv"
    options = run.explain / "options.json"
    layer = read_json(options).get("target_layer") if options.is_file() else None
    try:
        methods = pd.read_csv(index)["method"].dropna()
        return (str(methods.iloc[0]), layer) if len(methods) else ("auto", None)
    except (OSError, ValueError, KeyError):
        return "auto", None


def _accuracies(src: Any, entries: list[ModelEntry]) -> dict[str, Accuracy]:
    """Each model's test accuracy (the mean over its seeds) with the interval statistics.json
    gives (`plots.sources.interval`: bootstrap for one seed, t-interval over several)."""
    from cnnvit.plots.sources import interval, intervals, metrics

    notes: list[str] = []
    table = intervals(src, "test", notes.append)
    if notes:
        log.warning(f"  warning: no confidence intervals ({notes[0].strip()}); run cnnvit "
                    f"compare {src.run.root} to add them")
    stats = src.run.results / "statistics.json"
    level = read_json(stats).get("settings", {}).get("confidence", 0.95) if table is not None \
        else 0.95
    out = {}
    for name in dict.fromkeys(e.name for e in entries):
        seeds = [e for e in src.run.models() if e.name == name]
        try:
            values = [float(metrics(e, "test")["accuracy"]) for e in seeds]
        except (CnnvitError, KeyError, TypeError, ValueError):
            continue
        bounds = interval(table, name, "accuracy", [e.seed for e in seeds])
        what = (f"{level * 100:g} % bootstrap interval" if len(seeds) == 1 else
                f"mean of {len(seeds)} seeds, {level * 100:g} % t-interval")
        low, high = bounds if bounds is not None else (None, None)
        out[name] = Accuracy(float(np.mean(values)), low, high,
                             what if bounds is not None else "no interval recorded")
    return out


def _test_split(model: DemoModel) -> Split | None:
    """The run's test split (for the thumbnails), or None, with a warning, when its data
    are not on this machine."""
    from cnnvit.engine.setup import load_data

    try:
        return load_data(model.backend.setup.cfg)["test"]
    except (CnnvitError, KeyError) as e:
        reason = e.message if isinstance(e, CnnvitError) else f"no {e} split"
        log.warning(f"  warning: the run's test images cannot be loaded ({reason}); the page "
                    "offers uploads only")
        return None


def _samples(run: RunDir, test: Split | None, first_model: str) -> list[Sample]:
    """Thumbnails: `PER_CLASS` test samples of each class and the misclassified ones, those
    the explain stage chose (explain/samples.csv, when it explained the test split), else a
    seeded selection as the stage makes it."""
    import pandas as pd

    from cnnvit.explain.stage import select_samples

    if test is None:
        return []
    chosen = select_samples(test.labels, PER_CLASS, {}, 0, seed=0)
    path = run.explain / "samples.csv"
    if path.is_file():
        try:
            split = pd.read_csv(run.explain / first_model / "index.csv")["split"]
            stage = pd.read_csv(path)
            stage = stage[stage["index"].between(0, len(test.labels) - 1)]
            if len(stage) and (split == "test").all():
                chosen = pd.concat([stage[stage["reason"] == "class"].groupby("label").head(
                    PER_CLASS), stage[stage["reason"] != "class"]])
        except (OSError, ValueError, KeyError):
            pass  # a damaged selection: the seeded one
    chosen = chosen.drop_duplicates("index").head(MAX_SAMPLES)
    return [Sample(int(i), int(test.labels[i]), _note(str(reason)),
                   png_uri(shown(test.images[int(i)], THUMB)))
            for i, reason in zip(chosen["index"], chosen["reason"], strict=True)]


def _note(reason: str) -> str:
    return f"misclassified by {reason[6:]} in the run" if reason.startswith("error:") else ""


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


def _predict_one(m: DemoModel, pixels: np.ndarray, top_k: int,
                 class_names: list[str]) -> ModelResult:
    """One model's top classes for one image (no gradients) and its map of the top class."""
    import torch

    from cnnvit.data.pipeline import resize_uint8
    from cnnvit.data.types import Split
    from cnnvit.explain import explain
    from cnnvit.explain.figures import blend, display_size
    from cnnvit.explain.methods import ATTENTION_METHODS

    probs = m.backend.probabilities([pixels])[0]  # engine.evaluate.predict: under no_grad
    order = np.argsort(-probs, kind="stable")[:top_k]
    top = [Ranked(int(k), class_names[int(k)], float(probs[k])) for k in order]
    setup = m.backend.setup
    x = next(setup.pipeline(Split(pixels[None], np.zeros(1, np.int64))).batches(1))[0]
    kwargs = ({"layer": m.layer} if m.layer is not None and m.method not in ATTENTION_METHODS
              else {})
    size = m.backend.facts.image_size
    try:
        maps, used = explain(m.backend.model, x, m.method, targets=[top[0].index], **kwargs)
    except CnnvitError as e:  # e.g. no default Grad-CAM layer: the answer, without a map
        return ModelResult(m.name, m.family, m.method, m.colour, top, None, e.message, size,
                           m.accuracy)
    seen = resize_uint8(torch.from_numpy(pixels[None]).permute(0, 3, 1, 2), size,
                        setup.cfg.resize_mode)[0].permute(1, 2, 0).numpy()
    overlay = blend(seen, maps[0].numpy(), display_size(size, SHOWN))
    return ModelResult(m.name, m.family, used, m.colour, top, png_uri(overlay), "", size,
                       m.accuracy)


# -- the web app -----------------------------------------------------------------------------


def create_app(demo: Demo, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The page (GET /, POST / with a file, GET /sample/<index>) and its JSON twin
    (POST /api/predict, GET /api/sample/<index>)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="cnnvit demo", docs_url=None, redoc_url=None, openapi_url=None)
    page = _Page(demo, max_upload_bytes)

    async def answer(request: Request) -> Outcome:
        if "sample" in request.path_params:
            sample = _index(request.path_params["sample"])
            return await run_in_threadpool(demo.sample, sample)
        data = await _read_upload(request, max_upload_bytes)
        pixels = await run_in_threadpool(read_image, data, demo.channels)
        return await run_in_threadpool(demo.predict, pixels, "your image")

    async def html(request: Request) -> Response:
        if request.method == "GET" and "sample" not in request.path_params:
            return HTMLResponse(page.render(None))
        try:
            return HTMLResponse(page.render(await answer(request)))
        except UploadError as e:
            return HTMLResponse(page.render(None, e.message), status_code=e.status)

    async def json(request: Request) -> Response:
        try:
            outcome = await answer(request)
        except UploadError as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        return JSONResponse({"title": outcome.title, "seconds": outcome.seconds,
                             "models": [r.to_dict() for r in outcome.results]})

    # plain Starlette routes: the handlers read the request themselves (no FastAPI
    # dependency injection, which would resolve the postponed annotations of this module)
    app.add_route("/", html, methods=["GET", "POST"])
    app.add_route("/sample/{sample}", html, methods=["GET"])
    app.add_route("/api/predict", json, methods=["POST"])
    app.add_route("/api/sample/{sample}", json, methods=["GET"])

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update({"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer",
                                 "X-Content-Type-Options": "nosniff"})
        return response

    return app


def _index(text: str) -> int:
    """A test sample's index from the page's address."""
    if not text.isdigit():
        raise UploadError(f"no test sample {text!r}: a sample is chosen by its index, a whole "
                          "number", 404)
    return int(text)


async def _read_upload(request: Request, cap: int) -> bytes:
    """The bytes of the form's file field `image`, refused unannounced or over `cap` before
    the form is parsed (an oversized body is drained, up to DRAIN_LIMIT, so that the browser
    reads the answer rather than a reset connection)."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise UploadError("the upload has no Content-Length; upload the file from the page", 411)
    if int(length) > cap + FORM_SLACK:
        read = 0
        async for chunk in request.stream():
            read += len(chunk)
            if read > DRAIN_LIMIT:
                break
        raise UploadError(f"the file is larger than {cap / 2**20:g} MB, the most the demo "
                          "takes: shrink or crop it first", 413)
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as e:  # a malformed multipart body: starlette's parse errors vary
        raise UploadError(f"the upload is not a form with a file ({type(e).__name__}); upload "
                          "the file from the page") from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise UploadError("the form has no file named image: choose a file, then Predict")
    try:
        data = await upload.read(cap + 1)
    finally:
        await form.close()
    if len(data) > cap:
        raise UploadError(f"the file is larger than {cap / 2**20:g} MB, the most the demo "
                          "takes: shrink or crop it first", 413)
    return data


class _Page:
    """The page's template and the parts of it that never change."""

    def __init__(self, demo: Demo, max_upload_bytes: int) -> None:
        import jinja2
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        from cnnvit.explain.figures import CMAP, MAX_ALPHA

        env = jinja2.Environment(loader=jinja2.PackageLoader("cnnvit.deploy", "templates"),
                                 autoescape=True, undefined=jinja2.StrictUndefined)
        self.template = env.get_template("demo.html.j2")
        stops = [to_hex(c) for c in colormaps[CMAP](np.linspace(0, 1, 9))]
        self.fixed = {"run": str(demo.run.root), "models": demo.models,
                      "classes": demo.class_names, "samples": demo.samples,
                      "max_bytes": max_upload_bytes, "max_mb": f"{max_upload_bytes / 2**20:g}",
                      "max_mp": f"{MAX_PIXELS / 1e6:g}", "gradient": ", ".join(stops),
                      "max_alpha": MAX_ALPHA, "has_test": demo.test is not None}

    def render(self, outcome: Outcome | None, error: str | None = None) -> str:
        return self.template.render(**self.fixed, outcome=outcome, error=error)


# -- serving ---------------------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or a one-line error."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=64)
    except OSError as e:
        raise CnnvitError(f"cannot listen on {host}:{port} ({e.strerror or e}): choose another "
                          "--port, or stop the program that uses it") from None
    sock.set_inheritable(True)
    return sock


def serve(demo: Demo, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page until Ctrl-C or SIGTERM (uvicorn shuts down, then the signal goes on to
    the command line's handler: exit 130 or 143)."""
    import uvicorn

    sock = listen(host, port)
    bound = sock.getsockname()
    address = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    if not _is_loopback(host):
        log.warning(f"  warning: listening on {host}: anyone who can reach this machine on "
                    f"port {bound[1]} can use the demo; use --host 127.0.0.1 to keep it local")
    names = ", ".join(m.name for m in demo.models)
    print(f"cnnvit demo: {demo.run.root} ({names}) on http://{address}:{bound[1]}/ "
          "(Ctrl-C stops it)", flush=True)
    config = uvicorn.Config(create_app(demo), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=3, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_demo(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 7860, top_k: int = 3,
             device: str = "cpu") -> None:
    """`cnnvit demo`: check the packages, load the run, serve."""
    require_packages()
    if not 0 <= port <= 65535:
        raise CnnvitError(f"--port {port}: a port is a number from 0 to 65535 (0: any free one)")
    started = time.perf_counter()
    demo = load_demo(run_dir, top_k=top_k, device=device)
    print(f"cnnvit demo: loaded {len(demo.models)} models in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    serve(demo, host, port)

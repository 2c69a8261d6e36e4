"""`cnnvit demo DIR`: a local web page showing, for every model of a run side by side, the top
classes of an uploaded image (or of one of the run's test samples), the map of the explain
stage's method over it, and the model's test accuracy with its confidence interval.

A small FastAPI app served by uvicorn renders one self-contained page (Jinja2; inline CSS and
a few lines of inline JS; every image a data URI): no request leaves the machine. FastAPI's
/docs pages (which load Swagger UI from a CDN) are switched off and a Content-Security-Policy
forbids any other origin. docs/demo.md says why this is not Gradio.

Everything is `cnnvit predict`'s and the explain stage's own code (demo_models.py, read from
the run by demo_load.py). Models load once, at start; one request at a time uses them. An
upload is checked before it is decoded (byte cap, then `read_image`'s image header and pixel
count): a bad one gets a message on the page and the server goes on serving.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnvit.deploy.demo_load import load_demo
from cnnvit.deploy.demo_models import MAX_PIXELS, Demo, Outcome, UploadError, read_image
from cnnvit.errors import CnnvitError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

MAX_UPLOAD_BYTES = 20 * 2**20  # the largest file accepted
FORM_SLACK = 64 * 2**10  # multipart boundary and part headers around the file
DRAIN_LIMIT = 256 * 2**20  # an oversized upload is read (and dropped) up to this, then cut
# package → the modules any of which provides it (python-multipart ≥ 0.0.13: python_multipart)
NEEDS = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",),
         "python-multipart": ("python_multipart", "multipart")}
CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; form-action 'self'; base-uri 'none'")
log = logging.getLogger("cnnvit.demo")


def require_packages() -> None:
    """A one-line error when the web packages are missing."""
    missing = [pkg for pkg, modules in NEEDS.items()
               if all(importlib.util.find_spec(m) is None for m in modules)]
    if missing:
        raise CnnvitError(f"cnnvit demo needs {', '.join(missing)}: pip install "
                          "'cnnvit[demo]'")


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

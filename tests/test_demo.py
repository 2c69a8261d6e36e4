"""`cnnvit demo` on the session's quickstart run: the page and its JSON twin in-process
(FastAPI's TestClient), every kind of bad upload followed by a good one, and a real headless
Chromium (Debian's `chromium` + `chromium-driver`, through Selenium) driving the page that
`cnnvit demo` serves from a subprocess on a free loopback port."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnvit.cli import main
from cnnvit.deploy.demo_app import create_app, listen
from cnnvit.deploy.demo_load import load_demo
from cnnvit.deploy.demo_models import MAX_PIXELS, read_image
from cnnvit.errors import CnnvitError

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SAMPLE = 7  # the test sample uploaded as a PNG
# conftest refuses every connection; the browser test needs loopback ones (to chromedriver)
_CONNECT, _CREATE_CONNECTION = socket.socket.connect, socket.create_connection
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="module")
def demo(quick_run: Path):
    return load_demo(quick_run)


@pytest.fixture(scope="module")
def client(demo) -> TestClient:
    return TestClient(create_app(demo))


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A black 8-bit grey PNG of width×height, its pixel stream compressed row by row; with
    `rows`, only that many rows are stored (the header still says `height`): a 20,000 ×
    20,000 image in a few hundred bytes."""
    pack = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then black pixels
    data = b"".join(pack.compress(row) for _ in range(height if rows is None else rows))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) +
            _chunk(b"IDAT", data + pack.flush()) + _chunk(b"IEND", b""))


def upload(client: TestClient, data: bytes, url: str = "/api/predict", name: str = "x.png"):
    return client.post(url, files={"image": (name, data, "application/octet-stream")})


def _check_answer(demo, run: Path, answer: dict) -> None:
    """Every model answered, with the probabilities of its own predictions_test.csv for
    sample SAMPLE (the training preprocessing), its explain-stage method, a decodable map and
    its interval from statistics.json."""
    stats = pd.DataFrame(json.loads((run / "results" / "statistics.json").read_text())
                         ["intervals"])
    assert [m["model"] for m in answer["models"]] == [m.name for m in demo.models]
    for m in answer["models"]:
        ref = pd.read_csv(run / "models" / m["model"] / "predictions_test.csv")
        probs = ref.loc[ref["index"] == SAMPLE].filter(like="prob_").to_numpy()[0]
        best = int(np.argmax(probs))
        assert m["prediction"] == demo.class_names[best]
        assert m["probability"] == pytest.approx(probs[best], abs=1e-4)
        assert [t["probability"] for t in m["top_k"]] == sorted(
            (t["probability"] for t in m["top_k"]), reverse=True)
        assert len(m["top_k"]) == demo.top_k
        index = pd.read_csv(run / "explain" / m["model"] / "index.csv")
        assert m["method"] == index["method"].iloc[0]
        overlay = Image.open(io.BytesIO(base64.b64decode(m["overlay"].split(",", 1)[1])))
        assert overlay.size == (224, 224) and overlay.mode == "RGB"
        row = stats[(stats["model"] == m["model"]) & (stats["metric"] == "accuracy")].iloc[0]
        assert (m["accuracy"]["low"], m["accuracy"]["high"]) == (row["low"], row["high"])
        assert m["accuracy"]["value"] == pytest.approx(row["value"])


def test_an_uploaded_png_gets_every_models_answer(demo, client, quick_run):
    answer = upload(client, png(demo.test.images[SAMPLE]))
    assert answer.status_code == 200, answer.text
    _check_answer(demo, quick_run, answer.json())
    page = upload(client, png(demo.test.images[SAMPLE]), url="/")
    assert page.status_code == 200 and 'id="results"' in page.text
    for m in answer.json()["models"]:
        assert f'<span class="prediction">{m["prediction"]}</span>' in page.text
        assert f'<span class="probability">{m["probability"]:.3f}</span>' in page.text
        assert m["accuracy"]["text"] in page.text


def test_test_samples_are_offered_and_answer_as_their_upload(demo, client):
    page = client.get("/").text
    links = [int(i) for i in re.findall(r'href="/sample/(\d+)"', page)]
    assert len(links) >= len(demo.class_names)
    shown = client.get(f"/sample/{links[0]}")
    true = demo.class_names[int(demo.test.labels[links[0]])]
    assert shown.status_code == 200 and f"true class: {true}" in shown.text
    by_index = client.get(f"/api/sample/{SAMPLE}").json()["models"]
    by_upload = upload(client, png(demo.test.images[SAMPLE])).json()["models"]
    assert [(m["prediction"], m["probability"]) for m in by_index] == \
        [(m["prediction"], m["probability"]) for m in by_upload]
    assert client.get("/api/sample/100000").status_code == 404
    assert client.get("/sample/x").status_code == 404


BAD = {  # name → (file bytes, a phrase of the message)
    "text file": (b"name,value\nnot,an image\n", "not an image"),
    "0 bytes": (b"", "the file is empty (0 bytes)"),
    "decompression bomb": (grey_png(8000, 8000), "too large to decode (8000×8000 px)"),
    "20,000 × 20,000": (grey_png(20_000, 20_000, rows=2), "too large to decode"),
    "truncated PNG": (png(np.full((64, 64, 3), 200, np.uint8))[:80], "cannot be decoded"),
}


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_upload_gets_a_message_and_the_server_goes_on(demo, client, kind):
    data, phrase = BAD[kind]
    assert len(data) < 200_000  # each is cheap to make and to send
    answer = upload(client, data)
    assert answer.status_code == 400 and phrase in answer.json()["error"]
    page = upload(client, data, url="/")
    assert page.status_code == 400 and 'id="error"' in page.text
    assert phrase in page.text.replace("&#39;", "'")
    good = upload(client, png(demo.test.images[SAMPLE]))
    assert good.status_code == 200 and len(good.json()["models"]) == len(demo.models)


def test_oversized_unannounced_or_fileless_uploads_are_refused(demo):
    small = TestClient(create_app(demo, max_upload_bytes=2000))
    big = upload(small, png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    assert big.status_code == 413 and "larger than" in big.json()["error"]
    chunked = small.post("/api/predict", content=iter([b"--x\r\n"]),
                         headers={"content-type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 411
    fileless = small.post("/api/predict", data={"other": "1"})
    assert fileless.status_code == 400 and "no file named image" in fileless.json()["error"]
    assert upload(small, png(demo.test.images[SAMPLE])).status_code == 200


def test_a_model_without_a_map_still_answers(demo, client, monkeypatch):
    monkeypatch.setattr(demo.models[0], "method", "rollout")  # a ViT method for the CNN
    answer = upload(client, png(demo.test.images[SAMPLE])).json()["models"]
    assert answer[0]["overlay"] is None and "needs a Vision Transformer" in answer[0]["no_map"]
    assert answer[1]["overlay"] is not None
    page = upload(client, png(demo.test.images[SAMPLE]), url="/")
    assert page.status_code == 200 and 'class="no-map"' in page.text


def test_the_page_asks_nothing_of_other_machines(client):
    page = client.get("/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href|action)="([^"]*)"', page.text)
    assert refs and all(r.startswith(("/", "data:")) for r in refs), refs
    assert "http://" not in page.text and "https://" not in page.text
    for swagger in ("/docs", "/redoc", "/openapi.json"):  # Swagger UI comes from a CDN
        assert client.get(swagger).status_code == 404


def test_read_image_checks_the_header_before_decoding():
    with pytest.raises(CnnvitError, match="megapixels"):
        read_image(grey_png(6000, 6000, rows=1), 1, max_pixels=MAX_PIXELS)
    grey = read_image(png(np.full((5, 7, 3), 30, np.uint8)), 1)
    assert grey.shape == (5, 7, 1) and grey.dtype == np.uint8


def test_command_line_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["demo", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["demo", str(tmp_path), "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    taken = listen("127.0.0.1", 0)
    with pytest.raises(CnnvitError, match="cannot listen on 127.0.0.1"):
        listen("127.0.0.1", taken.getsockname()[1])
    taken.close()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["demo", str(tmp_path)]) == 2
    assert "cnnvit demo needs uvicorn: pip install 'cnnvit[demo]'" in capsys.readouterr().err


# -- a real browser ----------------------------------------------------------------------------


def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise OSError("network access in a test")
        _CONNECT(self, address)

    def create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        if address[0] not in LOOPBACK:
            raise OSError("network access in a test")
        return _CREATE_CONNECTION(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)


class Server:
    """`cnnvit demo RUN --port 0` in a subprocess: its address (which it prints) and output."""

    def __init__(self, run: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnvit", "demo", str(run),
                                      "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.output = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.output += self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if found := re.search(r"http://127\.0\.0\.1:\d+/", self.output):
                self.url = found.group(0)
                return
        self.proc.kill()
        raise AssertionError(f"cnnvit demo did not start:\n{self.output}")

    def _read(self) -> None:
        for line in self.proc.stdout or []:
            self.lines.put(line)

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.reader.join(timeout=5)
        while not self.lines.empty():
            self.output += self.lines.get()
        return self.proc.returncode


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.fail(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install "
                    "chromium chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_in_a_real_browser(demo, quick_run, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _loopback_only(monkeypatch)
    image = tmp_path / "digit.png"
    image.write_bytes(png(demo.test.images[SAMPLE]))
    expected = demo.predict(read_image(image.read_bytes(), demo.channels), "expected").results
    server = Server(quick_run)
    url = server.url
    driver = None
    try:
        driver = _browser()
        driver.get(url)
        (tmp_path / "bad.txt").write_text("not an image")
        driver.find_element(By.ID, "file").send_keys(str(tmp_path / "bad.txt"))
        error = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "error")))
        assert "not an image" in error.text
        started = time.perf_counter()
        driver.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "results")))
        seconds = time.perf_counter() - started
        for r in expected:
            card = driver.find_element(By.CSS_SELECTOR, f'article[data-model="{r.model}"]')
            assert card.find_element(By.CLASS_NAME, "prediction").text == r.top[0].name
            shown = float(card.find_element(By.CLASS_NAME, "probability").text)
            assert shown == pytest.approx(r.top[0].probability, abs=1.5e-3)
            overlay = card.find_element(By.CSS_SELECTOR, "img.overlay")
            assert driver.execute_script("return arguments[0].complete && "
                                         "arguments[0].naturalWidth", overlay) > 0
        fetched = driver.execute_script("return performance.getEntriesByType('resource')"
                                        ".map(e => e.name)")
        assert all(u.startswith(url) or u.startswith("data:") for u in fetched), fetched
        shot = Path(os.environ.get("CNNVIT_DEMO_SCREENSHOT") or tmp_path / "demo.png")
        assert driver.save_screenshot(str(shot)) and Image.open(shot).size[0] > 0
        print(f"browser round trip (upload to both models' results and maps): {seconds:.2f} s")
    finally:
        if driver is not None:
            driver.quit()
        code = server.stop()
    assert code == 130 and "interrupted by SIGINT" in server.output, server.output

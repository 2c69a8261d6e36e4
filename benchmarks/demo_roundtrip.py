"""Round trip of `cnnvit demo`: upload an image, get every model's top classes and map back.

    python benchmarks/demo_roundtrip.py RUN_DIR [--repeats 10] [--image photo.png]

Starts `cnnvit demo RUN_DIR --port 0` in a subprocess, as a user would, and POSTs the image
as a multipart form to the page (`POST /`, the HTML with every model's answer and overlay
inlined, what the browser receives) and to the JSON twin (`POST /api/predict`), over
loopback HTTP, `--repeats` times each after one warm-up request. Prints the median, min and
max wall time of each, and the server's own time (decode, predict and explain every model,
draw the overlays). Default image: a seeded 224×224 RGB noise PNG (each model resizes it to
its input size, as it would a photo). Target: median ≤ 2 s for the quickstart's models on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

BOUNDARY = "cnnvit-demo-benchmark"


def form(image: bytes, name: str) -> bytes:
    """A multipart/form-data body with the file field `image`."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    return head.encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(url: str, body: bytes) -> tuple[float, bytes]:
    """Seconds from sending the request to having read the whole answer, and the answer."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        data = response.read()
    return time.perf_counter() - start, data


def start(run_dir: str) -> tuple[subprocess.Popen, str]:
    """`cnnvit demo RUN_DIR --port 0`, and the address it prints once it serves."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnvit", "demo", run_dir, "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout or []:
        print(line.rstrip())
        if found := re.search(r"http://\S+/", line):
            return proc, found.group(0)
    raise SystemExit(f"cnnvit demo exited with code {proc.wait()}")


def summary(label: str, seconds: list[float]) -> str:
    return (f"{label}: median {statistics.median(seconds):.3f} s (min {min(seconds):.3f}, "
            f"max {max(seconds):.3f}, {len(seconds)} round trips)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--image", default=None, help="image file to upload")
    args = parser.parse_args()
    if args.image:
        image, name = Path(args.image).read_bytes(), Path(args.image).name
    else:
        pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        image, name = buffer.getvalue(), "noise-224.png"
    body = form(image, name)
    proc, url = start(args.run_dir)
    try:
        post(url + "api/predict", body)  # warm-up: first-call allocations, lazy imports
        page = [post(url, body)[0] for _ in range(args.repeats)]
        api, server = [], []
        for _ in range(args.repeats):
            seconds, data = post(url + "api/predict", body)
            answer = json.loads(data)
            api.append(seconds)
            server.append(answer["seconds"])
        models = ", ".join(f"{m['model']}: {m['prediction']} {m['probability']:.3f} "
                           f"({m['method']})" for m in answer["models"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    print(f"image {name} ({len(image):,} bytes); {models}")
    print(summary("page  POST /            ", page))
    print(summary("JSON  POST /api/predict ", api))
    print(summary("server time per request ", server))


if __name__ == "__main__":
    main()

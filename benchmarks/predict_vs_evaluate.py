"""`cnnvit predict` on a folder of PNGs against in-memory evaluation, same model, same size.

    python benchmarks/predict_vs_evaluate.py MODEL_DIR [--images 2000] [--repeats 3]

Writes `--images` PNGs from the model's test split (cycled, at the stored size) into a
temporary folder, then times, alternately and `--repeats` times each:

- evaluate: `engine.evaluate.predict` on the test split already on the device and resized
  (what `cnnvit evaluate` reports as images/s);
- predict: `deploy.predict.predict_rows` on the folder's files (PIL decoding in the thread
  pool, batched resize and normalisation, the same model and batch size), the model already
  loaded, as `cnnvit predict` runs after its start-up.

Prints each side's best images/s and the ratio predict / evaluate (issue 11 asks ≥ 0.8).
Run it on an otherwise idle machine: both sides share the CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnvit.deploy.images import collect
from cnnvit.deploy.predict import predict_rows
from cnnvit.deploy.torch_model import TorchModel
from cnnvit.engine.evaluate import load_model, predict
from cnnvit.engine.runtime import amp_dtype
from cnnvit.rundir import ModelDir


def write_pngs(images: np.ndarray, count: int, folder: Path) -> None:
    """`count` PNGs cycling through `images` (uint8 N×H×W×C)."""
    for i in range(count):
        image = images[i % len(images)]
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            folder / f"{i:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--images", type=int, default=2000, help="PNG files to predict")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="both sides (default: the model's eval_batch_size)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setup, model, _ = load_model(args.model_dir)
    batch = args.batch_size or setup.cfg.eval_batch_size
    pipe = setup.pipeline("test")
    dtype = amp_dtype(setup.cfg.amp, setup.device)
    backend = TorchModel(ModelDir(args.model_dir), batch_size=batch)
    k = backend.facts.num_classes
    with tempfile.TemporaryDirectory(prefix="cnnvit-predict-bench-") as tmp:
        write_pngs(setup.dataset["test"].images, args.images, Path(tmp))
        items = collect([tmp]).items

        def evaluate_rate() -> float:
            return predict(model, pipe, batch, dtype)[1]

        def predict_rate() -> float:
            start = time.perf_counter()
            rows = predict_rows(backend, items, k)
            return len(rows) / (time.perf_counter() - start)

        predict_rate()  # warm-up: thread pool, allocator
        rates = {"evaluate": 0.0, "predict": 0.0}
        for _ in range(args.repeats):
            rates["evaluate"] = max(rates["evaluate"], evaluate_rate())
            rates["predict"] = max(rates["predict"], predict_rate())
    size = setup.image_size
    print(f"model {setup.cfg.model} at {size} px, batch {batch}, {torch.get_num_threads()} "
          f"threads, device {setup.device}")
    print(f"evaluate (in memory): {rates['evaluate']:.1f} images/s on {len(pipe)} test images")
    print(f"predict ({args.images} PNG files): {rates['predict']:.1f} images/s")
    print(f"ratio predict / evaluate: {rates['predict'] / rates['evaluate']:.2f}")


if __name__ == "__main__":
    main()

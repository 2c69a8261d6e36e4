"""`cnnvit predict` on a folder of PNGs against in-memory evaluation, same model, same size.

    python benchmarks/predict_vs_evaluate.py MODEL_DIR [--images 2000] [--repeats 20]

Takes `--images` images of the model's test split (cycled, at the stored size), writes them
as PNGs into a temporary folder, then times both sides side by side in `--repeats` rounds of
one run each, the order alternating between rounds (so that the other load of a shared
machine slows both alike):

- evaluate: `engine.evaluate.predict` on those images already on the device and resized
  (what `cnnvit evaluate` reports as images/s);
- predict: `deploy.predict.predict_rows` on those files (decoding as `cnnvit predict`
  does, batched resize and normalisation, the same model and batch size), the model already
  loaded, as `cnnvit predict` runs after its start-up.

Prints each side's images/s over all rounds and in its best round, the ratio predict /
evaluate over all rounds (issue 11 asks >= 0.8), and the median and range of the rounds'
ratios. Run it on an otherwise idle machine: both sides share the CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnvit.data.types import Split
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
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="both sides (default: the model's eval_batch_size)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setup, model, _ = load_model(args.model_dir)
    batch = args.batch_size or setup.cfg.eval_batch_size
    test = setup.dataset["test"]
    pick = np.arange(args.images) % len(test)
    pipe = setup.pipeline(Split(test.images[pick], test.labels[pick]))
    dtype = amp_dtype(setup.cfg.amp, setup.device)
    backend = TorchModel(ModelDir(args.model_dir), batch_size=batch)
    k = backend.facts.num_classes
    with tempfile.TemporaryDirectory(prefix="cnnvit-predict-bench-") as tmp:
        write_pngs(test.images, args.images, Path(tmp))
        items = collect([tmp]).items
        seconds = np.zeros((2, args.repeats))  # evaluate, predict; per round
        predict_rows(backend, items, k)  # warm-up: allocator, file cache
        for r in range(args.repeats):
            for side in (0, 1) if r % 2 == 0 else (1, 0):
                if side == 0:
                    seconds[0, r] = len(pipe) / predict(model, pipe, batch, dtype)[1]
                else:
                    start = time.perf_counter()
                    predict_rows(backend, items, k)
                    seconds[1, r] = time.perf_counter() - start
    evaluate, predicted = args.images / seconds
    total = seconds.sum(axis=1)
    ratios = predicted / evaluate
    print(f"model {setup.cfg.model} at {setup.image_size} px, batch {batch}, "
          f"{torch.get_num_threads()} threads, {backend.decode_workers} decoding threads, "
          f"device {setup.device}")
    for name, r, t in (("evaluate (in memory)", evaluate, total[0]),
                       ("predict (PNG files)", predicted, total[1])):
        print(f"{name}: {args.images * args.repeats / t:.1f} images/s over all rounds, "
              f"{r.max():.1f} in the best, {args.images} images a round")
    print(f"ratio predict / evaluate: {total[0] / total[1]:.2f} over all rounds; each round: "
          f"median {np.median(ratios):.2f}, {ratios.min():.2f}-{ratios.max():.2f} over "
          f"{args.repeats}")


if __name__ == "__main__":
    main()

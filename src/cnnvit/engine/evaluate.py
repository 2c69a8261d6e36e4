"""Prediction and evaluation: probabilities → metrics_<split>.json and predictions_<split>.csv."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnvit import config as config_mod
from cnnvit import metrics
from cnnvit.checkpoint import load_checkpoint
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Dataset
from cnnvit.engine.runtime import amp_dtype, autocast
from cnnvit.engine.setup import Setup, prepare
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_csv


@torch.no_grad()
def predict(model: torch.nn.Module, pipe: BatchPipeline, batch_size: int,
            dtype: torch.dtype | None = None) -> tuple[np.ndarray, float]:
    """Class probabilities (float64, N×K) of a whole split, and the images/s achieved."""
    was_training = model.training
    model.eval()
    out = []
    start = time.perf_counter()
    for x, _ in pipe.batches(batch_size):
        with autocast(pipe.device, dtype):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1).double().cpu())
    if pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)
    seconds = time.perf_counter() - start
    model.train(was_training)
    probs = torch.cat(out).numpy()
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, len(pipe) / max(seconds, 1e-9)


def evaluate_split(model: torch.nn.Module, setup: Setup, split: str, out_dir: Path,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate on one split and write metrics_<split>.json and predictions_<split>.csv."""
    cfg = setup.cfg
    pipe = setup.pipeline(split)
    probs, img_s = predict(model, pipe, cfg.eval_batch_size, amp_dtype(cfg.amp, setup.device))
    y = setup.dataset[split].labels
    result = metrics.compute(y, probs, list(setup.info.class_names), task=setup.info.task)
    result.update({"split": split, "model": cfg.model, "dataset": cfg.dataset,
                   "synthetic": setup.info.synthetic, "eval_images_per_s": round(img_s, 1)})
    result.update(extra or {})
    metrics.write_json(result, out_dir / f"metrics_{split}.json")
    atomic_write_csv(metrics.predictions_frame(y, probs), out_dir / f"predictions_{split}.csv")
    return result


def load_model(model_dir: str | Path, checkpoint: str = "best", device: str | None = None,
               dataset: Dataset | None = None) -> tuple[Setup, torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its directory: (setup, model in eval mode, checkpoint)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.yaml").is_file():
        raise CnnvitError(f"{model_dir} is not a cnnvit model directory (no config.yaml); "
                          "pass the --out directory of `cnnvit train`")
    cfg, _ = config_mod.from_model_dir(model_dir)
    if device is not None:
        cfg = cfg.replace(device=device)
    setup = prepare(cfg, dataset)
    ckpt = load_checkpoint(model_dir / "checkpoints" / f"{checkpoint}.pt", map_location="cpu")
    model = setup.build_model(pretrained=False, weights=None)
    model.load_state_dict(ckpt["model"])
    return setup, model.eval(), ckpt


def evaluate_dir(model_dir: str | Path, splits: tuple[str, ...] = ("val", "test"),
                 checkpoint: str = "best", device: str | None = None) -> dict[str, dict]:
    """Re-evaluate a trained model directory from its config.yaml and checkpoint."""
    setup, model, ckpt = load_model(model_dir, checkpoint, device)
    extra = {"checkpoint": checkpoint, "epoch": int(ckpt.get("epoch", 0))}
    return {s: evaluate_split(model, setup, s, Path(model_dir), extra) for s in splits}

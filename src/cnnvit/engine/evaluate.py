"""Prediction and evaluation: probabilities → metrics_<split>.json and predictions_<split>.csv."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cnnvit import metrics
from cnnvit.checkpoint import load_checkpoint
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Dataset
from cnnvit.engine.distributed import World
from cnnvit.engine.runtime import amp_dtype, autocast
from cnnvit.engine.setup import Setup, prepare
from cnnvit.io import atomic_write_csv, atomic_write_json
from cnnvit.rundir import ModelDir


@torch.no_grad()
def predict(model: torch.nn.Module, pipe: BatchPipeline, batch_size: int,
            dtype: torch.dtype | None = None, world: World = World()
            ) -> tuple[np.ndarray, float]:
    """Class probabilities (float64, N×K) of a whole split, and the images/s achieved. With
    several processes each predicts its part of the split (`BatchPipeline.batches`), and every
    rank gets all N rows, in order: each sample exactly once."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    start = time.perf_counter()
    for x, _ in pipe.batches(batch_size, shard=(world.rank, world.size)):
        with autocast(pipe.device, dtype):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1).double().cpu())
    if pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)
    seconds = max(world.gather(time.perf_counter() - start))
    model.train(was_training)
    mine = torch.cat(out).numpy() if out else np.zeros((0, 0))
    probs = np.concatenate([p for p in world.gather(mine) if len(p)])
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, len(pipe) / max(seconds, 1e-9)


def predictions_frame(y_true: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """One row per sample: columns ``index, label, prediction, prob_0 .. prob_{K-1}``."""
    y, p = metrics.validate_inputs(y_true, probs)
    frame = pd.DataFrame(
        {"index": np.arange(len(y), dtype=np.int64), "label": y, "prediction": p.argmax(axis=1)})
    for j in range(p.shape[1]):
        frame[f"prob_{j}"] = p[:, j]
    return frame


def evaluate_split(model: torch.nn.Module, setup: Setup, split: str, out: ModelDir,
                   extra: dict[str, Any] | None = None, world: World = World()
                   ) -> dict[str, Any]:
    """Evaluate on one split and write metrics_<split>.json and predictions_<split>.csv (rank
    0 writes them when several processes evaluate, each its part of the split)."""
    cfg = setup.cfg
    pipe = setup.pipeline(split)
    probs, img_s = predict(model, pipe, cfg.eval_batch_size, amp_dtype(cfg.amp, setup.device),
                           world)
    y = setup.dataset[split].labels
    result = metrics.compute(y, probs, list(setup.info.class_names), task=setup.info.task)
    result.update({"split": split, "model": cfg.model, "dataset": cfg.dataset,
                   "synthetic": setup.info.synthetic, "eval_images_per_s": round(img_s, 1)})
    result.update(extra or {})
    if world.is_main:
        atomic_write_json(out.metrics(split), result)
        atomic_write_csv(predictions_frame(y, probs), out.predictions(split))
    return result


def load_model(model_dir: str | Path, checkpoint: str = "best", device: str | None = None,
               dataset: Dataset | None = None) -> tuple[Setup, torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its directory: (setup, model in eval mode, checkpoint)."""
    cfg, _ = ModelDir(model_dir).read_config()
    if device is not None:
        cfg = cfg.replace(device=device)
    setup = prepare(cfg, dataset)
    ckpt = load_checkpoint(ModelDir(model_dir).checkpoint(checkpoint), map_location="cpu")
    model = setup.build_model(pretrained=False, weights=None)
    model.load_state_dict(ckpt["model"])
    return setup, model.eval(), ckpt


def evaluate_dir(model_dir: str | Path, splits: tuple[str, ...] = ("val", "test"),
                 checkpoint: str = "best", device: str | None = None) -> dict[str, dict]:
    """Re-evaluate a trained model directory from its config.yaml and checkpoint."""
    setup, model, ckpt = load_model(model_dir, checkpoint, device)
    extra = {"checkpoint": checkpoint, "epoch": int(ckpt.get("epoch", 0))}
    return {s: evaluate_split(model, setup, s, ModelDir(model_dir), extra) for s in splits}

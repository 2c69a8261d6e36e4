"""A trained model rebuilt from its directory, predicting (and explaining) new images through
the training code itself: `Setup.build_model`, `Setup.pipeline` (resize with `resize_uint8`
and normalisation by `BatchPipeline.prepare`) and `engine.evaluate.predict` (the model's AMP
setting, as `cnnvit evaluate` uses it).

The preprocessing facts (input size, mean/std, channels) come from config.yaml's `resolved`
section, so the training data need not be on the predicting machine.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from cnnvit.checkpoint import load_checkpoint
from cnnvit.data.pipeline import resize_uint8
from cnnvit.data.types import Dataset, DatasetInfo, Split
from cnnvit.deploy.images import by_size
from cnnvit.deploy.sidecar import ModelFacts, facts_from_dir
from cnnvit.engine.evaluate import predict
from cnnvit.engine.runtime import amp_dtype, resolve_device
from cnnvit.engine.setup import Setup
from cnnvit.explain import explain
from cnnvit.explain.methods import ATTENTION_METHODS
from cnnvit.rundir import ModelDir


def recorded_setup(model_dir: ModelDir, device: str | None = None) -> tuple[Setup, ModelFacts]:
    """The `Setup` of a trained model from its recorded facts, with no dataset loaded."""
    facts = facts_from_dir(model_dir)
    cfg, resolved = model_dir.read_config()
    if device is not None:
        cfg = cfg.replace(device=device)
    info = DatasetInfo(spec=cfg.dataset, name=str(resolved.get("dataset_name", cfg.dataset)),
                       task=str(resolved.get("task", "multi-class")),
                       class_names=facts.class_names, channels=facts.channels,
                       image_size=int(resolved.get("native_size") or facts.image_size),
                       source="recorded")
    setup = Setup(cfg=cfg, dataset=Dataset(info, {}), device=resolve_device(cfg.device),
                  image_size=facts.image_size, mean=facts.mean, std=facts.std)
    return setup, facts


def decode_workers(device: torch.device) -> int:
    """Decoding threads for `deploy.images.batches`: the cores torch's threads leave free on
    the CPU (0: decode between batches: a decoding thread would only slow the model's), one
    a core (at most 8) when the model runs on an accelerator."""
    cores = os.cpu_count() or 1
    if device.type != "cpu":
        return min(8, cores)
    return min(8, max(0, cores - torch.get_num_threads()))


class TorchModel:
    """A model directory's best checkpoint, ready to predict uint8 images of any size."""

    def __init__(self, model_dir: ModelDir, device: str | None = None,
                 batch_size: int | None = None) -> None:
        self.setup, self.facts = recorded_setup(model_dir, device)
        ckpt = load_checkpoint(model_dir.checkpoint("best"), map_location="cpu")
        self.model = self.setup.build_model(pretrained=False, weights=None)
        self.model.load_state_dict(ckpt["model"])
        self.model.eval()
        self.dtype = amp_dtype(self.setup.cfg.amp, self.setup.device)
        self.batch_size = batch_size or self.setup.cfg.eval_batch_size
        self.decode_workers = decode_workers(self.setup.device)

    def _pipeline(self, images: list[np.ndarray]):
        """The training pipeline (no augmentation) over images of one size."""
        split = Split(np.stack(images), np.zeros(len(images), dtype=np.int64))
        return self.setup.pipeline(split)

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (float64, N×K) of uint8 H×W×C images in the model's channels."""
        probs = np.zeros((len(images), self.facts.num_classes))
        for idx in by_size(images):
            pipe = self._pipeline([images[i] for i in idx])
            probs[idx] = predict(self.model, pipe, self.batch_size, self.dtype)[0]
        return probs

    def explain(self, images: list[np.ndarray], targets: np.ndarray, method: str = "auto",
                layer: str | nn.Module | None = None
                ) -> tuple[list[np.ndarray], np.ndarray, str]:
        """(each image as the model saw it, uint8 S×S×C; its map of `targets`, S×S in [0, 1];
        the method used): `method` as `explain` takes it ("auto": the explain stage's default
        for the model's family); the Grad-CAM methods weigh `layer` (None: their default)."""
        size, mode = self.facts.image_size, self.setup.cfg.resize_mode
        kwargs = {"layer": layer} if layer is not None and method not in ATTENTION_METHODS \
            else {}
        shown: list[np.ndarray] = [np.empty(0, np.uint8)] * len(images)
        maps = np.zeros((len(images), size, size), dtype=np.float32)
        used = ""
        for idx in by_size(images):
            group = [images[i] for i in idx]
            x = next(self._pipeline(group).batches(len(group)))[0]
            found, used = explain(self.model, x, method, targets=targets[idx], **kwargs)
            maps[idx] = found.numpy()
            seen = resize_uint8(torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2), size, mode)
            for j, i in enumerate(idx):
                shown[i] = seen[j].permute(1, 2, 0).numpy()
        return shown, maps, used

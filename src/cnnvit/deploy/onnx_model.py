"""An exported .onnx model and its sidecar, predicting with ONNX Runtime, numpy and PIL only:
neither torch nor timm is imported on this path (the preprocessing is `deploy.resize`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnnvit.deploy.images import by_size
from cnnvit.deploy.resize import normalise, resize
from cnnvit.deploy.sidecar import read_sidecar
from cnnvit.errors import CnnvitError

DEFAULT_BATCH = 64


def _runtime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise CnnvitError("cnnvit predict with an .onnx model needs onnxruntime: pip install "
                          "'cnnvit[export]'") from None
    return onnxruntime


class OnnxModel:
    """An exported model: `probabilities(images)` as `TorchModel`'s, from ONNX Runtime."""

    def __init__(self, path: Path, batch_size: int | None = None) -> None:
        self.facts, self.sidecar = read_sidecar(path)
        ort = _runtime()
        try:
            self.session = ort.InferenceSession(str(path),
                                                providers=ort.get_available_providers())
        except Exception as e:  # onnxruntime's own exception types: a damaged file
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CnnvitError(f"{path}: ONNX Runtime cannot load it ({reason}); export the "
                              "model again with cnnvit export") from None
        inp = self.session.get_inputs()[0]
        f = self.facts
        if list(inp.shape[1:]) != [f.channels, f.image_size, f.image_size]:
            raise CnnvitError(f"{path} takes inputs of shape {inp.shape} but its sidecar says "
                              f"{f.channels}×{f.image_size}×{f.image_size}: the files do not "
                              "belong together; export the model again")
        self.input = inp.name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = outputs.index("probabilities") if "probabilities" in outputs else None
        self.fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.batch_size = self.fixed or batch_size or DEFAULT_BATCH

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of normalised N×C×S×S images, in batches the model accepts."""
        outs = []
        for start in range(0, len(x), self.batch_size):
            result = self.session.run(None, {self.input: x[start:start + self.batch_size]})
            outs.append(result[self.output] if self.output is not None
                        else _softmax(result[0]))
        probs = np.concatenate(outs).astype(np.float64)
        return probs / probs.sum(axis=1, keepdims=True)

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (float64, N×K) of uint8 H×W×C images in the model's channels."""
        f = self.facts
        probs = np.zeros((len(images), f.num_classes))
        for idx in by_size(images):
            batch = resize(np.stack([images[i] for i in idx]), f.image_size, f.resize_mode)
            probs[idx] = self._run(normalise(batch, f.mean, f.std))
        return probs


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)

"""`cnnvit export MODEL --format onnx|torchscript`: the trained model as one file, a sidecar
JSON beside it (`sidecar.sidecar_path`), and a parity check on the model's val split.

The exported graph takes float32 N×C×S×S images, normalised as in training (the sidecar says
how), and returns `logits` and `probabilities` (softmax). ONNX is written by torch's
`torch.export`-based exporter (`dynamo=True`, the default since torch 2.9; the TorchScript-based
one is deprecated), checked with `onnx.checker` and run with ONNX Runtime; TorchScript is
`torch.jit.trace`d, saved and read back with `torch.jit.load`. Both are compared with the
PyTorch model (float32, CPU) on every val image: the largest absolute probability difference
must be ≤ 1e-4 and every predicted class the same, else nothing is written. Files are written
in a temporary folder beside the destination and renamed into place once the check passed.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnvit import __version__
from cnnvit.data.validate import safe_name
from cnnvit.deploy.sidecar import ModelFacts, facts_from_dir, sidecar_path
from cnnvit.deploy.source import resolve
from cnnvit.engine.evaluate import load_model
from cnnvit.engine.setup import Setup
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_json, make_dir, read_json
from cnnvit.rundir import ModelDir

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
MAX_DIFF = 1e-4  # largest absolute difference of probabilities the parity check accepts
PARITY_BATCH = 64
Runner = Callable[[np.ndarray], np.ndarray]  # float32 N×C×S×S → float64 N×K probabilities


@dataclass
class Written:
    """An exported file read back: its runner, and what the sidecar records about it."""

    run: Runner
    info: dict[str, Any]


class WithProbabilities(torch.nn.Module):
    """The model, returning its logits and their softmax (as `engine.evaluate.predict`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images)
        return logits, torch.softmax(logits.float(), dim=1)


@dataclass
class Exported:
    """What `export_model` wrote, and its parity figures."""

    file: Path
    sidecar: Path
    parity: dict[str, Any]


def default_path(model_dir: ModelDir, facts: ModelFacts, fmt: str) -> Path:
    """`<model dir>/export/<model name><suffix>`."""
    return model_dir.path / "export" / f"{safe_name(facts.model)}{SUFFIX[fmt]}"


def require_onnx() -> None:
    """A one-line error unless onnx, onnxscript and onnxruntime can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise CnnvitError("cnnvit export --format onnx needs onnx, onnxscript and onnxruntime: "
                          "pip install 'cnnvit[export]'") from None


def export_model(model: str, fmt: str, *, name: str | None = None,
                 out: str | Path | None = None, dynamic_batch: bool = False) -> Exported:
    """Export a trained model (see the module docstring); returns the files and parity."""
    if fmt not in FORMATS:
        raise CnnvitError(f"--format {fmt!r}: choose onnx or torchscript")
    if fmt == "onnx":
        require_onnx()
    model_dir = resolve(model, name, allow_onnx=False).model_dir
    facts = facts_from_dir(model_dir)
    dest = Path(out) if out is not None else default_path(model_dir, facts, fmt)
    made = not dest.parent.exists()
    make_dir(dest.parent)
    setup, net, ckpt = load_model(model_dir.path, device="cpu")
    wrapped = WithProbabilities(net.to(memory_format=torch.contiguous_format)).eval()
    try:
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
            staged = Path(tmp) / dest.name
            written = _write(fmt, wrapped, facts, staged, dynamic_batch)
            parity = check_parity(wrapped, written.run, setup, fmt)
            info = sidecar(fmt, facts, model_dir, staged.name, dynamic_batch, parity,
                           int(ckpt.get("epoch", 0))) | written.info
            atomic_write_json(sidecar_path(staged), info)
            os.replace(staged, dest)
            os.replace(sidecar_path(staged), sidecar_path(dest))
    except BaseException:
        if made:
            shutil.rmtree(dest.parent, ignore_errors=True)
        raise
    return Exported(dest, sidecar_path(dest), parity)


def _write(fmt: str, wrapped: torch.nn.Module, facts: ModelFacts, path: Path,
           dynamic_batch: bool) -> Written:
    """Write the model to `path` and read it back."""
    example = torch.zeros(2 if dynamic_batch else 1, facts.channels, facts.image_size,
                          facts.image_size)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if fmt == "onnx":
            return _write_onnx(wrapped, example, path, dynamic_batch)
        return _write_torchscript(wrapped, example, path, dynamic_batch)


def _write_onnx(wrapped: torch.nn.Module, example: torch.Tensor, path: Path,
                dynamic_batch: bool) -> Written:
    """torch's ONNX exporter, onnx.checker, then an ONNX Runtime session of the file."""
    import onnx
    import onnxruntime

    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["images"],
                                    output_names=["logits", "probabilities"],
                                    dynamic_shapes=shapes, verbose=False)
    except Exception as e:
        raise _failed("onnx", e) from e
    assert program is not None
    program.save(str(path))
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise _failed("onnx", e) from e
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    del proto
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fixed = None if dynamic_batch else 1

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(["probabilities"], {"images": part})[0]
                               for part in _parts(x, fixed)]).astype(np.float64)
    return Written(run, {"opset": opset, "onnx_version": onnx.__version__,
                         "onnxruntime_version": onnxruntime.__version__})


def _write_torchscript(wrapped: torch.nn.Module, example: torch.Tensor, path: Path,
                       dynamic_batch: bool) -> Written:
    """torch.jit.trace and save, then the file read back with torch.jit.load."""
    try:
        traced = torch.jit.trace(wrapped, example, check_trace=False)
    except Exception as e:
        raise _failed("torchscript", e) from e
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path), map_location="cpu").eval()
    fixed = None if dynamic_batch else 1

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([loaded(torch.from_numpy(part))[1].numpy()
                                   for part in _parts(x, fixed)]).astype(np.float64)
    return Written(run, {})


def _parts(x: np.ndarray, fixed: int | None) -> list[np.ndarray]:
    step = fixed or len(x)
    return [np.ascontiguousarray(x[i:i + step]) for i in range(0, len(x), step)]


def _failed(fmt: str, e: BaseException) -> CnnvitError:
    """The one-line error of an export that torch or the ONNX checker refused."""
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return CnnvitError(f"the {fmt} export failed ({type(e).__name__}: {reason[:300]}); nothing "
                       "was written; try the other --format")


def check_parity(wrapped: torch.nn.Module, run: Runner, setup: Setup, fmt: str
                 ) -> dict[str, Any]:
    """Run the PyTorch model (float32) and the exported one on the val split; the figures,
    or a CnnvitError when they differ more than MAX_DIFF or predict another class."""
    diff, same, n = 0.0, 0, 0
    with torch.no_grad():
        for x, _ in setup.pipeline("val").batches(PARITY_BATCH):
            ref = wrapped(x)[1].double().numpy()
            got = run(x.contiguous().numpy())
            diff = max(diff, float(np.abs(got - ref).max()))
            same += int((got.argmax(1) == ref.argmax(1)).sum())
            n += len(x)
    share = same / max(n, 1)
    parity = {"split": "val", "images": n, "max_abs_prob_diff": diff,
              "identical_predictions": share, "limit": MAX_DIFF,
              "reference": "the PyTorch model, float32, CPU"}
    if n == 0 or diff > MAX_DIFF or same < n:
        raise CnnvitError(f"export parity failed: the {fmt} model's probabilities differ from "
                          f"PyTorch's by up to {diff:.2e} (limit {MAX_DIFF:g}) and {share:.2%} "
                          f"of the {n} val predictions agree (need 100%); nothing was written")
    return parity


def sidecar(fmt: str, facts: ModelFacts, model_dir: ModelDir, file: str, dynamic_batch: bool,
            parity: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The sidecar JSON: the preprocessing facts, the run's test metrics, versions, parity."""
    metrics = read_json(model_dir.metrics("test")) if model_dir.metrics("test").is_file() else {}
    cfg, _ = model_dir.read_config()
    return {**facts.to_dict(), "format": fmt, "file": file,
            "input": {"name": "images", "dtype": "float32", "layout": "NCHW",
                      "shape": [None if dynamic_batch else 1, facts.channels,
                                facts.image_size, facts.image_size],
                      "preprocessing": "decode to the model's channels, resize to image_size "
                                       "with resize_mode, then (x / 255 - mean) / std"},
            "outputs": ["logits", "probabilities"], "dynamic_batch": dynamic_batch,
            "opset": None, "dataset": cfg.dataset, "source_model_dir": str(model_dir.path),
            "checkpoint": "best", "epoch": epoch,
            "test_metrics": {k: v for k, v in metrics.items()
                             if isinstance(v, int | float | str | type(None))},
            "cnnvit_version": __version__, "torch_version": torch.__version__,
            "parity": parity}

"""`cnnvit predict MODEL IMAGES...`: class probabilities of new images, one CSV row each.

Columns: `path`, then for rank r = 1..k `class_r` (class index), `pred_r` (class name) and
`prob_r` (its probability), best first; with `--explain DIR` also `overlay` (the PNG of the
image, as the model saw it, and the map of its top class). Images are decoded by
`deploy.images` (in as many threads as the backend's `decode_workers`) and go through the
model's training preprocessing: with a model directory, the training pipeline itself
(`deploy.torch_model`); with an exported .onnx file, its numpy port (`deploy.onnx_model`, no
torch). Unreadable files are skipped and returned (the command line lists them in one
warning), or refused with `strict`.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from cnnvit.data.validate import safe_name
from cnnvit.deploy.images import Item, Loaded, batches, collect
from cnnvit.deploy.sidecar import ModelFacts
from cnnvit.deploy.source import Source, resolve
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_text, check_creatable, make_dir


class Backend(Protocol):
    facts: ModelFacts
    batch_size: int

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray: ...


@dataclass
class Predicted:
    """What `predict_images` did: the CSV, how many rows, and what it skipped."""

    out: Path
    rows: int
    unreadable: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    overlays: Path | None = None


def load_backend(source: Source, device: str | None = None,
                 batch_size: int | None = None) -> Backend:
    """The model behind `source`: ONNX Runtime for an .onnx file, else PyTorch."""
    if source.onnx:
        from cnnvit.deploy.onnx_model import OnnxModel

        return OnnxModel(source.path, batch_size)
    from cnnvit.deploy.torch_model import TorchModel

    return TorchModel(source.model_dir, device, batch_size)


def check_top_k(top_k: int, facts: ModelFacts) -> None:
    """A one-line error unless 1 ≤ top_k ≤ the model's class count."""
    if not 1 <= top_k <= facts.num_classes:
        raise CnnvitError(f"--top-k {top_k}: the model has {facts.num_classes} classes; use "
                          f"--top-k between 1 and {facts.num_classes}")


def predict_images(model: str, images: list[str], *, name: str | None = None,
                   out: str | Path = "predictions.csv", top_k: int = 3,
                   explain_dir: str | Path | None = None, batch_size: int | None = None,
                   strict: bool = False, device: str | None = None,
                   progress: bool = True) -> Predicted:
    """Predict every image of `images` with `model` (see the module docstring)."""
    if batch_size is not None and batch_size < 1:
        raise CnnvitError(f"--batch-size must be at least 1; got {batch_size}")
    source = resolve(model, name)
    if source.onnx and explain_dir is not None:
        raise CnnvitError("--explain needs the model directory: an exported .onnx model has "
                          "no gradients to explain with; pass the model directory instead")
    inputs = collect(images)
    out = Path(out)
    check_creatable(out.parent)
    backend = load_backend(source, device, batch_size)
    check_top_k(top_k, backend.facts)
    overlays = _Overlays(Path(explain_dir)) if explain_dir is not None else None
    result = Predicted(out, 0, not_images=inputs.not_images,
                       overlays=overlays.folder if overlays else None)
    rows = predict_rows(backend, inputs.items, top_k, strict=strict, overlays=overlays,
                        progress=progress, unreadable=result.unreadable)
    if not rows:
        raise CnnvitError(f"none of the {len(inputs.items)} images can be read (e.g. "
                          f"{result.unreadable[0]}); check the files are images")
    _write_csv(out, rows, top_k, overlays is not None)
    result.rows = len(rows)
    return result


def predict_rows(backend: Backend, items: list[Item], top_k: int, *, strict: bool = False,
                 overlays: _Overlays | None = None, progress: bool = False,
                 unreadable: list[str] | None = None) -> list[list[Any]]:
    """The CSV rows of `items`, decoded batch by batch by the backend's `decode_workers` if it
    has them (see `deploy.images.batches`); unreadable items are appended to `unreadable` (or
    refused with `strict`)."""
    unreadable = [] if unreadable is None else unreadable
    rows: list[list[Any]] = []
    bar = tqdm(total=len(items), desc="predict", unit="image", leave=False,
               disable=not progress or not sys.stderr.isatty())
    try:
        for chunk in batches(items, backend.batch_size, backend.facts.channels,
                             getattr(backend, "decode_workers", None)):
            good = _readable(chunk, strict, unreadable)
            if good:
                probs = backend.probabilities([g.pixels for g in good if g.pixels is not None])
                new = _rows(good, probs, backend.facts.class_names, top_k)
                if overlays is not None:
                    overlays.write(backend, good, probs, new, len(rows))
                rows += new
            bar.update(len(chunk))
    finally:
        bar.close()
        if overlays is not None:
            overlays.close()
    return rows


def _readable(chunk: list[Loaded], strict: bool, unreadable: list[str]) -> list[Loaded]:
    """The decoded images of a batch; unreadable ones are added to `unreadable` (or, with
    `strict`, refused)."""
    for bad in (c for c in chunk if c.pixels is None):
        if strict:
            raise CnnvitError(f"{bad.item.name} cannot be read as an image ({bad.reason}); "
                              "remove or replace it, or drop --strict to skip unreadable files")
        unreadable.append(f"{bad.item.name} ({bad.reason})")
    return [c for c in chunk if c.pixels is not None]


def _rows(good: list[Loaded], probs: np.ndarray, names: list[str], top_k: int
          ) -> list[list[Any]]:
    """One CSV row per image: path, then (class, name, probability) for the top k (built as
    one object array: Python ints, strings and floats)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    rows = np.empty((len(good), 1 + 3 * top_k), dtype=object)
    rows[:, 0] = [g.item.name for g in good]
    rows[:, 1::3] = order
    rows[:, 2::3] = np.asarray(names, dtype=object)[order]
    rows[:, 3::3] = np.take_along_axis(probs, order, axis=1)
    return rows.tolist()


def _write_csv(out: Path, rows: list[list[Any]], top_k: int, overlay: bool) -> None:
    """The predictions CSV, written atomically (see the module docstring for its columns)."""
    header = ["path"] + [f"{c}_{r}" for r in range(1, top_k + 1)
                         for c in ("class", "pred", "prob")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header + (["overlay"] if overlay else []))
    writer.writerows(rows)
    atomic_write_text(out, buffer.getvalue())


class _Overlays:
    """`--explain DIR`: one overlay PNG per image, `<row>_<name>.png`."""

    def __init__(self, folder: Path) -> None:
        self.folder = make_dir(folder)
        self.writer: Any = None

    def write(self, backend: Any, good: list[Loaded], probs: np.ndarray,
              rows: list[list[Any]], first: int) -> None:
        """Explain a batch's top classes, write its overlays and add each file to its row."""
        from cnnvit.explain.figures import OverlayWriter

        targets = probs.argmax(axis=1)
        shown, maps, method = backend.explain([g.pixels for g in good], targets)
        if self.writer is None:
            self.writer = OverlayWriter(method, backend.facts.image_size)
        names = backend.facts.class_names
        for j, (g, row) in enumerate(zip(good, rows, strict=True)):
            file = f"{first + j:05d}_{safe_name(Path(g.item.name).name)}"
            file = file if file.lower().endswith(".png") else f"{file}.png"
            self.writer.write(self.folder / file, shown[j], maps[j],
                              f"{backend.facts.model} · {method} · {g.item.name}",
                              f"pred: {names[int(targets[j])]} · probability "
                              f"{probs[j, targets[j]]:.2f}")
            row.append(str(self.folder / file))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

"""What a trained model needs from its inputs, read from a model directory or from the sidecar
JSON that `cnnvit export` writes next to the exported file.

The sidecar of `FILE` is `FILE.json` (`resnet18-small.onnx` → `resnet18-small.onnx.json`):
the full name is kept, so the ONNX and TorchScript exports of one model, side by side, each
have their own. No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cnnvit.config import CHOICES
from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.rundir import ModelDir

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class ModelFacts:
    """A trained model's classes and input preprocessing (its config.yaml `resolved` facts)."""

    model: str
    family: str
    class_names: list[str]
    image_size: int
    channels: int
    mean: list[float]
    std: list[float]
    resize_mode: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sidecar_path(file: str | Path) -> Path:
    """The sidecar JSON of an exported model file: `FILE.json`."""
    file = Path(file)
    return file.with_name(file.name + SIDECAR_SUFFIX)


def facts_from_dir(model_dir: ModelDir) -> ModelFacts:
    """The facts a model directory's config.yaml records (a clear error when they are not
    there: a model directory from before they were recorded, or an unfinished one)."""
    cfg, resolved = model_dir.read_config()
    need = ("class_names", "image_size", "in_chans", "mean", "std")
    missing = [k for k in need if k not in resolved]
    if missing:
        raise CnnvitError(f"{model_dir.config} records no {', '.join(missing)} under "
                          "resolved:; the model has not finished setting up: train it again "
                          "(cnnvit train --out <model dir>)")
    return ModelFacts(model=cfg.model, family=str(resolved.get("family", "")),
                      class_names=[str(n) for n in resolved["class_names"]],
                      image_size=int(resolved["image_size"]), channels=int(resolved["in_chans"]),
                      mean=[float(v) for v in resolved["mean"]],
                      std=[float(v) for v in resolved["std"]], resize_mode=cfg.resize_mode)


def read_sidecar(file: str | Path) -> tuple[ModelFacts, dict[str, Any]]:
    """(facts, the whole sidecar) for an exported model file."""
    path = sidecar_path(file)
    if not path.is_file():
        raise CnnvitError(f"{file} has no sidecar {path}: cnnvit export writes it next to the "
                          "model; copy both files together (or export the model again)")
    data = read_json(path)
    try:
        facts = ModelFacts(**{f.name: data[f.name] for f in fields(ModelFacts)})
        ok = (facts.image_size > 0 and facts.channels in (1, 3) and facts.num_classes > 0
              and len(facts.mean) == len(facts.std) == facts.channels
              and facts.resize_mode in CHOICES["resize_mode"])
    except (KeyError, TypeError) as e:
        raise CnnvitError(f"{path}: not a cnnvit export sidecar (missing or malformed {e}); "
                          "export the model again with cnnvit export") from None
    if not ok:
        raise CnnvitError(f"{path}: inconsistent input facts (image_size, channels, mean, std, "
                          "resize_mode); export the model again with cnnvit export")
    return facts, data

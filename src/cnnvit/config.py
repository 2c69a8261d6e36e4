"""Typed run configuration: defaults < YAML file < command-line flags < `--set key=value`.

One flat dataclass, as in nanoGPT and timm's train.py: every key is visible in one place,
an unknown key or a value of the wrong type is an error that lists the valid keys, and the
resolved config written to a model directory is enough to reproduce the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnvit.errors import ConfigError
from cnnvit.io import atomic_write_text

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("none", "cosine", "step", "multistep"),
    "normalize": ("auto", "dataset", "imagenet", "half"),
    "resize_mode": ("bilinear", "bicubic", "nearest", "pad"),
    "autoaugment": ("none", "cifar10", "imagenet", "svhn"),
    "amp": ("auto", "bf16", "fp16", "off"),
    "selection_metric": ("f1_macro", "auc_macro", "accuracy", "loss"),
    "nan_policy": ("stop", "skip-batch"),
}


@dataclass
class Config:
    """Everything one training run needs. See `cnnvit train --help` for the meaning of each key."""

    # data
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    data_size: int | None = None      # MedMNIST native file (28|64|128|224); None: from image_size
    image_size: int | None = None     # model input side; None = the dataset's native size
    resize_mode: str = "bilinear"
    normalize: str = "auto"           # auto: ImageNet stats for pretrained weights, else dataset's
    strict_data: bool = False         # refuse messy data (mixed sizes/modes, stray files) instead
    # model
    model: str = "resnet18-small"
    pretrained: bool = False
    weights: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # optimisation
    epochs: int = 20                  # ViTs default to FAMILY_DEFAULTS["vit"] (see below)
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.05
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    step_size: int = 30
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    # augmentation (all on whole batches, on the training device)
    hflip: bool = False
    vflip: bool = False
    crop_padding: int = 0
    autoaugment: str = "none"
    randaugment_n: int = 0
    randaugment_m: int = 9
    random_erasing: float = 0.0
    # runtime
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int = 0                  # torch CPU threads; 0 = torch's default
    seed: int = 42
    deterministic: bool = False
    selection_metric: str = "f1_macro"
    patience: int = 0                 # stop after this many epochs without improvement; 0 = off
    max_minutes: float = 0.0          # time budget for training; 0 = none
    nan_policy: str = "stop"          # a non-finite loss: stop, or skip-batch
    out: str = "runs/model"
    # learning curves: train on a stratified, nested, seeded share of the training split
    train_fraction: float = 1.0
    subset_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Config:
        return apply_overrides(self, changes)


def keys() -> list[str]:
    """All valid configuration keys, in declaration order."""
    return [f.name for f in dataclasses.fields(Config)]


_HINTS = typing.get_type_hints(Config)


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, keys(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}. Valid keys: {', '.join(keys())}")


def _coerce(key: str, value: Any) -> Any:
    """Convert `value` to the declared type of `key` or raise a ConfigError."""
    hint = _HINTS[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args and (
        typing.get_origin(hint) in (typing.Union, types.UnionType)) else hint
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")
                         and optional):
        if optional:
            return None
        raise ConfigError(f"config key '{key}' cannot be empty")
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false",
                                                            "no", "0", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value, 10)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple):
                raise ValueError
            return [float(v) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = _parse_mapping(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError, yaml.YAMLError):
        pass
    else:  # pragma: no cover - every declared type is handled above
        raise ConfigError(f"config key '{key}' has an unsupported type {base}")
    raise ConfigError(f"config key '{key}' expects {_type_name(hint)}, got {value!r}")


def _parse_mapping(text: str) -> Any:
    """`{a: 1, b: x}` (YAML) or `a=1,b=x` → a dict with YAML-typed values."""
    text = text.strip()
    if not text:
        return {}
    if "=" in text and not text.startswith("{"):
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(text)
        return {k.strip(): yaml.safe_load(v.strip()) for k, v in pairs}
    return yaml.safe_load(text)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _check_choices(cfg: Config) -> None:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(allowed)}; "
                              f"got '{getattr(cfg, key)}'")
    positive = ("epochs", "batch_size", "eval_batch_size")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key '{key}' must be positive; got {getattr(cfg, key)}")
    if cfg.lr <= 0:
        raise ConfigError(f"config key 'lr' must be positive; got {cfg.lr}")
    if cfg.image_size is not None and cfg.image_size < 4:
        raise ConfigError(f"config key 'image_size' must be at least 4; got {cfg.image_size}")
    if not 0 < cfg.train_fraction <= 1:
        raise ConfigError(f"config key 'train_fraction' is a share of the training split in "
                          f"(0, 1]; got {cfg.train_fraction}")
    if not 0 <= cfg.random_erasing <= 1:
        raise ConfigError(f"config key 'random_erasing' is a probability in [0, 1]; "
                          f"got {cfg.random_erasing}")


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of `cfg` with `overrides` applied, type-checked and validated."""
    values = cfg.to_dict()
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in values:
            raise _unknown(key)
        values[key] = _coerce(key, value)
    new = Config(**values)
    _check_choices(new)
    return new


def parse_set(items: list[str] | None) -> dict[str, str]:
    """Parse `--set key=value` items."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value")
    return data


# A ViT trained from scratch needs many more optimizer steps than a CNN to converge on a small
# dataset (the CIFAR-10 ResNet-18 vs ViT study trains its ViT 40 epochs with warm-up; see
# docs/recipes.md): its default recipe takes smaller batches and more epochs. Keys set by the
# user (file, flag or --set) always win.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {"vit": {"batch_size": 32, "epochs": 40}}


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
         family: Callable[[str], str | None] | None = None) -> Config:
    """Defaults, then the YAML file at `path`, then `overrides`. With `family` (model name →
    "cnn" | "vit" | None), that family's recipe fills the keys neither file nor overrides set."""
    given = read_yaml(path) if path is not None else {}
    given = {**given, **{k.replace("-", "_"): v for k, v in (overrides or {}).items()}}
    cfg = apply_overrides(Config(), given)
    recipe = FAMILY_DEFAULTS.get(family(cfg.model) or "", {}) if family else {}
    unset = {k: v for k, v in recipe.items() if k not in given}
    return apply_overrides(cfg, unset) if unset else cfg


def write(cfg: Config, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config (plus `extra` derived facts under `resolved:`) as YAML."""
    data: dict[str, Any] = cfg.to_dict()
    if extra:
        data["resolved"] = extra
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))

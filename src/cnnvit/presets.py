"""Study presets: YAML files naming a dataset, the models to compare and their recipes.

A preset file (see `configs/*.yaml`, copied into the package) has these keys:

    description: one line
    dataset: digits              # any dataset spec
    seeds: [42]
    common: {...}                # config keys shared by every model
    models:                      # model directory name -> config keys (+ optional `extend`)
      resnet18-small: {model: resnet18-small}
      vit-scratch: {model: vit-small-input, epochs: 40, extend: {epochs: 60, lr: 1.0e-4}}
    reduced:                     # what --reduced changes: a shorter schedule, smaller inputs
      common: {...}
      models: {name: {...}}
    train_fractions: [0.1, 0.25, 0.5]   # optional: a learning curve (`--train-fractions`)

`extend` is a second training phase run as a resume of the finished first phase (the 40 → 60
epoch ViT extension of the CIFAR-10 ResNet-18 vs ViT study). The shipped presets follow
published recipes; docs/recipes.md names each source and what every preset takes from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnvit import config
from cnnvit.data.validate import safe_name
from cnnvit.errors import ConfigError

PRESET_KEYS = {"description", "dataset", "seeds", "common", "models", "reduced",
               "train_fractions"}


@dataclass
class ModelPlan:
    """One model of a study: its directory name, config overrides and optional extension."""

    name: str
    overrides: dict[str, Any]
    extend: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preset:
    name: str
    description: str
    dataset: str
    seeds: list[int]
    models: list[ModelPlan]
    train_fractions: list[float] = field(default_factory=list)  # the learning curve's shares


def available() -> list[str]:
    """Names of the presets shipped with cnnvit (`sweep-*.yaml` there are sweep grids)."""
    files = resources.files("cnnvit").joinpath("configs")
    return sorted(p.name[:-5] for p in files.iterdir()
                  if p.name.endswith(".yaml") and not p.name.startswith("sweep-"))


def description(name_or_path: str) -> str:
    """A preset's one-line description, read without loading the study (no torch)."""
    return str(_read(name_or_path)[1].get("description", ""))


def _read(name_or_path: str) -> tuple[str, dict[str, Any]]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path.stem, config.read_yaml(path)
    if name_or_path not in available():
        raise ConfigError(f"unknown preset '{name_or_path}': choose one of "
                          f"{', '.join(available())} or pass a YAML file path")
    text = resources.files("cnnvit").joinpath("configs").joinpath(f"{name_or_path}.yaml"
                                                                  ).read_text()
    import yaml

    return name_or_path, yaml.safe_load(text)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"preset {where} must be a mapping of config keys (key: value), "
                          f"got {type(value).__name__}")
    return dict(value)


def load(name_or_path: str, *, reduced: bool = False, dataset: str | None = None,
         models: list[str] | None = None, seeds: list[int] | None = None,
         overrides: dict[str, Any] | None = None) -> Preset:
    """Resolve a preset with the command line's choices applied on top.

    `models` selects preset entries by name; a name that is not an entry adds that model
    (any cnnvit/timm model name) with the preset's common settings.
    """
    name, raw = _read(name_or_path)
    unknown = sorted(set(raw) - PRESET_KEYS)
    if unknown:
        raise ConfigError(f"preset {name}: unknown key(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(PRESET_KEYS))}")
    entries = _mapping(raw.get("models"), f"{name}: models")
    if not entries:
        raise ConfigError(f"preset {name} lists no models")
    red = _mapping(raw.get("reduced"), f"{name}: reduced") if reduced else {}
    common = {**_mapping(raw.get("common"), f"{name}: common"),
              **_mapping(red.get("common"), f"{name}: reduced.common")}
    red_models = _mapping(red.get("models"), f"{name}: reduced.models")
    chosen = models or list(entries)
    global_over, per_model = split_overrides(overrides or {}, chosen)
    plans = []
    for key in chosen:
        entry = _mapping(entries.get(key, {"model": key}), f"{name}: models.{key}")
        entry.update(_mapping(red_models.get(key), f"{name}: reduced.models.{key}"))
        extend = _mapping(entry.pop("extend", None), f"{name}: models.{key}.extend")
        merged = {"dataset": raw.get("dataset", "digits"), **common, **entry,
                  **global_over, **per_model.get(key, {})}
        if dataset:  # --dataset replaces the preset's, whatever its entries say
            merged["dataset"] = dataset
        merged.setdefault("model", key)
        config.load(None, merged)  # validate now: a typo fails before any training starts
        # the name becomes a directory: a model name such as tv:resnet50 is made file-safe
        plans.append(ModelPlan(name=safe_name(key), overrides=merged, extend=extend))
    from cnnvit.engine.setup import load_config  # torch: only once the light checks pass

    for plan in plans:  # an unknown model, device or AMP mode fails before anything is written
        load_config(None, plan.overrides)
    seed_list = seeds or [int(s) for s in raw.get("seeds", [42])]
    return Preset(name=name, description=str(raw.get("description", "")),
                  dataset=dataset or str(raw.get("dataset", "digits")), seeds=seed_list,
                  models=plans, train_fractions=_fractions(name, raw.get("train_fractions")))


def _fractions(name: str, value: Any) -> list[float]:
    """A preset's `train_fractions`: shares of the training split in (0, 1]."""
    if value is None:
        return []
    try:
        shares = [float(v) for v in value] if isinstance(value, list) else []
    except (TypeError, ValueError):
        shares = []
    if not shares or not all(0 < v <= 1 for v in shares):
        raise ConfigError(f"preset {name}: train_fractions must be a list of shares of the "
                          f"training split in (0, 1], e.g. [0.1, 0.25, 0.5]; got {value!r}")
    return shares


def split_overrides(overrides: dict[str, Any], names: list[str]
                    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`key` applies to every model, `<model name>.key` to that model only."""
    common: dict[str, Any] = {}
    per_model: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        name, dot, sub = key.rpartition(".")
        if not dot:
            common[key] = value
        elif name in names:
            per_model.setdefault(name, {})[sub] = value
        else:
            raise ConfigError(f"--set {key}: '{name}' is not a model of this study "
                              f"({', '.join(names)})")
    return common, per_model

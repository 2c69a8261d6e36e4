"""Model names: the presets, any timm name, `tv:<torchvision name>`; build and classify."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.models.inputs import check_patch_grid, warn_below_minimum
from cnnvit.models.small import resnet18_small, vit_small_input
from cnnvit.models.structure import is_vit
from cnnvit.models.timm_models import build_timm
from cnnvit.models.tv import build_torchvision, list_names
from cnnvit.models.weights import load_weights, set_info

PRESETS: dict[str, str] = {
    "resnet18": "torchvision ResNet-18 (7×7 stride-2 stem + max-pool, 11.2 M params); "
                "pretrained: ImageNet-1k (IMAGENET1K_V1)",
    "resnet18-small": "CIFAR/MedMNIST-style ResNet-18 (3×3 stride-1 stem, no max-pool, "
                      "11.17 M params), from scratch",
    "vit-small-input": "compact ViT for small images (patch 2/4/8/16 px by input size, width 64, "
                       "depth 4, 4 heads, ≈0.2 M params), from scratch",
    "vit_base_patch16_224": "timm ViT-B/16 (86 M params); pretrained: ImageNet-21k → 1k",
    "vit_small_patch16_224": "timm ViT-S/16 (22 M params); pretrained: ImageNet-21k → 1k",
    "efficientnet_b0": "timm EfficientNet-B0 (5.3 M params); pretrained: ImageNet-1k",
    "swin_tiny_patch4_window7_224": "timm Swin-T, window 7 (28 M params); pretrained: ImageNet-1k",
}

_SMALL = {"resnet18-small": "cnn", "vit-small-input": "vit"}


def check_name(name: str) -> None:
    """A CnnvitError (naming the closest known models) unless `name` is a model cnnvit builds."""
    _resolve(name)


def _resolve(name: str) -> tuple[str, str]:
    """(kind, base name) with kind "small", "tv" or "timm"; unknown names raise CnnvitError."""
    name = name.strip()
    if name in _SMALL:
        return "small", name
    if name == "resnet18":
        return "tv", "resnet18"
    for prefix in ("tv:", "torchvision:"):
        if name.startswith(prefix):
            base = name[len(prefix):]
            if base in list_names():
                return "tv", base
            close = difflib.get_close_matches(base, list_names(), n=4, cutoff=0.6)
            hint = f" Did you mean: {', '.join('tv:' + c for c in close)}?" if close else ""
            raise CnnvitError(f"unknown torchvision model {base!r} in {name!r}.{hint}")
    import timm

    base = name[len("timm:"):] if name.startswith("timm:") else name
    if timm.is_model(base):
        return "timm", base
    raise unknown_model_error(name)


def unknown_model_error(name: str) -> CnnvitError:
    """CnnvitError naming the presets and the closest known names."""
    import timm

    candidates = list(dict.fromkeys([*PRESETS, *timm.list_models(),
                                     *("tv:" + n for n in list_names())]))
    close = difflib.get_close_matches(name.strip().lower(), candidates, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return CnnvitError(
        f"unknown model {name!r}. Presets: {', '.join(PRESETS)}; any timm model name also works "
        "(timm.list_models() lists them, e.g. resnet10t, convnext_tiny, deit_small_patch16_224), "
        f"and any torchvision classifier as tv:<name> (e.g. tv:resnet50).{hint}")


def build(name: str, num_classes: int, in_chans: int = 3, image_size: int = 224,
          pretrained: bool = False, weights: str | Path | None = None,
          **kwargs: Any) -> nn.Module:
    """Build model `name` for `num_classes` classes, `in_chans` channels, `image_size` px inputs.

    `pretrained`: the library's published weights (a CnnvitError when they cannot be had).
    `weights`: a local state dict / .safetensors / cnnvit checkpoint, adapted to the head, the
    channel count and the token grid (it replaces `pretrained`). What was loaded and adapted is
    in `model.cnnvit_weights_report` (a list of lines; empty for a random initialisation).
    """
    for label, value in (("num_classes", num_classes), ("in_chans", in_chans),
                         ("image_size", image_size)):
        if not isinstance(value, int) or value < 1:
            raise CnnvitError(f"{label} must be a positive integer, got {value!r}")
    kind, base = _resolve(name)
    download = pretrained and weights is None
    if kind == "small":
        if download:
            raise CnnvitError(f"{name} has no published pretrained weights: train it from scratch "
                              "(drop --pretrained) or pass --weights PATH")
        if base == "resnet18-small":
            if kwargs:
                raise CnnvitError(f"resnet18-small takes no options (got {', '.join(kwargs)})")
            model = resnet18_small(num_classes, in_chans)
        else:
            model = vit_small_input(num_classes, in_chans, image_size, **kwargs)
    elif kind == "tv":
        model = build_torchvision(base, num_classes, in_chans, image_size, pretrained=download,
                                  display_name=name, **kwargs)
    else:
        model = build_timm(base, num_classes, in_chans, image_size, pretrained=download, **kwargs)
    check_patch_grid(model, name, image_size)
    warn_below_minimum(model, name, image_size)
    report = list(getattr(model, "cnnvit_weights_report", []))
    if weights is not None:
        report = load_weights(model, weights, name)
    set_info(model, cnnvit_weights_report=report, cnnvit_name=name, cnnvit_family=family(model))
    return model


def family(name_or_model: str | nn.Module) -> str:
    """"vit" for models built of self-attention over patch tokens (ViT, DeiT, Swin, BEiT, ...),
    "cnn" otherwise; decided from the model's structure (`structure.is_vit`).

    For a name, the model is built on the meta device (no memory, no initialisation) and the
    answer is cached.
    """
    if isinstance(name_or_model, nn.Module):
        known = getattr(name_or_model, "cnnvit_family", None)
        if known in {"cnn", "vit"}:
            return str(known)
        return "vit" if is_vit(name_or_model) else "cnn"
    kind, base = _resolve(name_or_model)
    if kind == "small":
        return _SMALL[base]
    if kind == "timm":
        import timm.models

        base = timm.models.split_model_name_tag(base)[0]
    return _family_of(kind, base)


@functools.cache
def _family_of(kind: str, base: str) -> str:
    """family() of a torchvision ("tv") or timm architecture, from a skeleton of it."""
    def skeleton() -> nn.Module:
        if kind == "tv":
            return build_torchvision(base, 1000)
        return build_timm(base, 1000)

    try:
        with torch.device("meta"):
            model = skeleton()
    except Exception:  # builders that compute with tensors (torchvision's RegNets)
        model = skeleton()
    return "vit" if is_vit(model) else "cnn"


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def input_normalization(name: str, pretrained_or_weights: bool
                        ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """RGB (mean, std) the published weights of `name` expect, or None (use the dataset's).

    None when the model starts from scratch or has no published weights (the small presets).
    timm models: their pretrained_cfg; torchvision: ImageNet's. The caller fits the three
    values to its channel count.
    """
    if not pretrained_or_weights:
        return None
    kind, base = _resolve(name)
    if kind == "small":
        return None
    import timm.data
    import timm.models

    cfg = timm.models.get_pretrained_cfg(base) if kind == "timm" else None
    if cfg is not None and cfg.mean and cfg.std:
        return tuple(map(float, cfg.mean)), tuple(map(float, cfg.std))
    return timm.data.IMAGENET_DEFAULT_MEAN, timm.data.IMAGENET_DEFAULT_STD

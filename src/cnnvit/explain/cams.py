"""Grad-CAM / Grad-CAM++ through pytorch-grad-cam, and `explain`, the one entry point.

Default target layers, first match wins: ViT (timm, `model.blocks` over a patch grid) →
`blocks[-1].norm1` with its tokens reshaped to the patch grid; ResNets (torchvision and timm)
→ `layer4[-1]`; timm EfficientNet → `conv_head`; other timm models → the last stage named in
`model.feature_info` (ConvNeXt, RegNet, MobileNetV3, Swin (channels-last), ...); any other CNN
→ its last `nn.Conv2d`. A dotted module name (`"layer3.1"`) overrides the choice.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.explain._common import (
    as_targets,
    check_images,
    inference_state,
    model_device,
    normalize_maps,
)
from cnnvit.explain.methods import CAM_METHODS, METHODS, VIT_DEFAULT, VIT_METHODS
from cnnvit.explain.relevance import relevance_maps
from cnnvit.explain.rollout import attention_rollout, token_layout
from cnnvit.models import family


def is_token_vit(model: nn.Module) -> bool:
    """A ViT with `blocks` over a patch-token grid (timm VisionTransformer and relatives)."""
    return (isinstance(getattr(model, "blocks", None), nn.Module)
            and getattr(getattr(model, "patch_embed", None), "grid_size", None) is not None)


def _last_child(model: nn.Module, name: str) -> nn.Module:
    """The last module of the container `model.<name>` (`blocks`, `layer4`, ...)."""
    container = getattr(model, name)
    if not isinstance(container, (nn.Sequential, nn.ModuleList)):
        raise CnnvitError(f"{type(model).__name__}.{name} is a {type(container).__name__}, "
                          "not an nn.Sequential or nn.ModuleList of layers")
    return container[-1]


def _named_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"Did you mean: {', '.join(close)}? " if close else ""
        top = ", ".join(n for n, _ in model.named_children())
        raise CnnvitError(f"no layer {name!r} in {type(model).__name__}. {hint}Layers are dotted "
                          f"module names as in model.named_modules(); top level: {top or 'none'}"
                          ) from None


MIN_CAM_SIDE = 4  # a CAM over a 1×1 or 2×2 feature map says nothing about where


def _output_side(model: nn.Module, module: nn.Module, image_size: int) -> int:
    """The smaller spatial side of `module`'s output for one image_size² input (dry run)."""
    sides: list[int] = []
    handle = module.register_forward_hook(lambda _m, _i, out: sides.append(min(out.shape[-2:])))
    param = next(model.parameters())
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    try:
        with inference_state(model), torch.no_grad():
            model(torch.zeros(1, in_chans, image_size, image_size, device=param.device,
                              dtype=param.dtype))
    finally:
        handle.remove()
    return sides[0]


def target_layer(model: nn.Module, name: str | None = None,
                 image_size: int | None = None) -> nn.Module:
    """The module whose activations Grad-CAM weighs: `name` (dotted) or the default above.

    With `image_size`, a CNN whose default layer would be smaller than 4×4 for that input
    (e.g. 8 px digits: a ResNet's layer4 is 1×1) uses the last earlier stage that is at least
    4×4, or its first stage when none is.
    """
    if name is not None:
        return _named_layer(model, name)
    if is_token_vit(model):
        last = _last_child(model, "blocks")
        return getattr(last, "norm1", last)
    candidates = _cnn_layers(model)
    if image_size is not None:
        for layer in candidates:
            if _output_side(model, layer, image_size) >= MIN_CAM_SIDE:
                return layer
    return candidates[0] if image_size is None else candidates[-1]


def _cnn_layers(model: nn.Module) -> list[nn.Module]:
    """The default Grad-CAM layer of a CNN, then the earlier stages to fall back to."""
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4):
        return [_last_child(model, f"layer{i}") for i in (4, 3, 2, 1)]
    feature_info = getattr(model, "feature_info", None)
    stages = [model.get_submodule(f["module"]) for f in reversed(feature_info)
              if "module" in f] if isinstance(feature_info, list) else []
    from timm.models import EfficientNet

    if isinstance(model, EfficientNet):
        return [model.conv_head, *stages]
    if stages:
        return stages
    if family(model) == "vit":
        raise CnnvitError(f"no default Grad-CAM layer for {type(model).__name__} (a transformer "
                          "without a ViT token grid): pass a layer name whose output is N×C×H×W")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CnnvitError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM: pass a layer "
                          "name whose output is N×C×H×W")
    return [convs[-1]]


def vit_reshape_transform(model: nn.Module,
                          image_size: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens N×T×C → feature map N×C×grid_h×grid_w, prefix tokens dropped (4-D passes through)."""
    grid_h, grid_w, prefix = token_layout(model, image_size)

    def transform(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3:
            return tokens
        if tokens.shape[1] != prefix + grid_h * grid_w:
            raise CnnvitError(f"layer output has {tokens.shape[1]} tokens, expected {prefix} "
                              f"prefix + {grid_h}×{grid_w} patch tokens")
        return tokens[:, prefix:].reshape(tokens.shape[0], grid_h, grid_w,
                                          tokens.shape[2]).permute(0, 3, 1, 2)

    return transform


def _channels_first(features: torch.Tensor) -> torch.Tensor:
    """N×H×W×C → N×C×H×W for channels-last models (timm `output_fmt == "NHWC"`, e.g. Swin)."""
    return features.permute(0, 3, 1, 2) if features.ndim == 4 else features


def cam_maps(model: nn.Module, images: torch.Tensor,
             targets: Sequence[int] | np.ndarray | torch.Tensor | None = None,
             method: str = "gradcam", layer: str | nn.Module | None = None,
             batch_size: int = 32) -> torch.Tensor:
    """Grad-CAM (or Grad-CAM++) maps, N×H×W float32 on the CPU, each min-max scaled to [0, 1].

    `targets`: a class index per image (None: the predicted class). Gradients are taken with
    respect to a copy of the input, so frozen models work; the model's train/eval modes,
    `requires_grad` flags and `.grad` are left as they were, and all hooks are released.
    """
    if method not in CAM_METHODS:
        raise CnnvitError(f"unknown CAM method {method!r}; use one of {', '.join(CAM_METHODS)}")
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus  # slow import (OpenCV, ttach)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = check_images(images)
    n = images.shape[0]
    classes = None if targets is None else as_targets(targets, n)
    module = (layer if isinstance(layer, nn.Module)
              else target_layer(model, layer, images.shape[-1]))
    transform = None
    if is_token_vit(model):
        transform = vit_reshape_transform(model, images.shape[-2:])
    elif getattr(model, "output_fmt", None) == "NHWC":
        transform = _channels_first
    device = model_device(model)
    starts = range(0, n, batch_size)
    maps = []
    with (inference_state(model), torch.enable_grad(),
          (GradCAM if method == "gradcam" else GradCAMPlusPlus)(model=model, target_layers=[module],
                              reshape_transform=transform) as cam):
        for start in starts:
            batch = images[start:start + batch_size].detach().to(device).requires_grad_(True)
            chunk = None if classes is None else [ClassifierOutputTarget(int(c))
                                                  for c in classes[start:start + batch_size]]
            maps.append(torch.from_numpy(cam(input_tensor=batch, targets=chunk)))
    if len(maps) != len(starts):  # pytorch-grad-cam's __exit__ swallows IndexError
        raise CnnvitError("Grad-CAM failed: is a target class index beyond the model's outputs?")
    return normalize_maps(torch.cat(maps))


def explain(model: nn.Module, images: torch.Tensor, method: str = "auto",
            targets: Sequence[int] | np.ndarray | torch.Tensor | None = None,
            **kwargs: Any) -> tuple[torch.Tensor, str]:
    """Saliency maps N×H×W in [0, 1] (float32, CPU) and the method used.

    "auto": gradient-weighted attention relevance (Chefer et al. 2021) for ViTs over a
    patch-token grid, Grad-CAM otherwise (CNNs, Swin-like transformers). "relevance",
    "rollout" and "vit-gradcam" (Grad-CAM on a ViT's last block) are for ViTs only. Rollout is
    class-agnostic and ignores `targets`; the others explain `targets` (None: the predicted
    class). `kwargs` go to `cam_maps` (layer, batch_size), `attention_rollout` (head_fusion,
    discard_ratio, batch_size) or `relevance_maps` (batch_size).
    """
    if method not in METHODS:
        raise CnnvitError(f"unknown explanation method {method!r}; use one of {', '.join(METHODS)}")
    fam = family(model)
    if method == "auto":
        method = VIT_DEFAULT if fam == "vit" and is_token_vit(model) else "gradcam"
    if method in VIT_METHODS and fam != "vit":
        raise CnnvitError(f"{method} needs a Vision Transformer; {type(model).__name__} is a CNN: "
                          "use gradcam or gradcam++")
    if method == "rollout":
        return attention_rollout(model, images, **kwargs), method
    if method == "relevance":
        return relevance_maps(model, images, targets, **kwargs), method
    cam_method = "gradcam" if method == "vit-gradcam" else method
    return cam_maps(model, images, targets, cam_method, **kwargs), method

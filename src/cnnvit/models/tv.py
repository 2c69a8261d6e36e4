"""torchvision classifiers (`resnet18`, `tv:<name>`) with any class count and channel count."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.models import hub
from cnnvit.models.weights import first_conv_names, fit_state_dict, set_info

_NO_AUX = {"inception_v3", "googlenet"}


def list_names() -> list[str]:
    """torchvision's classification model names (resnet18, resnet50, vit_b_16, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def replace_input_conv(model: nn.Module, in_chans: int) -> None:
    """Swap the first Conv2d for one taking `in_chans` channels (same kernel, stride, padding)."""
    names = first_conv_names(model)
    if not names:
        raise CnnvitError(f"{type(model).__name__} has no input convolution to adapt")
    parent_name, _, attr = names[0].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if old.in_channels == in_chans:
        return
    new = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride, old.padding,
                    old.dilation, old.groups, old.bias is not None, old.padding_mode)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    setattr(parent, attr, new)


def build_torchvision(name: str, num_classes: int, in_chans: int = 3, image_size: int = 224,
                      pretrained: bool = False, display_name: str | None = None,
                      **kwargs: Any) -> nn.Module:
    """torchvision model `name` with `num_classes` outputs and `in_chans` inputs.

    `pretrained` loads the library's default ImageNet weights (resnet18: IMAGENET1K_V1), adapting
    the input conv and replacing the classifier.
    """
    import torchvision

    display_name = display_name or f"tv:{name}"
    if name in _NO_AUX:
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", True)
    if name.startswith("vit_"):
        kwargs.setdefault("image_size", image_size)
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CnnvitError(f"cannot build {display_name}: {exc}") from exc
    if in_chans != 3:
        replace_input_conv(model, in_chans)
    if pretrained:
        url = _weights_url(name, display_name)
        state = hub.torchvision_state_dict(display_name, url)
        set_info(model, cnnvit_weights_report=fit_state_dict(model, state, display_name, url))
    return model


def _weights_url(name: str, display_name: str) -> str:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError) as exc:
        raise CnnvitError(
            f"torchvision publishes no pretrained weights for {display_name}") from exc
    if name == "resnet18":
        return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return enum.DEFAULT.url

"""timm models by name, with `img_size` passed to the architectures that take it."""

from __future__ import annotations

import pickle
from typing import Any

import torch.nn as nn

from cnnvit.checkpoint import refuse_pickled_code
from cnnvit.errors import CnnvitError
from cnnvit.models import hub
from cnnvit.models.weights import set_info


def _create(name: str, pretrained: bool, image_size: int, **kwargs: Any) -> nn.Module:
    """timm.create_model with img_size when the architecture accepts it (ViTs, Swin...)."""
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, img_size=image_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _where(name: str) -> str:
    """The local weights file of timm model `name`, or the name when it is not known."""
    cached = hub.timm_weights(name).cached
    return str(cached) if cached is not None else f"the pretrained weights of {name}"


def build_timm(name: str, num_classes: int, in_chans: int = 3, image_size: int = 224,
               pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm model `name` for `num_classes` classes, `in_chans` channels, `image_size` px inputs.

    `pretrained` takes timm's published weights from the local cache (no network), else
    downloads them when the network answers (see `hub`); timm adapts the head, the input conv
    and the position embeddings itself.
    """
    def create(**extra: Any) -> nn.Module:
        return _create(name, pretrained, image_size, num_classes=num_classes,
                       in_chans=in_chans, **kwargs, **extra)

    try:
        if not pretrained:
            return create()
        weights = hub.timm_weights(name)
        if weights.cached is not None:
            model = create(pretrained_cfg_overlay=weights.overlay())
        else:
            model = hub.download(name, weights.source, create)
    except CnnvitError:
        raise
    except Exception as exc:
        if isinstance(exc, pickle.UnpicklingError) or isinstance(exc.__cause__,
                                                                 pickle.UnpicklingError):
            raise refuse_pickled_code(_where(name), exc) from None
        raise CnnvitError(f"cannot build timm model {name} for {image_size} px images with "
                          f"{in_chans} channel(s) and {num_classes} classes: "
                          f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    cached = f" (local copy {weights.cached})" if weights.cached is not None else ""
    set_info(model, cnnvit_weights_report=[f"pretrained weights from {weights.source}{cached}"])
    return model

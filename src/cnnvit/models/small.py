"""Architectures for small inputs: a CIFAR-style ResNet-18 and a compact ViT."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn as nn

from cnnvit.errors import CnnvitError

if TYPE_CHECKING:
    from timm.models import VisionTransformer

VIT_SMALL_DEFAULTS: dict[str, Any] = {
    "width": 64, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "drop_rate": 0.0, "drop_path_rate": 0.0,
    "global_pool": "token",
}


def resnet18_small(num_classes: int, in_chans: int = 3) -> nn.Module:
    """torchvision ResNet-18 with a 3×3 stride-1 stem and no max-pool (MedMNIST v2 / CIFAR style).

    11,173,962 parameters for 10 classes and 3 input channels.
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def preferred_patch_size(image_size: int) -> int:
    """Patch side for a square input: 2 px up to 16 px, 4 up to 32, 8 up to 64, else 16."""
    if image_size <= 16:
        return 2
    if image_size <= 32:
        return 4
    if image_size <= 64:
        return 8
    return 16


def choose_patch_size(image_size: int, patch_size: int | None = None) -> int:
    """The patch side for `image_size`: `patch_size` when given (it must divide the image),
    else the largest divisor of the image side between half the preferred patch and the
    preferred patch (see `preferred_patch_size`)."""
    if image_size < 1:
        raise CnnvitError(f"image size must be positive, got {image_size}")
    if patch_size is not None:
        if patch_size < 1 or image_size % patch_size:
            raise CnnvitError(f"vit-small-input: patch_size {patch_size} does not divide the "
                              f"image size {image_size}; pick a divisor of {image_size}")
        return patch_size
    pref = preferred_patch_size(image_size)
    for p in range(pref, max(1, pref // 2) - 1, -1):
        if image_size % p == 0:
            return p
    raise CnnvitError(f"vit-small-input: image size {image_size} has no divisor between "
                      f"{max(1, pref // 2)} and {pref} to use as the patch size; pass "
                      f"patch_size=<a divisor of {image_size}> or resize the images "
                      f"(e.g. to {image_size - image_size % pref})")


def vit_small_input(num_classes: int, in_chans: int = 3, image_size: int = 32,
                    **overrides: Any) -> VisionTransformer:
    """A compact timm VisionTransformer for small images (≈0.2 M parameters by default).

    Class token, learned position embeddings, pre-norm blocks with qkv bias, token pooling.
    Overrides: width, depth, heads, patch_size, mlp_ratio, drop_rate, drop_path_rate,
    global_pool (token | avg).
    """
    allowed = set(VIT_SMALL_DEFAULTS) | {"patch_size"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise CnnvitError(f"vit-small-input: unknown option(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(allowed))}")
    cfg = {**VIT_SMALL_DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    patch = choose_patch_size(image_size, overrides.get("patch_size"))
    from timm.models import VisionTransformer

    width, heads = int(cfg["width"]), int(cfg["heads"])
    if heads < 1 or width % heads:
        raise CnnvitError(f"vit-small-input: width {width} must be divisible by heads {heads}")
    return VisionTransformer(
        img_size=image_size, patch_size=patch, in_chans=in_chans, num_classes=num_classes,
        embed_dim=width, depth=int(cfg["depth"]), num_heads=heads,
        mlp_ratio=float(cfg["mlp_ratio"]), qkv_bias=True, class_token=True,
        global_pool=cfg["global_pool"], drop_rate=float(cfg["drop_rate"]),
        drop_path_rate=float(cfg["drop_path_rate"]),
    )

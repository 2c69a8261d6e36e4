"""Checks that a built model can see the whole input at the requested size.

A ViT splits the image into patches: an image side that is not a multiple of the patch side
silently drops the remainder (timm's patch convolution covers only whole patches), so
`vit_small_patch16_224` at 30 px would see only the top-left 16×16 pixels. That is an error.
An input below the smallest size a timm model states (`min_input_size`) is a warning.
"""

from __future__ import annotations

import logging

import torch.nn as nn

from cnnvit.errors import CnnvitError

log = logging.getLogger("cnnvit.models")


def _pair(x: int | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def working_sizes(patch: int, around: int, count: int = 4) -> list[int]:
    """Image sizes near `around` that are whole multiples of `patch` (at least one patch)."""
    low = max(1, around // patch)
    return [patch * k for k in range(max(1, low - 1), max(1, low - 1) + count)]


def check_patch_grid(model: nn.Module, name: str, image_size: int) -> None:
    """A CnnvitError when `image_size` is smaller than one patch or not a multiple of the
    patch size of the model's patch embedding (models without one pass)."""
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if embed is None or patch is None or getattr(embed, "dynamic_img_pad", False):
        return
    ph, pw = _pair(patch)
    if image_size % ph == 0 and image_size % pw == 0 and image_size >= max(ph, pw):
        return
    sizes = ", ".join(str(s) for s in working_sizes(max(ph, pw), image_size))
    what = ("smaller than one patch" if image_size < max(ph, pw) else
            f"not a multiple of the patch size: the model would see only the top-left "
            f"{image_size // ph * ph}×{image_size // pw * pw} pixels")
    raise CnnvitError(f"{name} splits images into {ph}×{pw} patches and --image-size "
                      f"{image_size} is {what}. Use --image-size {sizes} (multiples of {ph}), "
                      "or a model with smaller patches (vit-small-input picks them for the "
                      "input size)")


def warn_below_minimum(model: nn.Module, name: str, image_size: int) -> str | None:
    """Log (and return) a warning when `image_size` is below the model's stated minimum."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    minimum = cfg.get("min_input_size")
    if not minimum or image_size >= min(minimum[-2:]):
        return None
    text = (f"{name} states a minimum input of {minimum[-2]}×{minimum[-1]} px; "
            f"--image-size {image_size} is below it (use --image-size {max(minimum[-2:])} or "
            "more)")
    log.warning(text)
    return text

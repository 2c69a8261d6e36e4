"""Shared helpers: model state that explanations must not change, input checks, normalisation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError


@contextmanager
def inference_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration of the block.

    Afterwards every module's `training` flag, every parameter's `requires_grad` and `.grad`
    are exactly as before, even when the block raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad, grad in params:
            p.requires_grad_(requires_grad)
            p.grad = grad


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free model)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def check_images(images: torch.Tensor) -> torch.Tensor:
    """`images` as a float N×C×H×W tensor (a CnnvitError otherwise)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise CnnvitError(f"images must be a non-empty N×C×H×W tensor, got {shape}")
    return images if images.is_floating_point() else images.float()


def as_targets(targets: Sequence[int] | np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    """Class indices as an int64 CPU tensor of length `n`."""
    out = torch.as_tensor(targets).detach().cpu().to(torch.int64).reshape(-1)
    if out.numel() != n:
        raise CnnvitError(f"need one target class per image: {n} images, {out.numel()} targets")
    if (out < 0).any():
        raise CnnvitError("target class indices must be non-negative")
    return out


def predicted_classes(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Arg-max class of the model's logits for every image (int64, CPU)."""
    images = check_images(images)
    device = model_device(model)
    with inference_state(model), torch.no_grad():
        preds = [model(images[i:i + batch_size].to(device)).argmax(1).cpu()
                 for i in range(0, images.shape[0], batch_size)]
    return torch.cat(preds)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max scaling to [0, 1] (float32, CPU); a constant map becomes all zeros."""
    maps = torch.nan_to_num(maps.detach().float().cpu())
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    flat_enough = span <= 1e-6 * torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-30)
    scaled = (flat - lo) / torch.where(flat_enough, torch.ones_like(span), span)
    scaled = torch.where(flat_enough, torch.zeros_like(scaled), scaled)
    return scaled.clamp_(0.0, 1.0).reshape(maps.shape)

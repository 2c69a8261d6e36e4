"""Optimizers and learning-rate schedules.

The schedule is a pure function of the step, so a resumed run sets exactly the learning rate
an uninterrupted run would have had: no scheduler state to save or restore.
"""

from __future__ import annotations

import math

import torch

from cnnvit.config import Config


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD; biases and norm weights (1-D parameters) get no weight decay."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    # Fused Adam/AdamW kernels exist on CPU and CUDA; on an 11 M-parameter ResNet they cut the
    # CPU optimizer step about threefold (see docs/performance.md).
    # None (torch's default) otherwise, not False: an explicit False would also switch off
    # torch's default foreach implementation.
    fused: bool | None = True if _fused_ok(model) else None
    if cfg.optimizer == "adam":
        # torch's Adam adds L2 to the gradient (coupled), as the reference studies used it.
        return torch.optim.Adam(groups, lr=cfg.lr, fused=fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def _fused_ok(model: torch.nn.Module) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.device.type in ("cpu", "cuda") and p.dtype == torch.float32


def lr_at(cfg: Config, epoch: float, start_epoch: int = 0, step: float = 0.0) -> float:
    """Learning rate of the optimizer step that starts at fractional `epoch` (0-based) and
    lasts `step` epochs, in a schedule that begins at `start_epoch`.

    Decays use the step's start (a milestone at epoch 50 first applies to epoch 50's first
    step, as torch's per-epoch schedulers do); the linear warm-up uses its end, so the very
    first step already learns. `start_epoch` > 0 is an extension phase (a finished run resumed
    with more epochs): the schedule restarts there, from `cfg.lr`, without warm-up.
    """
    total = max(cfg.epochs - start_epoch, 1)
    t = epoch - start_epoch
    warm = cfg.warmup_epochs if start_epoch == 0 else 0.0
    if warm > 0 and t < warm:
        return cfg.lr * min(1.0, (t + step) / warm)
    if cfg.scheduler == "none":
        return cfg.lr
    if cfg.scheduler == "cosine":
        progress = min(max((t - warm) / max(total - warm, 1e-8), 0.0), 1.0)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "step":
        return cfg.lr * cfg.gamma ** int(t // cfg.step_size)
    # multistep: milestones < 1 are fractions of the phase, others are epochs within it
    marks = [m * total if m < 1 else m for m in cfg.milestones]
    return cfg.lr * cfg.gamma ** sum(t >= m for m in marks)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

"""Checkpoints: written atomically, read back with `torch.load(weights_only=True)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnvit import __version__
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save `payload` (tensors, numbers, strings, lists, dicts only) atomically to `path`.

    The file is written beside its destination and renamed into place, so a crash never
    leaves a half-written checkpoint. A `cnnvit_version` key is added.
    """
    payload = {**payload, "cnnvit_version": __version__}
    atomic_write(path, lambda f: torch.save(payload, f), binary=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; a missing or unreadable file is a CnnvitError."""
    path = Path(path)
    if not path.is_file():
        raise CnnvitError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle/zip errors carry no user-facing meaning
        raise CnnvitError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}. "
                          "Is it a PyTorch checkpoint written by cnnvit or torch.save?") from exc


def is_cnnvit_checkpoint(obj: Any) -> bool:
    """True for a dict written by `save_checkpoint` (it holds the model's state dict)."""
    return isinstance(obj, dict) and "cnnvit_version" in obj and "model" in obj

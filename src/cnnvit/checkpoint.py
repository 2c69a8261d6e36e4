"""Checkpoints: written atomically, read back with `torch.load(weights_only=True)`."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
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
    """Load a checkpoint with `weights_only=True`; a missing or unreadable file, or one that
    holds pickled Python objects other than tensors and plain values, is a CnnvitError."""
    path = Path(path)
    if not path.is_file():
        raise CnnvitError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise refuse_pickled_code(path, exc) from None
    except Exception as exc:  # zip errors, truncated files: no user-facing meaning
        reason = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
        raise CnnvitError(f"cannot read checkpoint {path}: {reason}. Is it a PyTorch "
                          "checkpoint written by cnnvit or torch.save?") from exc


def refuse_pickled_code(path: str | Path, exc: BaseException) -> CnnvitError:
    """The error for a file that torch's weights-only loader refused (`exc`, or the error it
    caused): what it holds besides tensors, and never the advice to load it unsafely."""
    return CnnvitError(f"{path}: contains pickled Python objects that are not plain "
                       f"tensors/numbers ({_refused(exc)}); cnnvit will not run code from a "
                       "file. Use a checkpoint written by cnnvit or a .safetensors file.")


def _refused(exc: BaseException) -> str:
    """What the weights-only unpickler refused ("GLOBAL builtins.exec", ...)."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    found = re.search(r"GLOBAL [\w.]+", text)
    if found is not None:
        return found.group(0)
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    return found.group(1).strip() if found else "refused by the weights-only loader"


def is_readable_checkpoint(path: str | Path) -> bool:
    """`path` is a torch zip archive whose directory reads (a missing or truncated file is not;
    nothing is unpickled: its tensors are checked when it is loaded)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def is_cnnvit_checkpoint(obj: Any) -> bool:
    """True for a dict written by `save_checkpoint` (it holds the model's state dict)."""
    return isinstance(obj, dict) and "cnnvit_version" in obj and "model" in obj

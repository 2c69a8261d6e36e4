"""Local weights: read a state dict / .safetensors / cnnvit checkpoint and fit it to a model.

Fitting = strip wrapper prefixes, adapt the input conv to the channel count, resample position
embeddings to the token grid, re-initialise a classifier whose class count differs. Anything
else that does not match is an error: the weights belong to another architecture.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnvit.checkpoint import is_cnnvit_checkpoint, load_checkpoint
from cnnvit.errors import CnnvitError

StateDict = dict[str, torch.Tensor]

PREFIXES = ("module.", "_orig_mod.", "model.")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_IGNORED_SUFFIXES = ("num_batches_tracked", "relative_position_index", "attn_mask")
_POS_EMBED_SUFFIXES = ("pos_embed", "pos_embedding")


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a .safetensors file, a torch state dict (.pt/.pth/.bin) or a cnnvit checkpoint.

    Torch files are read with `weights_only=True`; a checkpoint wrapping its state dict under
    "model" / "state_dict" / "model_state_dict" is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnvitError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
            obj: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise CnnvitError(f"cannot read {path} as .safetensors: {exc}") from exc
    elif path.suffix == ".npz":
        raise CnnvitError(f"{path}: .npz (JAX) weights are not supported; pass a PyTorch state "
                          "dict, a .safetensors file or a cnnvit checkpoint")
    else:
        obj = load_checkpoint(path)
    if is_cnnvit_checkpoint(obj):
        obj = obj["model"]
    for _ in range(2):  # e.g. {"state_dict": {...}} or {"model": {"state_dict": ...}}
        if isinstance(obj, dict) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CnnvitError(f"{path} holds no state dict (found {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CnnvitError(f"{path} holds no tensors; keys: {', '.join(list(map(str, obj))[:5])}")
    return tensors


def _is_tensor_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def strip_prefixes(sd: StateDict, model_keys: set[str]) -> tuple[StateDict, list[str]]:
    """Remove "module." / "_orig_mod." / "model." when every key has it and the model does not."""
    stripped: list[str] = []
    changed = True
    while changed and sd:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in sd) and not any(
                    k.startswith(prefix) for k in model_keys):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped.append(prefix)
                changed = True
    return sd, stripped


def _module_name(model: nn.Module, target: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if m is target and n), None)


def _cfg_names(model: nn.Module, key: str) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None)
    value = cfg.get(key) if isinstance(cfg, dict) else None
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def classifier_names(model: nn.Module) -> list[str]:
    """Module names of the classification head(s) (timm: pretrained_cfg / get_classifier;
    otherwise the last nn.Linear, e.g. torchvision's "fc")."""
    names = _cfg_names(model, "classifier")
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        try:
            heads = getter()
        except Exception:
            heads = None
        for head in heads if isinstance(heads, tuple) else (heads,):
            name = _module_name(model, head) if isinstance(head, nn.Module) else None
            if name and name not in names:
                names.append(name)
    if not names:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        names = linears[-1:]
    return names


def first_conv_names(model: nn.Module) -> list[str]:
    """Module names of the input convolution(s) (timm pretrained_cfg, else the first Conv2d)."""
    names = _cfg_names(model, "first_conv")
    if not names:
        first = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        names = [first] if first else []
    return names


def _under(key: str, modules: list[str]) -> bool:
    return any(key == m or key.startswith(m + ".") for m in modules)


def _adapt_input_convs(model: nn.Module, sd: StateDict, msd: StateDict) -> list[str]:
    from timm.models import adapt_input_conv

    notes = []
    for name in first_conv_names(model):
        key = f"{name}.weight"
        if key not in sd or key not in msd:
            continue
        w, target = sd[key], msd[key]
        if w.ndim != 4 or w.shape[1] == target.shape[1]:
            continue
        if w.shape[0] != target.shape[0]:
            continue  # another layer altogether: reported as a shape mismatch below
        try:
            sd[key] = adapt_input_conv(target.shape[1], w, base_chans=w.shape[1])
        except (NotImplementedError, ValueError, AssertionError) as exc:
            raise CnnvitError(f"cannot adapt input conv {name} from {w.shape[1]} to "
                              f"{target.shape[1]} channels: {exc}") from exc
        notes.append(f"input conv {name} adapted from {w.shape[1]} to {target.shape[1]} channels")
    return notes


def _prefix_tokens(model: nn.Module, n_file: int, n_model: int) -> int | None:
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):
        if getattr(model, "no_embed_class", False):
            return 0
        return int(getattr(model, "num_prefix_tokens", 0))
    for p in range(0, 9):
        if _is_square(n_file - p) and _is_square(n_model - p):
            return p
    return None


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def _resample_pos_embeds(model: nn.Module, sd: StateDict, msd: StateDict) -> list[str]:
    from timm.layers import resample_abs_pos_embed

    notes = []
    for key in [k for k in sd if k.endswith(_POS_EMBED_SUFFIXES) and k in msd]:
        v, target = sd[key], msd[key]
        if v.ndim != 3 or v.shape == target.shape or v.shape[-1] != target.shape[-1]:
            continue
        p = _prefix_tokens(model, v.shape[1], target.shape[1])
        if p is None or not _is_square(v.shape[1] - p):
            continue
        old = math.isqrt(v.shape[1] - p)
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        new = [int(g) for g in grid] if grid else [math.isqrt(target.shape[1] - p)] * 2
        if new[0] * new[1] != target.shape[1] - p:
            continue
        sd[key] = resample_abs_pos_embed(v, new_size=new, old_size=[old, old],
                                         num_prefix_tokens=p)
        notes.append(f"{key} resampled from a {old}×{old} token grid to {new[0]}×{new[1]}")
    return notes


def _timm_filter(model: nn.Module, sd: StateDict) -> StateDict:
    """Apply the model family's timm checkpoint_filter_fn (format conversions, resampling)."""
    module = type(model).__module__
    fn = getattr(sys.modules.get(module), "checkpoint_filter_fn", None)
    if not module.startswith("timm.") or not callable(fn):
        return sd
    try:
        out = fn(dict(sd), model)
    except Exception:  # the generic checks below still explain what does not fit
        return sd
    return out if isinstance(out, dict) and out else sd


def _examples(keys: list[str], n: int = 4) -> str:
    more = f", … ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def fit_state_dict(model: nn.Module, sd: StateDict, name: str, source: str) -> list[str]:
    """Adapt `sd` to `model` and load it; return what was adapted, one line per change."""
    msd = model.state_dict()
    sd, stripped = strip_prefixes(dict(sd), set(msd))
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    notes = [f"stripped key prefix {p!r}" for p in stripped]
    notes += _adapt_input_convs(model, sd, msd)
    notes += _resample_pos_embeds(model, sd, msd)
    sd = _timm_filter(model, sd)
    for key, v in sd.items():  # anything timm resampled on its own
        if key in shapes and key in msd and shapes[key] != tuple(v.shape) and not any(
                key in n for n in notes):
            notes.append(f"{key} resized from {shapes[key]} to {tuple(v.shape)}")

    heads = classifier_names(model)
    head_model = [k for k in msd if _under(k, heads)]
    dropped = [k for k in sd if _under(k, heads) and (k not in msd or sd[k].shape != msd[k].shape)]
    for k in dropped:
        del sd[k]
    if head_model and not all(k in sd for k in head_model):
        out = next((msd[k].shape[0] for k in head_model if k.endswith("weight")), "new")
        had = next((shapes[k][0] for k in dropped if k.endswith("weight") and k in shapes), None)
        was = f" (the file's had {had})" if had else " (not in the file)"
        notes.append(f"classifier {'/'.join(heads)} newly initialised for {out} classes{was}")

    ignored = _IGNORED_SUFFIXES
    missing = [k for k in msd if k not in sd and k not in head_model and not k.endswith(ignored)]
    unexpected = [k for k in sd if k not in msd and not k.endswith(ignored)]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(msd[k].shape)}"
                  for k in sd if k in msd and sd[k].shape != msd[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{len(x)} {what} ({_examples(x)})" for x, what in (
            (missing, "missing keys"), (unexpected, "unexpected keys"),
            (mismatched, "shape mismatches (file vs model)")) if x]
        raise CnnvitError(f"the weights in {source} do not fit {name}: {'; '.join(parts)}. "
                          "Were they saved from another architecture?")
    sd = {k: v for k, v in sd.items() if k in msd}
    model.load_state_dict(sd, strict=False)
    loaded = sum(1 for k in msd if k in sd)
    return [f"loaded {loaded}/{len(msd)} tensors from {source}", *notes]


def load_weights(model: nn.Module, path: str | Path, name: str) -> list[str]:
    """Load local weights from `path` into `model` (see module doc); return the adaptations.

    The report is also stored as `model.cnnvit_weights_report`.
    """
    report = fit_state_dict(model, read_state_dict(path), name, str(path))
    set_info(model, cnnvit_weights_report=report)
    return report


def set_info(model: nn.Module, **info: Any) -> None:
    """Set cnnvit's plain attributes on `model` (cnnvit_weights_report, cnnvit_family, ...)."""
    for key, value in info.items():
        setattr(model, key, value)

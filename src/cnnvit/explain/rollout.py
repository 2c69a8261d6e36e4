"""Attention rollout (Abnar & Zuidema 2020) for timm VisionTransformer-style models.

Per block the heads' attention probabilities are fused (mean / max / min), optionally the
weakest weights are discarded, the identity is added for the residual connection and rows are
renormalised to sum to 1; the rollout is the product A_L @ ... @ A_1. The map is the class
token's row over the patch tokens (prefix tokens — class, distillation, registers — dropped),
reshaped to the patch grid and upsampled bilinearly to the input size. Models whose classifier
does not read the class token (no class token, or global_pool="avg") use the mean of the
patch-token rows instead, matching their average pooling over patch tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeGuard

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnvit.errors import CnnvitError
from cnnvit.explain._common import check_images, inference_state, model_device, normalize_maps

HEAD_FUSIONS = ("mean", "max", "min")


def token_layout(model: nn.Module,
                 image_size: Sequence[int] | None = None) -> tuple[int, int, int]:
    """(grid_h, grid_w, num_prefix_tokens) of a ViT, read from the model.

    `image_size` (H, W), when given, is the input size: models built with
    `dynamic_img_size=True` get the grid for it, others must have been built for it (a
    CnnvitError otherwise); the grid is `model.patch_embed.grid_size`. Prefix tokens are
    `model.num_prefix_tokens` (class + distillation + register tokens).
    """
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if patch_embed is None or grid is None:  # (no patch_embed means no grid_size either)
        raise CnnvitError(f"{type(model).__name__} has no patch_embed.grid_size: it is not a "
                          "ViT with a patch-token grid")
    if image_size is not None:
        size = tuple(int(s) for s in image_size)
        built = getattr(patch_embed, "img_size", None)
        if getattr(model, "dynamic_img_size", False):
            grid = patch_embed.dynamic_feat_size(size)
        elif built is not None and size != tuple(built):
            raise CnnvitError(f"{type(model).__name__} was built for {built[0]}×{built[1]} px "
                              f"inputs, got {size[0]}×{size[1]} px images")
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is None:
        prefix = int(getattr(model, "cls_token", None) is not None)
    return int(grid[0]), int(grid[1]), int(prefix)


def has_class_token(model: nn.Module) -> bool:
    """True when the model prepends a class token (timm: `model.cls_token` is not None)."""
    return getattr(model, "cls_token", None) is not None


def reads_class_token(model: nn.Module) -> bool:
    """True when the classifier reads the class token's output (timm `global_pool="token"`);
    False for models that pool the patch tokens (`"avg"`, `"max"`, attention pooling)."""
    return has_class_token(model) and getattr(model, "global_pool", "token") == "token"


class _TimmAttention(Protocol):
    """What rollout uses of a timm attention module (Attention, EvaAttention, ...)."""

    fused_attn: bool
    attn_drop: nn.Module


def _is_timm_attention(attn: object) -> TypeGuard[_TimmAttention]:
    return (attn is not None and hasattr(attn, "fused_attn")
            and isinstance(getattr(attn, "attn_drop", None), nn.Module))


def _attention_modules(model: nn.Module) -> list[_TimmAttention]:
    blocks = getattr(model, "blocks", None)
    attns = [getattr(b, "attn", None) for b in blocks] if blocks is not None else []
    timm_attns = [a for a in attns if _is_timm_attention(a)]
    if not attns or len(timm_attns) != len(attns):
        raise CnnvitError(f"attention rollout and relevance need a ViT whose model.blocks[i].attn "
                          f"are timm Attention modules (with fused_attn and attn_drop); "
                          f"{type(model).__name__} has none. Use gradcam with a layer instead.")
    return timm_attns


@contextmanager
def capture_attention(model: nn.Module,
                      keep_graph: bool = False) -> Iterator[dict[int, torch.Tensor]]:
    """Record each block's softmaxed attention (B×heads×T×T) during forward passes.

    Yields a dict block index → attention of the latest forward pass, detached unless
    `keep_graph` (then it stays in the autograd graph, for gradients with respect to it). Fused
    attention is switched off inside the block (its probabilities are never materialised) and a
    forward hook on `attn.attn_drop` reads its input; flags and hooks are restored on exit, even
    on error.
    """
    attns = _attention_modules(model)
    fused = [a.fused_attn for a in attns]
    captured: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for i, attn in enumerate(attns):
            attn.fused_attn = False

            def hook(_module: nn.Module, inputs: tuple, _output: torch.Tensor, i: int = i) -> None:
                captured[i] = inputs[0] if keep_graph else inputs[0].detach()

            handles.append(attn.attn_drop.register_forward_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()
        for attn, flag in zip(attns, fused, strict=True):
            attn.fused_attn = flag


def recorded_attention(model: nn.Module, captured: dict[int, torch.Tensor]) -> list[torch.Tensor]:
    """`capture_attention`'s record as a list in block order, checked to hold every block."""
    n_blocks = len(_attention_modules(model))  # one attention module per block
    if len(captured) != n_blocks:
        raise CnnvitError(f"attention was recorded in {len(captured)} of {n_blocks} "
                          "blocks: the model's forward does not run every block's attention")
    return [captured[i] for i in range(n_blocks)]


def _fuse_heads(attn: torch.Tensor, head_fusion: str) -> torch.Tensor:
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    return attn.amin(dim=1)


def _discard(fused: torch.Tensor, ratio: float, class_token: bool) -> torch.Tensor:
    """Zero the lowest `ratio` fraction of weights; weights to or from the class token stay."""
    n, t, _ = fused.shape
    candidate = torch.ones(t, t, dtype=torch.bool, device=fused.device)
    if class_token:
        candidate[0, :] = False
        candidate[:, 0] = False
    k = int(candidate.sum().item() * ratio)
    if k == 0:
        return fused
    scores = fused.masked_fill(~candidate, float("inf")).reshape(n, -1)
    lowest = scores.topk(k, dim=1, largest=False, sorted=False).indices
    return fused.reshape(n, -1).scatter(1, lowest, 0.0).reshape(n, t, t)


def rollout_matrices(model: nn.Module, images: torch.Tensor, head_fusion: str = "mean",
                     discard_ratio: float = 0.0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-block matrices and their rollout for one batch (one forward pass).

    Returns (blocks, rollout): `blocks[l]` is block l's N×T×T matrix after head fusion,
    discarding, adding the identity and renormalising rows (row-stochastic); `rollout` is
    blocks[L-1] @ ... @ blocks[0] (N×T×T, row-stochastic). T counts prefix and patch tokens.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise CnnvitError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, "
                          f"got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise CnnvitError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    images = check_images(images)
    class_token = has_class_token(model)
    with inference_state(model), torch.no_grad(), capture_attention(model) as captured:
        model(images.to(model_device(model)))
    attentions = recorded_attention(model, captured)
    blocks: list[torch.Tensor] = []
    for attn in attentions:
        fused = _discard(_fuse_heads(attn.float(), head_fusion), discard_ratio, class_token)
        fused = fused + torch.eye(fused.shape[-1], device=fused.device)
        fused = fused / fused.sum(dim=-1, keepdim=True)
        blocks.append(fused)
    # capture_attention rejects models without blocks, so there is at least one
    rollout = blocks[0]
    for fused in blocks[1:]:
        rollout = fused @ rollout
    return blocks, rollout


def token_maps(model: nn.Module, matrices: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Unnormalised maps N×H×W from token-to-token matrices N×T×T (rollout, relevance).

    The row of the token the classifier reads (the class token's, or the mean of the patch-token
    rows when it pools patch tokens, see `reads_class_token`) over the patch tokens, on the patch
    grid, upsampled bilinearly to `size` (H, W).
    """
    height, width = (int(s) for s in size)
    grid_h, grid_w, prefix = token_layout(model, (height, width))
    if matrices.shape[-1] != prefix + grid_h * grid_w:
        raise CnnvitError(f"the model produced {matrices.shape[-1]} tokens for "
                          f"{height}×{width} px inputs, expected {prefix} prefix + "
                          f"{grid_h}×{grid_w} patch tokens: feed images of the size the "
                          "model was built for")
    if reads_class_token(model):
        flow = matrices[:, 0, prefix:]
    else:
        flow = matrices[:, prefix:, prefix:].mean(dim=1)
    grid = flow.reshape(-1, 1, grid_h, grid_w)
    return F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[:, 0]


def attention_rollout(model: nn.Module, images: torch.Tensor, head_fusion: str = "mean",
                      discard_ratio: float = 0.0, batch_size: int = 64) -> torch.Tensor:
    """Attention-rollout maps, N×H×W float32 on the CPU, each min-max scaled to [0, 1].

    Class-agnostic (the class token's attention flow, not a class-specific explanation).
    """
    images = check_images(images)
    size = images.shape[-2:]
    token_layout(model, size)  # a wrong input size fails before any forward pass
    maps = []
    for start in range(0, images.shape[0], batch_size):
        _, rollout = rollout_matrices(model, images[start:start + batch_size], head_fusion,
                                      discard_ratio)
        maps.append(token_maps(model, rollout, size))
    return normalize_maps(torch.cat(maps))

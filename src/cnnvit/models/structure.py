"""What a model is built of: self-attention blocks over patch tokens ("vit") or convolutions.

A *block* is a module held in an `nn.Sequential` / `nn.ModuleList` (how timm and torchvision
stack their layers). An attention block is the innermost block that holds a self-attention
layer, together with whatever else it holds (MLP, positional convs); a convolution block is
the outermost other block holding an `nn.Conv2d`. A model is a ViT when it has attention
blocks and at least as many of them as convolution blocks. The patch embedding
(`patch_embed`) is the tokeniser however it is built (a ResNet in timm's hybrid ViTs) and is
not counted.
"""

from __future__ import annotations

import re

import torch.nn as nn

# query projections: qkv, qkvs, qkv_proj, to_qkv, q, q_proj, query, to_query, wq, qk, ...
_QUERY = re.compile(r"(to_|w)?q(uery)?(kv|k)?s?(_proj)?")


def is_self_attention(module: nn.Module) -> bool:
    """nn.MultiheadAttention, or a module with a query projection or a q/k norm pair."""
    if isinstance(module, nn.MultiheadAttention):
        return True
    names = {name for name, _ in module.named_children()}
    return {"q_norm", "k_norm"} <= names or any(_QUERY.fullmatch(n) for n in names)


def is_vit(model: nn.Module) -> bool:
    """Whether `model` is built of self-attention blocks (see the module docstring)."""
    embed = getattr(model, "patch_embed", None)
    skip = set(embed.modules()) if isinstance(embed, nn.Module) else set()
    blocks = list(dict.fromkeys(
        child for parent in model.modules()
        if isinstance(parent, (nn.Sequential, nn.ModuleList)) and parent not in skip
        for child in parent.children() if child not in skip))
    inner = {b: set(b.modules()) - {b} for b in blocks}
    attention = {m for m in model.modules() if is_self_attention(m)}
    convs = {m for m in model.modules() if isinstance(m, nn.Conv2d)}
    with_attention = {b for b in blocks if b in attention or inner[b] & attention}
    attention_blocks = [b for b in with_attention if not inner[b] & with_attention]
    in_attention = set().union(*(inner[b] for b in attention_blocks))
    conv = {b for b in blocks if b not in with_attention and b not in in_attention
            and (b in convs or inner[b] & convs)}
    conv_blocks = [b for b in conv if not any(b in inner[c] for c in conv)]
    return bool(attention_blocks) and len(attention_blocks) >= len(conv_blocks)

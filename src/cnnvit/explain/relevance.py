"""Gradient-weighted attention relevance for ViTs (Chefer, Gur & Wolf 2021).

The self-attention rule of "Generic Attention-model Explainability for Interpreting Bi-Modal
and Encoder-Decoder Transformers" (ICCV 2021), the gradient-weighted simplification of the
relevance propagation in "Transformer Interpretability Beyond Attention Visualization"
(CVPR 2021). For the target class's logit y_t, each block's attention probabilities A
(heads×T×T) are weighted by their gradient, negative contributions are clipped and the heads
averaged: Ā = mean_h((∂y_t/∂A ⊙ A)⁺). Starting from R = I (every token is relevant to
itself), each block in forward order adds what it mixes in: R ← R + Ā·R.

The map is the row of R of the token the classifier reads over the patch tokens (prefix tokens
— class, distillation, registers — dropped), reshaped to the patch grid and upsampled
bilinearly to the input size, as for attention rollout. Models that pool the patch tokens
instead of reading a class token (`global_pool="avg"`, or no class token) use the mean of the
patch-token rows. Unlike rollout the map is class-specific: by default it explains the
predicted class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.explain._common import (
    as_targets,
    check_images,
    inference_state,
    model_device,
    normalize_maps,
)
from cnnvit.explain.rollout import capture_attention, recorded_attention, token_layout, token_maps


def relevance_matrices(model: nn.Module, images: torch.Tensor,
                       targets: torch.Tensor | None = None) -> torch.Tensor:
    """The relevance matrix R (N×T×T, float32, on the model's device) of one batch.

    `targets`: a class index per image (None: the predicted class). One forward and one
    backward pass; the gradients of every image's own target logit are taken together (the
    images of a batch do not interact in eval mode), with respect to a copy of the input, so
    frozen models work and the model's state is left as it was.
    """
    device = model_device(model)
    with (inference_state(model), torch.enable_grad(),
          capture_attention(model, keep_graph=True) as captured):
        logits = model(images.detach().to(device).requires_grad_(True)).float()
        classes = logits.argmax(1) if targets is None else targets.to(device)
        if int(classes.max()) >= logits.shape[1]:
            raise CnnvitError(f"target class index {int(classes.max())} is beyond the model's "
                              f"{logits.shape[1]} outputs")
        attentions = recorded_attention(model, captured)
        score = logits.gather(1, classes[:, None]).sum()
        grads = torch.autograd.grad(score, attentions, materialize_grads=True)
    n, tokens = logits.shape[0], attentions[0].shape[-1]
    relevance = torch.eye(tokens, device=device).expand(n, tokens, tokens)
    for attn, grad in zip(attentions, grads, strict=True):
        weighted = (grad.float() * attn.detach().float()).clamp(min=0).mean(dim=1)
        relevance = relevance + weighted @ relevance
    return relevance


def relevance_maps(model: nn.Module, images: torch.Tensor,
                   targets: Sequence[int] | np.ndarray | torch.Tensor | None = None,
                   batch_size: int = 32) -> torch.Tensor:
    """Relevance maps, N×H×W float32 on the CPU, each min-max scaled to [0, 1].

    `targets`: a class index per image (None: the predicted class). `batch_size` bounds the
    images per forward/backward pass (the attention of every block is kept for the backward).
    """
    images = check_images(images)
    n = images.shape[0]
    classes = None if targets is None else as_targets(targets, n)
    size = images.shape[-2:]
    token_layout(model, size)  # a wrong input size fails before any forward pass
    maps = []
    for start in range(0, n, batch_size):
        chunk = None if classes is None else classes[start:start + batch_size]
        matrices = relevance_matrices(model, images[start:start + batch_size], chunk)
        maps.append(token_maps(model, matrices, size))
    return normalize_maps(torch.cat(maps))

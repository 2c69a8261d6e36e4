"""Explanations: Grad-CAM / Grad-CAM++, attention rollout, attention relevance (Chefer et al.
2021), faithfulness and sanity checks.

Maps are N×H×W float32 CPU tensors, each min-max scaled to [0, 1] (a constant map is zeros).

    explain(model, images, method="auto", targets=None, **kw) -> (maps, method used)
    cam_maps(model, images, targets=None, method="gradcam", layer=None, batch_size=32) -> maps
    attention_rollout(model, images, head_fusion="mean", discard_ratio=0.0, batch_size=64) -> maps
    relevance_maps(model, images, targets=None, batch_size=32) -> maps
    relevance_matrices(model, images, targets=None) -> N×T×T
    rollout_matrices(model, images, head_fusion, discard_ratio) -> ([N×T×T per block], N×T×T)
    token_layout(model, image_size=None) -> (grid_h, grid_w, num_prefix_tokens)
    target_layer(model, name=None) -> nn.Module
    deletion_insertion(model, images, maps, targets, steps=16, baseline="blur") -> dict
    random_maps(n, h, w, seed=0) -> maps     road_scores(model, images, maps, targets) -> dict
    randomization_check(model, images, method="auto", targets=None, seed=0) -> dict
"""

import importlib
from typing import Any

# public name -> the submodule it lives in; loaded on first use, so that importing
# `cnnvit.explain.methods` (the command line does) costs no torch import
_HOMES = {
    "attention_rollout": "rollout", "baseline_images": "faithfulness", "cam_maps": "cams",
    "capture_attention": "rollout", "deletion_insertion": "faithfulness", "explain": "cams",
    "random_maps": "faithfulness", "randomization_check": "sanity",
    "randomized_copy": "sanity", "relevance_maps": "relevance",
    "relevance_matrices": "relevance", "road_scores": "faithfulness", "rollout_matrices": "rollout",
    "target_layer": "cams", "token_layout": "rollout", "vit_reshape_transform": "cams",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'cnnvit.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cnnvit.explain.{_HOMES[name]}"), name)

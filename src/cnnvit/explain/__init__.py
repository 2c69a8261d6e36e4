"""Explanations: Grad-CAM / Grad-CAM++, attention rollout, faithfulness and sanity checks.

Maps are N×H×W float32 CPU tensors, each min-max scaled to [0, 1] (a constant map is zeros).

    explain(model, images, method="auto", targets=None, **kw) -> (maps, method used)
    cam_maps(model, images, targets=None, method="gradcam", layer=None, batch_size=32) -> maps
    attention_rollout(model, images, head_fusion="mean", discard_ratio=0.0, batch_size=64) -> maps
    rollout_matrices(model, images, head_fusion, discard_ratio) -> ([N×T×T per block], N×T×T)
    token_layout(model, image_size=None) -> (grid_h, grid_w, num_prefix_tokens)
    target_layer(model, name=None) -> nn.Module
    deletion_insertion(model, images, maps, targets, steps=16, baseline="blur") -> dict
    random_maps(n, h, w, seed=0) -> maps     road_scores(model, images, maps, targets) -> dict
    randomization_check(model, images, method="auto", targets=None, seed=0) -> dict
"""

from cnnvit.explain.cams import cam_maps, explain, target_layer, vit_reshape_transform
from cnnvit.explain.faithfulness import (
    baseline_images,
    deletion_insertion,
    random_maps,
    road_scores,
)
from cnnvit.explain.rollout import (
    attention_rollout,
    capture_attention,
    rollout_matrices,
    token_layout,
)
from cnnvit.explain.sanity import randomization_check, randomized_copy

__all__ = [
    "attention_rollout",
    "baseline_images",
    "cam_maps",
    "capture_attention",
    "deletion_insertion",
    "explain",
    "random_maps",
    "randomization_check",
    "randomized_copy",
    "road_scores",
    "rollout_matrices",
    "target_layer",
    "token_layout",
    "vit_reshape_transform",
]

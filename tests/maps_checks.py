"""Checks for saliency maps (Grad-CAM, Grad-CAM++, attention rollout) and inputs to make them.

Maps are min-max scaled per map, so a constant map comes back as all zeros: checking only the
shape and the [0, 1] range would accept it. `check_maps` also asks every map to vary over the
image and the maps of different images to differ.
"""

from __future__ import annotations

import torch


def square_images(n: int, chans: int, height: int, width: int | None = None,
                  seed: int = 0) -> torch.Tensor:
    """`n` images with structure: a dim, slightly noisy background and one bright square
    (a quarter of each side) in a different corner per image (top-left, bottom-right,
    top-right, bottom-left, then again)."""
    width = width or height
    gen = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, chans, height, width, generator=gen) - 1.0
    sh, sw = max(height // 4, 1), max(width // 4, 1)
    corners = [(0, 0), (height - sh, width - sw), (0, width - sw), (height - sh, 0)]
    for i in range(n):
        top, left = corners[i % len(corners)]
        x[i, :, top:top + sh, left:left + sw] = 2.0
    return x


def check_maps(maps: torch.Tensor, n: int, h: int, w: int, *, min_std: float = 0.05,
               min_mean_diff: float = 0.02, min_max_diff: float = 0.1) -> None:
    """Shape N×H×W float32, finite, in [0, 1]; each map non-constant (spans [0, 1] after the
    min-max scaling, std over pixels > `min_std`); any two maps differ (mean absolute
    difference > `min_mean_diff` and largest difference > `min_max_diff`)."""
    assert maps.shape == (n, h, w) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    flat = maps.reshape(n, -1)
    span = flat.amax(1) - flat.amin(1)
    assert (span > 0.99).all(), f"constant (all-zero) map(s): span per map {span.tolist()}"
    std = flat.std(1)
    assert (std > min_std).all(), f"near-constant map(s): std per map {std.tolist()}"
    for i in range(n):
        for j in range(i + 1, n):
            diff = (flat[i] - flat[j]).abs()
            assert diff.mean() > min_mean_diff and diff.max() > min_max_diff, (
                f"maps {i} and {j} barely differ: mean |diff| {diff.mean():.4f}, "
                f"max |diff| {diff.max():.4f}")

"""Model-randomisation sanity check (Adebayo et al. 2018): do the maps depend on the weights?

Maps of the trained model are compared with maps of a copy whose weights are all
re-initialised (full, not cascading, randomisation) for the same target classes; a high rank
correlation means the explanation barely reflects what the model learned.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import spearmanr

from cnnvit.explain._common import as_targets, check_images, predicted_classes
from cnnvit.explain.cams import explain

FLAG_THRESHOLD = 0.5


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy with every weight re-drawn, seeded (the global RNG is left untouched).

    Modules with `reset_parameters` re-initialise themselves; parameters owned by none of them
    (ViT class / register tokens, position embeddings, layer scales) are drawn from a truncated
    normal with std 0.02, timm's ViT initialisation for tokens.
    """
    clone = copy.deepcopy(model)
    cuda = sorted({p.device.index or 0 for p in clone.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        covered: set[int] = set()
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        for param in clone.parameters():
            if id(param) not in covered:
                nn.init.trunc_normal_(param, std=0.02)
    return clone


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two flattened maps; NaN when either map is constant."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def randomization_check(model: nn.Module, images: torch.Tensor, method: str = "auto",
                        targets: Sequence[int] | np.ndarray | torch.Tensor | None = None,
                        seed: int = 0, **kwargs: Any) -> dict[str, Any]:
    """Compare maps of `model` and of `randomized_copy(model, seed)` on `images`.

    `targets` default to the trained model's predictions (the same classes are explained for
    both models); `kwargs` go to `explain`. Returns `method` (used), `correlations` (N,
    Spearman, NaN where a map is constant), `mean` (NaN-ignoring mean, NaN if none defined),
    `flag` (mean > 0.5: the maps barely depend on the weights), `maps` and `randomized_maps`
    (N×H×W).
    """
    images = check_images(images)
    classes = (predicted_classes(model, images) if targets is None
               else as_targets(targets, images.shape[0]))
    maps, used = explain(model, images, method, classes, **kwargs)
    random_maps, _ = explain(randomized_copy(model, seed), images, used, classes, **kwargs)
    correlations = np.array([spearman(a, b) for a, b in zip(maps, random_maps, strict=True)])
    defined = correlations[~np.isnan(correlations)]
    mean = float(defined.mean()) if defined.size else float("nan")
    return {"method": used, "correlations": correlations, "mean": mean,
            "flag": bool(mean > FLAG_THRESHOLD), "maps": maps, "randomized_maps": random_maps}

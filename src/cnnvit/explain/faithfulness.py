"""Faithfulness of saliency maps: deletion / insertion curves (Petsiuk et al. 2018, RISE),
random-map baselines and ROAD scores (Rong et al. 2022, via pytorch-grad-cam).

Deletion replaces the most salient pixels first with a baseline and tracks the target-class
probability (a faithful map makes it fall fast: low AUC); insertion starts from the baseline
and restores the most salient pixels first (a faithful map makes it rise fast: high AUC).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms.v2.functional as TF

from cnnvit.errors import CnnvitError
from cnnvit.explain._common import as_targets, check_images, inference_state, model_device

BASELINES = ("blur", "zero", "mean")


def baseline_images(images: torch.Tensor, baseline: str = "blur") -> torch.Tensor:
    """What removed pixels become, N×C×H×W in the model's input space.

    "blur": Gaussian blur with sigma = max(1, min(H, W) / 8) px; "zero": all zeros (the
    normalisation mean, i.e. the dataset's average colour for standardised inputs); "mean":
    each image's per-channel mean.
    """
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).clone()
    if baseline == "blur":
        sigma = max(1.0, min(images.shape[-2:]) / 8)
        largest = 2 * (min(images.shape[-2:]) - 1) + 1  # reflect padding must stay inside
        kernel = min(2 * math.ceil(3 * sigma) + 1, largest)
        return TF.gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    raise CnnvitError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")


def _as_maps(maps: torch.Tensor | np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    maps = torch.as_tensor(maps)
    if tuple(maps.shape) != shape:
        raise CnnvitError(f"maps must be N×H×W = {shape}, got {tuple(maps.shape)}")
    return maps.detach().float().cpu()


def _trapezoid(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions)).sum(axis=1)


def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor | np.ndarray,
                       targets: Sequence[int] | np.ndarray | torch.Tensor, steps: int = 16,
                       baseline: str = "blur", batch_size: int = 256) -> dict[str, np.ndarray]:
    """Deletion and insertion curves of `maps` (N×H×W) for `images` (N×C×H×W, model input).

    At step s of `steps` the round(s/steps · H·W) highest-ranked pixels (all channels) are
    deleted / inserted; equal map values are ranked by pixel index (row-major), so results are
    deterministic. `batch_size` bounds the perturbed images per forward pass. Returns numpy
    arrays: `fractions` (steps+1, 0 → 1), `deletion_curve` and `insertion_curve` (N×(steps+1)
    target-class probabilities), `deletion_auc` and `insertion_auc` (N, trapezoid rule).
    """
    if steps < 1:
        raise CnnvitError(f"steps must be at least 1, got {steps}")
    images = check_images(images).detach()
    n, _, height, width = images.shape
    pixels = height * width
    maps = _as_maps(maps, (n, height, width))
    classes = as_targets(targets, n)
    order = torch.sort(maps.reshape(n, -1), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pixels).expand(n, -1))
    counts = torch.tensor([(s * pixels + steps // 2) // steps for s in range(steps + 1)])
    base = baseline_images(images, baseline)
    device = model_device(model)
    per_chunk = max(1, batch_size // (2 * (steps + 1)))
    deletion, insertion = [], []
    with inference_state(model), torch.no_grad():
        for start in range(0, n, per_chunk):
            stop = min(start + per_chunk, n)
            x = images[start:stop, None].to(device)
            b = base[start:stop, None].to(device)
            removed = (rank[start:stop, None, :] < counts[None, :, None]).to(device)
            removed = removed.reshape(stop - start, steps + 1, 1, height, width)
            batch = torch.cat([torch.where(removed, b, x), torch.where(removed, x, b)])
            probs = model(batch.flatten(0, 1)).float().softmax(dim=-1)
            probs = probs.reshape(2, stop - start, steps + 1, -1).cpu()
            index = classes[start:stop, None, None].expand(-1, steps + 1, 1)
            deletion.append(probs[0].gather(2, index)[..., 0])
            insertion.append(probs[1].gather(2, index)[..., 0])
    fractions = (counts.double() / pixels).numpy()
    deletion_curve = torch.cat(deletion).double().numpy()
    insertion_curve = torch.cat(insertion).double().numpy()
    return {
        "fractions": fractions,
        "deletion_curve": deletion_curve,
        "insertion_curve": insertion_curve,
        "deletion_auc": _trapezoid(deletion_curve, fractions),
        "insertion_auc": _trapezoid(insertion_curve, fractions),
    }


def mean_curves(result: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """The mean over the samples of `deletion_insertion`'s curves: one row per step with
    `fraction`, `deletion` and `insertion` (the figures draw these)."""
    deletion = result["deletion_curve"].mean(axis=0)
    insertion = result["insertion_curve"].mean(axis=0)
    return [{"fraction": float(f), "deletion": float(d), "insertion": float(i)}
            for f, d, i in zip(result["fractions"], deletion, insertion, strict=True)]


def random_maps(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Uninformative baseline maps: i.i.d. uniform [0, 1) per pixel, N×H×W float32, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, height, width, generator=generator)


def road_scores(model: nn.Module, images: torch.Tensor, maps: torch.Tensor | np.ndarray,
                targets: Sequence[int] | np.ndarray | torch.Tensor,
                percentiles: Sequence[int] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
                seed: int = 0) -> dict[str, np.ndarray]:
    """ROAD (remove and debias) scores, averaged over `percentiles`, per image.

    Pixels are removed by noisy linear imputation (pytorch-grad-cam; CPU, one sparse solve per
    image and percentile). `morf`: change in target probability when the most relevant pixels
    are removed (more negative = more faithful); `lerf`: the same for the least relevant
    (closer to 0 = more faithful); `combined` = (lerf − morf) / 2 (higher = more faithful).
    The imputation noise is seeded with `seed` without touching the global RNG.
    """
    from pytorch_grad_cam.metrics.road import (  # slow import (OpenCV, ttach)
        ROADLeastRelevantFirstAverage,
        ROADMostRelevantFirstAverage,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    images = check_images(images).detach()
    cams = _as_maps(maps, (images.shape[0], *images.shape[-2:])).numpy()
    classes = as_targets(targets, images.shape[0])
    target_fns = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    images = images.to(model_device(model))
    with inference_state(model), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # pytorch-grad-cam 1.5 calls np.argwhere on tensors (a NumPy 2 deprecation)
        warnings.filterwarnings("ignore", message=".*__array_wrap__", category=DeprecationWarning)
        torch.manual_seed(seed)
        morf = ROADMostRelevantFirstAverage(list(percentiles))(images, cams, target_fns, model)
        lerf = ROADLeastRelevantFirstAverage(list(percentiles))(images, cams, target_fns, model)
    morf, lerf = np.asarray(morf, dtype=np.float64), np.asarray(lerf, dtype=np.float64)
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}

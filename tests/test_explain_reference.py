"""Cross-check of `deletion_insertion` against an independent implementation: Quantus's
PixelFlipping (Bach et al. 2015).

Why they must agree: PixelFlipping sorts the attribution values in descending order, replaces
`features_in_step` features per step with a baseline value and records the target-class softmax
probability after each step, until every feature is replaced. Our deletion curve does the same
with pixels (all channels at once) ranked by the map. Configured alike, the two are the same
computation:
- a constant baseline: Quantus `perturb_baseline=0.0`, ours `baseline="zero"` (Quantus's string
  baselines are recomputed from the already perturbed input, and it has no blur);
- the same ranking: Quantus broadcasts a 1-channel map over the channels, so a pixel's channels
  share one value and sort next to each other; maps without ties between pixels (a random
  permutation) make the order unique, and `features_in_step` = channels × pixels per step
  keeps every step on a pixel boundary (Quantus requires it to divide H·W);
- the same steps: H·W / `steps` pixels per step divides evenly, so our rounded counts are exact;
- no rescaling of the maps (`normalise=False`, `abs=False`; it would not change the order);
- softmax probabilities of the target class (`softmax=True`).
Quantus's curve has no point for the intact image: ours starts with it, so ours is
[f(x), *Quantus]. Insertion restores the top pixels into the baseline, which PixelFlipping does
not do; the identity where(removed, x, 0) = x − where(removed, 0, x) (exact in floating point)
turns it into PixelFlipping of x on the model g(z) = f(x − z).
"""

import numpy as np
import pytest
import quantus
import torch
import torch.nn as nn
from scipy.integrate import trapezoid

from cnnvit.explain import deletion_insertion

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(chans: int) -> nn.Module:
    """A small seeded CNN with a sharpened head, so that its probabilities move as pixels go."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(chans, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3)).eval()
    with torch.no_grad():
        model[-1].weight.mul_(20.0)
    return model


class _Complement(nn.Module):
    """g(z) = f(x − z) for the fixed batch x: deleting pixels of x (setting them to 0) from z
    shows f the baseline image with exactly those pixels inserted."""

    def __init__(self, model: nn.Module, images: torch.Tensor) -> None:
        super().__init__()
        self.model, self.images = model, images

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(self.images - z)


def _pixel_flipping(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                    targets: torch.Tensor, steps: int) -> np.ndarray:
    chans, height, width = images.shape[1:]
    metric = quantus.PixelFlipping(features_in_step=chans * height * width // steps,
                                   perturb_baseline=0.0, normalise=False, abs=False,
                                   disable_warnings=True, display_progressbar=False)
    curve = metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(),
                   a_batch=maps[:, None].numpy(), channel_first=True, softmax=True,
                   device="cpu", batch_size=len(images))
    return np.asarray(curve, dtype=np.float64)


@pytest.mark.parametrize(("chans", "side", "steps"), [(1, 16, 16), (3, 12, 9)])
def test_deletion_and_insertion_match_quantus_pixel_flipping(chans, side, steps):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(5, chans, side, side, generator=generator)
    maps = torch.stack([torch.randperm(side * side, generator=generator).reshape(side, side)
                        for _ in range(5)]).float() / (side * side)
    model = _model(chans)
    with torch.no_grad():
        targets = model(images).argmax(1)
        start = model(images).softmax(1)[torch.arange(5), targets].double().numpy()
        blank = model(torch.zeros_like(images)).softmax(1)[torch.arange(5), targets]
    ours = deletion_insertion(model, images, maps, targets, steps=steps, baseline="zero")
    deletion = _pixel_flipping(model, images, maps, targets, steps)
    insertion = _pixel_flipping(_Complement(model, images).eval(), images, maps, targets,
                                steps)
    assert deletion.shape == insertion.shape == (5, steps)
    np.testing.assert_allclose(ours["deletion_curve"], np.c_[start, deletion], atol=1e-6)
    np.testing.assert_allclose(ours["insertion_curve"][:, 1:], insertion, atol=1e-6)
    np.testing.assert_allclose(ours["insertion_curve"][:, 0], blank.double().numpy(), atol=1e-6)
    fractions = np.linspace(0, 1, steps + 1)
    np.testing.assert_allclose(ours["fractions"], fractions)
    np.testing.assert_allclose(ours["deletion_auc"],
                               trapezoid(np.c_[start, deletion], fractions), atol=1e-6)
    # not trivially equal: the curves move, and a different map order gives other curves
    assert np.ptp(deletion, axis=1).min() > 0.05 and np.ptp(insertion, axis=1).min() > 0.05
    reversed_order = _pixel_flipping(model, images, 1 - maps, targets, steps)
    assert np.abs(reversed_order - deletion).max() > 0.05

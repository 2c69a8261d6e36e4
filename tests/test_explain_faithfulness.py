"""Deletion / insertion curves, random baselines, ROAD and the randomisation sanity check.

The honest checks train a tiny CNN (≈0.5 s) on a task whose evidence is localised: a bright
bar on noise, horizontal (class 0) or vertical (class 1), anywhere in a 16×16 image.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.explain import (
    baseline_images,
    deletion_insertion,
    explain,
    random_maps,
    randomization_check,
    randomized_copy,
    road_scores,
)
from cnnvit.models import build

pytestmark = pytest.mark.usefixtures("one_thread")


def _bars(n, generator):
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    rows, cols = torch.randint(0, 11, (2, n), generator=generator)
    for i, (label, r, c) in enumerate(zip(y.tolist(), rows.tolist(), cols.tolist(), strict=True)):
        if label:
            x[i, 0, r:r + 6, c + 2] += 2.0
        else:
            x[i, 0, r + 2, c:c + 6] += 2.0
    return x, y


@pytest.fixture(scope="module")
def bars():
    """(trained model, test images, test labels)."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = _bars(512, generator)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        idx = torch.randint(0, 512, (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x_test, y_test = _bars(24, generator)
    with torch.no_grad():
        assert (model(x_test).argmax(1) == y_test).float().mean() > 0.9
    return model, x_test, y_test


@pytest.mark.parametrize("baseline", ["blur", "zero"])
def test_gradcam_beats_random_maps(bars, baseline):
    model, x, y = bars
    maps, _ = explain(model, x, targets=y)
    cam = deletion_insertion(model, x, maps, y, baseline=baseline)
    rnd = deletion_insertion(model, x, random_maps(len(x), 16, 16, seed=0), y, baseline=baseline)
    assert cam["deletion_auc"].mean() < rnd["deletion_auc"].mean() - 0.1
    assert cam["insertion_auc"].mean() > rnd["insertion_auc"].mean() + 0.1
    inverted = deletion_insertion(model, x, 1 - maps, y, baseline=baseline)  # least salient first
    assert inverted["deletion_auc"].mean() > cam["deletion_auc"].mean()
    assert inverted["insertion_auc"].mean() < cam["insertion_auc"].mean()


@pytest.mark.parametrize("baseline", ["blur", "zero", "mean"])
def test_curve_structure(bars, baseline):
    model, x, y = bars
    x, y = x[:5], y[:5]
    maps = random_maps(5, 16, 16, seed=3)
    out = deletion_insertion(model, x, maps, y, steps=8, baseline=baseline, batch_size=20)
    assert out["fractions"].shape == (9,) and out["fractions"][0] == 0 and out["fractions"][-1] == 1
    assert (np.diff(out["fractions"]) > 0).all()
    with torch.no_grad():
        full = model(x).softmax(1)[torch.arange(5), y].double().numpy()
        base = model(baseline_images(x, baseline)).softmax(1)[torch.arange(5), y].double().numpy()
    for key, start, end in (("deletion", full, base), ("insertion", base, full)):
        curve = out[f"{key}_curve"]
        assert curve.shape == (5, 9) and ((curve >= 0) & (curve <= 1)).all()
        np.testing.assert_allclose(curve[:, 0], start, atol=1e-5)
        np.testing.assert_allclose(curve[:, -1], end, atol=1e-5)
        assert out[f"{key}_auc"].shape == (5,)
        assert ((out[f"{key}_auc"] >= 0) & (out[f"{key}_auc"] <= 1)).all()
    whole = deletion_insertion(model, x, maps, y, steps=8, baseline=baseline, batch_size=10**4)
    for key in out:
        np.testing.assert_allclose(out[key], whole[key], atol=1e-6)


def test_ties_are_broken_by_pixel_index(bars):
    model, x, y = bars
    flat = deletion_insertion(model, x[:3], torch.zeros(3, 16, 16), y[:3], steps=4)
    row_major = -torch.arange(256.0).reshape(16, 16).expand(3, -1, -1)
    ordered = deletion_insertion(model, x[:3], row_major, y[:3], steps=4)
    for key in flat:
        np.testing.assert_array_equal(flat[key], ordered[key])


def test_deletion_insertion_checks_inputs(bars):
    model, x, y = bars
    with pytest.raises(CnnvitError, match="maps must be"):
        deletion_insertion(model, x, torch.zeros(len(x), 8, 8), y)
    with pytest.raises(CnnvitError, match="unknown baseline"):
        deletion_insertion(model, x, torch.zeros(len(x), 16, 16), y, baseline="noise")
    with pytest.raises(CnnvitError, match="one target class per image"):
        deletion_insertion(model, x, torch.zeros(len(x), 16, 16), y[:2])


def test_baselines_and_random_maps():
    x = torch.randn(2, 3, 12, 12)
    for name in ("blur", "zero", "mean"):
        assert baseline_images(x, name).shape == x.shape
    mean = baseline_images(x, "mean")
    torch.testing.assert_close(mean[:, :, 5, 7], x.mean((2, 3)))
    maps = random_maps(4, 6, 5, seed=1)
    assert maps.shape == (4, 6, 5) and maps.min() >= 0 and maps.max() < 1
    assert torch.equal(maps, random_maps(4, 6, 5, seed=1))
    assert not torch.equal(maps, random_maps(4, 6, 5, seed=2))


def test_road_scores(bars):
    model, x, y = bars
    x, y = x[:6], y[:6]
    maps, _ = explain(model, x, targets=y)
    cam = road_scores(model, x, maps, y, percentiles=(20, 50, 80), seed=0)
    rnd = road_scores(model, x, random_maps(6, 16, 16, seed=0), y, percentiles=(20, 50, 80))
    assert all(v.shape == (6,) and np.isfinite(v).all() for v in cam.values())
    np.testing.assert_allclose(cam["combined"], (cam["lerf"] - cam["morf"]) / 2)
    assert cam["morf"].mean() < rnd["morf"].mean()  # removing the bar hurts more
    again = road_scores(model, x, maps, y, percentiles=(20, 50, 80), seed=0)
    for key in cam:
        np.testing.assert_array_equal(cam[key], again[key])


def test_randomization_check(bars):
    model, x, _ = bars
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    result = randomization_check(model, x[:8], seed=0)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG untouched
    assert result["method"] == "gradcam"
    corr = result["correlations"]
    assert corr.shape == (8,) and np.isfinite(corr).all() and (np.abs(corr) <= 1).all()
    assert result["mean"] == pytest.approx(corr.mean())
    assert result["flag"] is False  # the trained bar detector's maps depend on its weights
    assert result["maps"].shape == result["randomized_maps"].shape == (8, 16, 16)
    again = randomization_check(model, x[:8], seed=0)
    np.testing.assert_array_equal(again["correlations"], corr)
    other = randomization_check(model, x[:8], seed=1)
    assert not np.array_equal(other["correlations"], corr)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_randomized_copy_redraws_every_weight():
    torch.manual_seed(7)
    vit = build("vit-small-input", 3, image_size=8, depth=1)
    with torch.no_grad():  # stand-in for training: no weight keeps its initial value
        for p in vit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    clone = randomized_copy(vit, seed=0)
    for (name, p), q in zip(vit.named_parameters(), clone.parameters(), strict=True):
        assert not torch.equal(p, q), name
    again = randomized_copy(vit, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(clone.parameters(), again.parameters(),
                                                 strict=True))

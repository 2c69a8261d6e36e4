"""Training on a fraction of the training split: stratified, nested, seeded, the same for every
model; validation and test untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnvit import config
from cnnvit.data.subsets import nested_subset
from cnnvit.engine.setup import load_config, load_data, prepare
from cnnvit.errors import ConfigError

LABELS = np.repeat(np.arange(4), [50, 30, 15, 5])  # unbalanced classes


@settings(max_examples=40, deadline=None)
@given(small=st.floats(0.01, 1.0), large=st.floats(0.01, 1.0), seed=st.integers(0, 2**31))
def test_subsets_are_nested_and_stratified(small, large, seed):
    small, large = sorted((small, large))
    a, b = nested_subset(LABELS, small, seed), nested_subset(LABELS, large, seed)
    assert set(a) <= set(b)  # nested
    for subset, fraction in ((a, small), (b, large)):
        counts = np.bincount(LABELS[subset], minlength=4)
        full = np.bincount(LABELS)
        assert (counts >= 1).all()  # every class kept
        assert (np.abs(counts - fraction * full) <= 0.5 + (counts == 1)).all()  # its share
        assert len(set(subset)) == len(subset) and (np.diff(subset) > 0).all()


def test_subsets_depend_only_on_labels_fraction_and_seed():
    assert np.array_equal(nested_subset(LABELS, 0.3, 7), nested_subset(LABELS, 0.3, 7))
    assert not np.array_equal(nested_subset(LABELS, 0.3, 7), nested_subset(LABELS, 0.3, 8))
    assert np.array_equal(nested_subset(LABELS, 1.0, 7), np.arange(len(LABELS)))


def test_every_model_trains_on_the_same_images_and_val_test_stay_whole():
    full = load_data(load_config(None, {"dataset": "digits"}))
    setups = [prepare(load_config(None, {"dataset": "digits", "model": m, "train_fraction": 0.25}),
                      full) for m in ("resnet18-small", "vit-small-input")]
    a, b = (s.dataset for s in setups)
    assert np.array_equal(a["train"].images, b["train"].images)
    assert len(a["train"]) == pytest.approx(0.25 * len(full["train"]), abs=10)
    for split in ("val", "test"):
        assert np.array_equal(a[split].images, full[split].images)
    assert "trained on 0.25 of the training split" in a.info.split_note
    assert setups[0].resolved()["split_sizes"]["train"] == len(a["train"])


@pytest.mark.parametrize("value", [0, -0.5, 1.5])
def test_a_fraction_outside_0_1_is_refused(value):
    with pytest.raises(ConfigError, match="'train_fraction' is a share of the training split"):
        config.apply_overrides(config.Config(), {"train_fraction": value})

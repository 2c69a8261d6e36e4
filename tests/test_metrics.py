"""Tests for cnnvit.metrics: every metric is checked against scikit-learn called directly."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from cnnvit import metrics
from cnnvit.engine.evaluate import predictions_frame
from cnnvit.io import atomic_write_json
from cnnvit.metrics import MetricsWarning, compute, validate_inputs

REQUIRED_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "auc_macro",
    "auc_micro",
    "loss",
    "ece",
    "class_names",
    "per_class",
    "confusion_matrix",
}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def make_data(seed: int, k: int, n: int = 300, signal: float = 1.5):
    """Random labels (every class present) and informative-but-noisy softmax probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % k).astype(np.int64)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    return y, softmax(logits)


def names(k: int) -> list[str]:
    return [f"c{i}" for i in range(k)]


def sample_labels(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """Draw y_i ~ Categorical(p_i) for each row."""
    u = rng.random(len(p))
    y = (u[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return np.minimum(y, p.shape[1] - 1).astype(np.int64)


def assert_plain(obj) -> None:
    """Recursively assert only plain Python JSON types (no numpy scalars, no NaN)."""
    if isinstance(obj, dict):
        for key, v in obj.items():
            assert isinstance(key, str)
            assert_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_plain(v)
    elif isinstance(obj, float):
        assert type(obj) is float and math.isfinite(obj)
    else:
        assert obj is None or type(obj) in (int, str, bool), type(obj)


# --------------------------------------------------------------------------- vs scikit-learn


@pytest.mark.parametrize("k", [2, 3, 8, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn(seed: int, k: int) -> None:
    y, p = make_data(seed, k)
    labels = list(range(k))
    pred = p.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricsWarning)  # nothing is undefined here
        m = compute(y, p, names(k))

    assert REQUIRED_KEYS <= set(m)
    approx = pytest.approx
    assert m["accuracy"] == approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == approx(balanced_accuracy_score(y, pred))
    for avg in ("macro", "micro"):
        kw = dict(labels=labels, average=avg, zero_division=0)
        assert m[f"precision_{avg}"] == approx(precision_score(y, pred, **kw))
        assert m[f"recall_{avg}"] == approx(recall_score(y, pred, **kw))
        assert m[f"f1_{avg}"] == approx(f1_score(y, pred, **kw))
    # single-label: micro P = R = F1 = accuracy
    assert m["f1_micro"] == approx(m["accuracy"])
    assert m["loss"] == approx(log_loss(y, p, labels=labels))
    assert m["mcc"] == approx(matthews_corrcoef(y, pred))
    assert m["kappa"] == approx(cohen_kappa_score(y, pred))

    onehot = np.eye(k)[y]
    if k == 2:
        assert m["auc_macro"] == approx(roc_auc_score(y, p[:, 1]))
        assert "top2_accuracy" not in m
    else:
        assert m["auc_macro"] == approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
        assert m["top2_accuracy"] == approx(top_k_accuracy_score(y, p, k=2, labels=labels))
    assert m["auc_micro"] == approx(roc_auc_score(onehot, p, average="micro"))

    cm = confusion_matrix(y, pred, labels=labels)
    assert m["confusion_matrix"] == cm.tolist()
    assert m["class_names"] == names(k)
    assert len(m["per_class"]) == k
    prec = precision_score(y, pred, labels=labels, average=None, zero_division=0)
    rec = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    f1 = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    for i, row in enumerate(m["per_class"]):
        assert row["class"] == f"c{i}" and row["index"] == i
        assert row["support"] == int((y == i).sum())
        assert row["precision"] == approx(prec[i])
        assert row["recall"] == approx(rec[i])
        assert row["f1"] == approx(f1[i])
        assert row["accuracy"] == approx(cm[i, i] / cm[i].sum())
        assert row["auc"] == approx(roc_auc_score(y == i, p[:, i]))
    assert m["precision_macro"] == approx(np.mean([r["precision"] for r in m["per_class"]]))
    json.dumps(m, allow_nan=False)
    assert_plain(m)


def test_metrics_distinguish_good_from_bad_predictions() -> None:
    y, p = make_data(3, 5, signal=4.0)
    good = compute(y, p, names(5))
    bad = compute(y, np.roll(p, 1, axis=1), names(5))  # systematically wrong class
    assert good["accuracy"] > 0.8 and bad["accuracy"] < 0.1
    assert good["auc_macro"] > 0.9 and bad["auc_macro"] < 0.6
    assert good["loss"] < bad["loss"]


# --------------------------------------------------------------------------- ECE


def test_ece_hand_computed() -> None:
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.65, 0.35], [0.55, 0.45]])
    y = np.array([0, 0, 0, 1])
    # conf .9 correct -> (.8,1]; .7 wrong & .65 correct -> (.6,.8]; .55 wrong -> (.4,.6]
    # ECE = (1*|1-.9| + 2*|.5-.675| + 1*|0-.55|) / 4 = 0.25
    m = compute(y, p, ["a", "b"], n_bins=5)
    assert m["ece"] == pytest.approx(0.25)
    assert [b["count"] for b in m["ece_bins"]] == [0, 0, 1, 2, 1]
    assert m["ece_bins"][3]["confidence"] == pytest.approx(0.675)
    assert m["ece_bins"][3]["accuracy"] == pytest.approx(0.5)
    assert m["ece_bins"][0]["confidence"] is None and m["ece_bins"][0]["accuracy"] is None
    assert m["ece_bins"][-1]["upper"] == 1.0
    # one bin: |mean accuracy - mean confidence| = |0.5 - 0.7|
    assert compute(y, p, ["a", "b"], n_bins=1)["ece"] == pytest.approx(0.2)


def test_ece_confidence_one_lands_in_last_bin_and_perfect_is_zero() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ece, bins = metrics.expected_calibration_error(np.array([0, 1]), p, n_bins=10)
    assert ece == 0.0
    assert bins[-1]["count"] == 2 and sum(b["count"] for b in bins) == 2


def test_ece_bins_are_left_open_right_closed() -> None:
    # Guo et al. bins are (lo, hi]: a confidence exactly on an edge goes to the lower bin
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    ece, bins = metrics.expected_calibration_error(np.array([0, 1]), p, n_bins=2)
    assert [b["count"] for b in bins] == [1, 1]
    assert ece == pytest.approx((abs(1 - 0.5) + abs(1 - 0.75)) / 2)


def reference_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    conf, correct = p.max(1), (p.argmax(1) == y)
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += abs(correct[sel].mean() - conf[sel].mean()) * sel.sum() / len(y)
    return total


@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_ece_matches_reference_loop(n_bins: int) -> None:
    y, p = make_data(7, 4, n=500)
    assert compute(y, p, names(4), n_bins=n_bins)["ece"] == pytest.approx(
        reference_ece(y, p, n_bins)
    )


def test_ece_small_when_calibrated_large_when_overconfident() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(4, 0.7), size=20_000)
    y = sample_labels(rng, p)  # labels drawn from p: perfectly calibrated by construction
    assert compute(y, p, names(4))["ece"] < 0.03
    sharp = p**4 / (p**4).sum(axis=1, keepdims=True)  # same argmax, overconfident
    assert compute(y, sharp, names(4))["ece"] > 0.1


# --------------------------------------------------------------------------- undefined cases


def test_absent_class_warns_and_is_defined() -> None:
    rng = np.random.default_rng(1)
    k = 4
    y = rng.permutation(np.arange(200) % 3).astype(np.int64)  # class 3 ('dog') never occurs
    logits = rng.normal(size=(200, k)) + 2.0 * np.eye(k)[y]
    logits[:, 3] -= 10.0  # 'dog' is never predicted either: only labels=range(K) makes it count
    p = softmax(logits)
    with pytest.warns(MetricsWarning, match="dog"):
        m = compute(y, p, ["ant", "bee", "cat", "dog"])
    json.dumps(m, allow_nan=False)
    assert_plain(m)
    row = m["per_class"][3]
    assert row["support"] == 0 and row["accuracy"] is None and row["auc"] is None
    assert row["recall"] == 0.0 and row["f1"] == 0.0
    pred = p.argmax(1)
    assert row["precision"] == pytest.approx(
        precision_score(y, pred, labels=[3], average=None, zero_division=0)[0]
    )
    # the absent class counts (as 0 recall) in macro averages over labels=range(K)
    present_recall = recall_score(y, pred, labels=[0, 1, 2], average=None)
    assert m["recall_macro"] == pytest.approx(present_recall.sum() / 4)
    assert m["recall_macro"] == pytest.approx(
        recall_score(y, pred, labels=list(range(k)), average="macro", zero_division=0)
    )
    assert m["f1_macro"] == pytest.approx(
        f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=0)
    )
    # ... but macro AUC is over the present classes only
    per = [roc_auc_score(y == c, p[:, c]) for c in range(3)]
    assert m["auc_macro"] == pytest.approx(np.mean(per))
    assert [r["auc"] for r in m["per_class"][:3]] == pytest.approx(per)
    assert m["auc_micro"] == pytest.approx(roc_auc_score(np.eye(k)[y], p, average="micro"))
    assert m["loss"] == pytest.approx(log_loss(y, p, labels=list(range(k))))
    assert m["confusion_matrix"][3] == [0, 0, 0, 0]


def test_single_class_split_gives_null_auc() -> None:
    y = np.zeros(5, dtype=np.int64)
    p = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.5, 0.5]])
    for task in ("multi-class", "binary-class"):
        with pytest.warns(MetricsWarning) as record:
            m = compute(y, p, ["neg", "pos"], task=task)
        messages = " | ".join(str(w.message) for w in record)
        assert "only one class" in messages and "'pos'" in messages
        assert m["auc_macro"] is None and m["auc_micro"] is None
        assert all(r["auc"] is None for r in m["per_class"])
        assert m["accuracy"] == pytest.approx(0.8)
        assert m["per_class"][1]["accuracy"] is None
        assert '"auc_macro": null' in json.dumps(m, allow_nan=False)


def test_degenerate_constant_predictions_are_json_safe() -> None:
    # all true labels and all predictions are class 0: kappa is 0/0 -> null, not NaN
    y = np.zeros(4, dtype=np.int64)
    p = np.tile([0.7, 0.2, 0.1], (4, 1))
    with pytest.warns(MetricsWarning):
        m = compute(y, p, names(3))
    json.dumps(m, allow_nan=False)
    assert_plain(m)


# --------------------------------------------------------------------------- binary task


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_auc_is_positive_class_auc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=150)
    p1 = np.clip(0.3 * y + rng.random(150) * 0.7, 0, 1)
    p = np.column_stack([1 - p1, p1])
    m = compute(y, p, ["benign", "malignant"], task="binary-class")
    expected = roc_auc_score(y, p[:, 1])
    assert m["auc_macro"] == pytest.approx(expected)
    assert m["auc_micro"] == pytest.approx(expected)
    assert m["task"] == "binary-class"
    # the multi-class micro AUC over both one-hot columns is a different quantity
    mc = compute(y, p, ["benign", "malignant"], task="multi-class")
    assert mc["auc_micro"] == pytest.approx(roc_auc_score(np.eye(2)[y], p, average="micro"))


def test_bad_task_and_binary_with_wrong_k() -> None:
    y, p = make_data(0, 3)
    with pytest.raises(ValueError, match="task"):
        compute(y, p, names(3), task="multi-label")
    with pytest.raises(ValueError, match="K=2"):
        compute(y, p, names(3), task="binary-class")


# --------------------------------------------------------------------------- JSON / frame


def test_atomic_write_json_roundtrip(tmp_path) -> None:
    y, p = make_data(4, 3)
    m = compute(y, p, names(3))
    out = tmp_path / "sub" / "metrics.json"
    atomic_write_json(out, m)
    text = out.read_text()
    assert json.loads(text) == m
    assert text.startswith("{\n  ")  # indent=2
    assert [f.name for f in out.parent.iterdir()] == ["metrics.json"]  # no temp files left
    # a failed write (NaN) leaves the previous file intact and no temp file behind
    with pytest.raises(ValueError):
        atomic_write_json(out, {"accuracy": float("nan")})
    assert json.loads(out.read_text()) == m
    assert [f.name for f in out.parent.iterdir()] == ["metrics.json"]


def test_predictions_frame() -> None:
    y, p = make_data(5, 4, n=20)
    df = predictions_frame(y, p)
    assert isinstance(df, pd.DataFrame)
    probs = ["prob_0", "prob_1", "prob_2", "prob_3"]
    assert list(df.columns) == ["index", "label", "prediction", *probs]
    assert len(df) == 20
    assert df["index"].tolist() == list(range(20))
    assert df["label"].tolist() == y.tolist()
    assert df["prediction"].tolist() == p.argmax(1).tolist()
    np.testing.assert_allclose(df[[f"prob_{j}" for j in range(4)]].to_numpy(), p)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        (np.zeros((2, 2), dtype=int), np.full((2, 2), 0.5), "1-D"),
        (np.zeros(2, dtype=int), np.full(2, 0.5), "2-D"),
        (np.zeros(3, dtype=int), np.full((2, 2), 0.5), "disagree"),
        (np.zeros(0, dtype=int), np.zeros((0, 2)), "empty"),
        (np.zeros(2, dtype=int), np.ones((2, 1)), "at least 2"),
        (np.array([0, 2]), np.full((2, 2), 0.5), "out of range"),
        (np.array([0, -1]), np.full((2, 2), 0.5), "out of range"),
        (np.array([0.5, 1.0]), np.full((2, 2), 0.5), "integer"),
        (np.zeros(2, dtype=int), np.array([[0.5, 0.51], [0.5, 0.5]]), "sum to 1"),
        (np.zeros(2, dtype=int), np.array([[2.0, -1.0], [0.5, 0.5]]), r"\[0, 1\]"),
        (np.zeros(2, dtype=int), np.array([[np.nan, 0.5], [0.5, 0.5]]), "NaN"),
    ],
)
def test_validation_errors(y, p, match) -> None:
    with pytest.raises(ValueError, match=match):
        validate_inputs(y, p)
    with pytest.raises(ValueError, match=match):
        compute(y, p, names(p.shape[-1]) if p.ndim == 2 else ["a", "b"])


def test_validation_class_names_and_tolerance() -> None:
    p = np.array([[0.5, 0.5005], [0.3, 0.7]])  # within 1e-3 of summing to 1: accepted
    y_out, p_out = validate_inputs(np.array([1.0, 0.0]), p)
    assert y_out.dtype == np.int64 and y_out.tolist() == [1, 0]
    np.testing.assert_allclose(p_out.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="class names"):
        compute(np.array([0, 1]), p, ["only-one"])
    with pytest.raises(ValueError, match="n_bins"):
        compute(np.array([0, 1]), p, ["a", "b"], n_bins=0)


# --------------------------------------------------------------------------- properties


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(2, 6),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    concentration=st.sampled_from([0.05, 1.0, 20.0]),
)
def test_any_valid_input_gives_bounded_json_safe_metrics(k, n, seed, concentration) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, concentration), size=n)
    y = rng.integers(0, k, size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricsWarning)
        m = compute(y, p, names(k))
    json.dumps(m, allow_nan=False)
    assert_plain(m)
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "f1_micro", "ece"):
        assert 0.0 <= m[key] <= 1.0
    for key in ("auc_macro", "auc_micro"):
        assert m[key] is None or 0.0 <= m[key] <= 1.0
    assert m["loss"] >= 0.0
    assert sum(map(sum, m["confusion_matrix"])) == n
    assert sum(r["support"] for r in m["per_class"]) == n
    assert sum(b["count"] for b in m["ece_bins"]) == n


def test_chance_test_is_the_one_sided_binomial_against_the_majority_rate():
    from math import comb

    from cnnvit.metrics import chance_test

    rate, p = chance_test(0.5, 20, [12, 4, 4])  # 10 of 20 right; always "class 0" gets 12
    assert rate == 0.6
    assert p == pytest.approx(sum(comb(20, k) * 0.6**k * 0.4**(20 - k) for k in range(10, 21)))
    assert p > 0.05
    assert chance_test(0.95, 20, [12, 4, 4])[1] < 0.01

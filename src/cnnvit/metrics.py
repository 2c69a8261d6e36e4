"""Classification metrics over (labels, predicted probabilities), built on scikit-learn.

All functions are pure: they take ``y_true`` (int array of shape ``(N,)``) and ``probs``
(float array of shape ``(N, K)`` whose rows sum to 1) and return plain Python values that
serialise with ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    log_loss,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.preprocessing import label_binarize

__all__ = [
    "TASKS",
    "MetricsWarning",
    "compute",
    "expected_calibration_error",
    "validate_inputs",
]

TASKS = ("multi-class", "binary-class")
PROB_SUM_TOL = 1e-3
_LOG_EPS = 1e-15


class MetricsWarning(UserWarning):
    """A metric is undefined for this split (absent class, single class, ...)."""


def _float(x: Any) -> float | None:
    """Plain float, or None when not finite (JSON has no NaN/inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def validate_inputs(
    y_true: Any, probs: Any, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, label range and that rows of ``probs`` sum to 1 (tolerance 1e-3).

    Returns ``(y_true as int64, probs as float64 renormalised to sum exactly to 1)``.
    Raises ValueError with a clear message on invalid input.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D of shape (N,), got shape {y.shape}")
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D of shape (N, K), got shape {p.shape}")
    if y.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and probs disagree on N: {y.shape[0]} labels vs {p.shape[0]} rows of probs"
        )
    n, k = p.shape
    if n == 0:
        raise ValueError("cannot compute metrics on an empty split (N=0)")
    if k < 2:
        raise ValueError(f"probs must have at least 2 columns (classes), got K={k}")
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"got {len(class_names)} class names for K={k} probability columns")
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"y_true must contain integer class indices, got dtype {y.dtype}")
    if not np.issubdtype(p.dtype, np.number) or p.dtype.kind == "c":
        raise ValueError(f"probs must be a real numeric array, got dtype {p.dtype}")
    y = y.astype(np.int64)
    p = p.astype(np.float64)
    bad = (y < 0) | (y >= k)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"labels out of range [0, {k}): {int(bad.sum())} bad, first y_true[{i}]={int(y[i])}"
        )
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    if p.min() < -PROB_SUM_TOL or p.max() > 1 + PROB_SUM_TOL:
        raise ValueError(f"probs must lie in [0, 1], got range [{p.min():.4g}, {p.max():.4g}]")
    sums = p.sum(axis=1)
    dev = np.abs(sums - 1.0)
    if dev.max() > PROB_SUM_TOL:
        i = int(dev.argmax())
        raise ValueError(
            f"rows of probs must sum to 1 (tolerance {PROB_SUM_TOL}); row {i} sums to "
            f"{sums[i]:.6g} (did you pass logits instead of softmax probabilities?)"
        )
    p = np.clip(p, 0.0, None)
    p = p / p.sum(axis=1, keepdims=True)
    return y, p


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15
) -> tuple[float, list[dict[str, Any]]]:
    """Top-1 expected calibration error (Guo et al., 2017) with equal-width bins.

    ECE = sum_b |acc(b) - conf(b)| * |b| / N, with bins ``(lo, hi]`` over [0, 1].
    Returns ``(ece, bins)`` where each bin is a dict with lower/upper/confidence/accuracy/count
    (confidence and accuracy are None for empty bins) for a reliability diagram.
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds edges[i] < conf <= edges[i+1]; conf == 0 (impossible for rows summing to 1)
    # would fall into bin 0.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    n = len(conf)
    ece = float(np.abs(acc_sum - conf_sum).sum() / n)
    bins = []
    for i in range(n_bins):
        c = int(count[i])
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "confidence": float(conf_sum[i] / c) if c else None,
                "accuracy": float(acc_sum[i] / c) if c else None,
                "count": c,
            }
        )
    return ece, bins


def _aucs(
    y: np.ndarray, p: np.ndarray, task: str, names: Sequence[str], notes: list[str]
) -> tuple[float | None, float | None, list[float | None]]:
    """Return (auc_macro, auc_micro, per-class auc) with undefined values as None."""
    k = p.shape[1]
    present = np.unique(y)
    per_class: list[float | None] = [None] * k
    if len(present) < 2:
        notes.append(
            f"only one class ({names[int(present[0])]!r}) present in y_true: "
            "ROC AUC is undefined, reported as null"
        )
        return None, None, per_class
    if task == "binary-class":
        auc = float(roc_auc_score(y, p[:, 1]))
        return auc, auc, [auc, auc]

    onehot = label_binarize(y, classes=list(range(k)))
    if k == 2:  # label_binarize yields one column for two classes
        onehot = np.column_stack([1 - onehot[:, 0], onehot[:, 0]])
    cols = [int(c) for c in present]
    for c, a in zip(cols, roc_auc_score(onehot[:, cols], p[:, cols], average=None), strict=True):
        per_class[c] = _float(a)
    if len(cols) == k and k > 2:
        auc_macro = roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k)))
    else:  # OvR macro over the present classes only
        auc_macro = roc_auc_score(onehot[:, cols], p[:, cols], average="macro")
    auc_micro = roc_auc_score(onehot, p, average="micro")
    return _float(auc_macro), _float(auc_micro), per_class


def compute(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    task: str = "multi-class",
    n_bins: int = 15,
) -> dict[str, Any]:
    """Compute classification metrics; the prediction is ``argmax(probs)``.

    ``task`` is "multi-class" or "binary-class" (K must be 2; AUCs are those of the positive
    class ``probs[:, 1]``). Classes absent from ``y_true`` still count in macro averages
    (``labels=range(K)``, ``zero_division=0``) but are excluded from macro AUC; a
    MetricsWarning names them. Returns a JSON-serialisable dict of plain Python values.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    y, p = validate_inputs(y_true, probs, class_names)
    n, k = p.shape
    if task == "binary-class" and k != 2:
        raise ValueError(f"task 'binary-class' needs K=2 probability columns, got K={k}")
    names = [str(c) for c in class_names]
    labels = list(range(k))
    pred = p.argmax(axis=1)
    absent = [i for i in labels if not np.any(y == i)]
    notes = [
        "class(es) absent from y_true (support 0; per-class accuracy and AUC undefined): "
        + ", ".join(f"{names[i]!r} (index {i})" for i in absent)
    ] if absent else []

    with warnings.catch_warnings():
        # Undefined cases are reported once, by our own MetricsWarning, below.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        out: dict[str, Any] = {
            "task": task,
            "n": int(n),
            "num_classes": int(k),
            "accuracy": _float(accuracy_score(y, pred)),
            "balanced_accuracy": _float(balanced_accuracy_score(y, pred)),
        }
        out.update(_averaged(y, pred, k))
        auc_macro, auc_micro, auc_per_class = _aucs(y, p, task, names, notes)
        out["auc_macro"] = auc_macro
        out["auc_micro"] = auc_micro
        out["loss"] = _float(log_loss(y, np.clip(p, _LOG_EPS, 1.0), labels=labels))
        out["ece"], out["ece_bins"] = expected_calibration_error(y, p, n_bins)
        if k > 2:
            out["top2_accuracy"] = _float(top_k_accuracy_score(y, p, k=2, labels=labels))
        out["mcc"] = _float(matthews_corrcoef(y, pred))
        out["kappa"] = _float(cohen_kappa_score(y, pred, labels=labels))
        out["class_names"] = names
        out["per_class"] = _per_class(y, pred, names, auc_per_class)
        cm = confusion_matrix(y, pred, labels=labels)
    out["confusion_matrix"] = [[int(v) for v in row] for row in cm]
    for msg in notes:
        warnings.warn(msg, MetricsWarning, stacklevel=2)
    return out


def _averaged(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float | None]:
    """Macro and micro precision, recall and F1 over all `k` classes."""
    out: dict[str, float | None] = {}
    for avg in ("macro", "micro"):
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, pred, labels=list(range(k)), average=avg, zero_division=0
        )
        out |= {f"precision_{avg}": _float(prec), f"recall_{avg}": _float(rec),
                f"f1_{avg}": _float(f1)}
    return out


def _per_class(y: np.ndarray, pred: np.ndarray, names: list[str],
               auc: list[float | None]) -> list[dict[str, Any]]:
    """Precision, recall, F1, support, accuracy (= recall) and AUC of every class."""
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=list(range(len(names))), average=None, zero_division=0
    )
    return [
        {
            "class": name,
            "index": i,
            "precision": _float(prec[i]),
            "recall": _float(rec[i]),
            "f1": _float(f1[i]),
            "support": int(support[i]),
            "accuracy": _float(rec[i]) if support[i] > 0 else None,
            "auc": auc[i],
        }
        for i, name in enumerate(names)
    ]


CHANCE_ALPHA = 0.05  # a validation accuracy not above chance at this level: "did not learn"


def chance_test(accuracy: float, n: int, supports: Sequence[int]) -> tuple[float, float]:
    """Whether an accuracy on n samples beats always predicting the majority class: (the
    majority class's share of the class supports, one-sided exact binomial p of reaching
    `accuracy` at that rate).

    A model whose p is not below CHANCE_ALPHA cannot be told apart from one that did not learn.
    """
    from scipy.stats import binomtest

    rate = max(supports) / sum(supports)
    correct = min(n, max(0, round(accuracy * n)))
    return rate, float(binomtest(correct, n, rate, alternative="greater").pvalue)


def chance_of(m: dict[str, Any]) -> tuple[float, float] | None:
    """`chance_test` of a metrics dict (`accuracy`, `n`, `per_class` supports, as
    `compute` writes them); None when it lacks the counts."""
    supports = [e.get("support") or 0 for e in m.get("per_class") or []]
    if not m.get("n") or m.get("accuracy") is None or not any(supports):
        return None
    return chance_test(float(m["accuracy"]), int(m["n"]), supports)

"""Vectorised bootstrap of the test metrics, defined exactly as `cnnvit.metrics.compute`.

A resample of N test samples is a row of multiplicities (how often each sample was drawn), so
a metric of a resample is a weighted metric of the original samples: one matrix product gives
accuracy, macro-F1, ECE and loss for a whole chunk of resamples, and one cumulative sum over
the once-sorted scores gives each class's AUC (a weighted Mann–Whitney count, ties counted ½).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

METRICS = ("accuracy", "f1_macro", "auc_macro", "ece", "loss")
ECE_BINS = 15  # cnnvit.metrics.compute's default n_bins (a test keeps the two equal)
_LOG_EPS = 1e-15  # metrics.compute clips probabilities to [1e-15, 1] before the log loss
_CHUNK_CELLS = 4_000_000  # resamples × samples held at once (32 MB of float64)


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The seeded bootstrap draws, in chunks of shape (rows, n) of sample indices."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def multiplicities(indices: np.ndarray, n: int) -> np.ndarray:
    """(rows, n) draws → (rows, n) int32 counts: how often each sample is in each resample."""
    rows = len(indices)
    flat = (indices + np.arange(rows)[:, None] * n).ravel()
    return np.bincount(flat, minlength=rows * n).astype(np.int32).reshape(rows, n)


def _ranked(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, ...]:
    """One class's scores sorted once: (negatives, positives) as sample indices in score order,
    and for each positive how many negatives sort below its tie group (lo) and up to its end
    (hi), so that C[lo] + C[hi] over cumulative negative weights C is twice the Mann–Whitney
    count of that positive."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], positive[order]
    new_group = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    ends = np.r_[starts[1:], len(s)]
    neg_before = np.r_[0, np.cumsum(~pos)]
    return order[~pos], order[pos], neg_before[starts[group]][pos], neg_before[ends[group]][pos]


class WeightedMetrics:
    """One model's test predictions, prepared to score many resamples at once."""

    def __init__(self, labels: np.ndarray, probs: np.ndarray, task: str = "multi-class") -> None:
        n, k = probs.shape
        self.n, self.k = n, k
        pred = probs.argmax(axis=1)
        correct = pred == labels
        conf = probs.max(axis=1)
        bins = np.searchsorted(np.linspace(0.0, 1.0, ECE_BINS + 1)[1:-1], conf, side="left")
        onehot = labels[:, None] == np.arange(k)
        nll = -np.log(np.clip(probs[np.arange(n), labels], _LOG_EPS, 1.0))
        # columns: correct | true positives per class | support | predicted count |
        #          (correct − confidence) per ECE bin | log loss
        self.linear = np.column_stack([
            correct, onehot & correct[:, None], onehot, pred[:, None] == np.arange(k),
            (bins[:, None] == np.arange(ECE_BINS)) * (correct - conf)[:, None], nll,
        ]).astype(np.float64)
        classes = [1] if task == "binary-class" else range(k)
        self.ranked = [_ranked(probs[:, c], labels == c) for c in classes]

    def __call__(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric of every resample: (rows, n) multiplicities → {metric: (rows,)}."""
        s = counts.astype(np.float64) @ self.linear / counts.shape[1]
        k = self.k
        tp, support, predicted = s[:, 1:1 + k], s[:, 1 + k:1 + 2 * k], s[:, 1 + 2 * k:1 + 3 * k]
        den = support + predicted
        f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0).mean(axis=1)
        return {"accuracy": s[:, 0], "f1_macro": f1, "auc_macro": self.auc_macro(counts),
                "ece": np.abs(s[:, 1 + 3 * k:-1]).sum(axis=1), "loss": s[:, -1]}

    def auc_macro(self, counts: np.ndarray) -> np.ndarray:
        """One-vs-rest AUC averaged over the classes present in each resample (NaN when fewer
        than two are); a binary task's AUC is that of class 1."""
        aucs = np.full((len(counts), len(self.ranked)), np.nan)
        for j, (neg, pos, lo, hi) in enumerate(self.ranked):
            cum = np.zeros((len(counts), len(neg) + 1), dtype=np.int32)  # exact: at most n
            np.cumsum(counts[:, neg], axis=1, dtype=np.int32, out=cum[:, 1:])
            w_pos = counts[:, pos]
            pairs = w_pos.sum(axis=1, dtype=np.int64) * cum[:, -1]
            twice_wins = np.einsum("ij,ij->i", w_pos, cum[:, lo] + cum[:, hi], dtype=np.int64)
            np.divide(0.5 * twice_wins, pairs, out=aucs[:, j], where=pairs > 0)
        defined = ~np.isnan(aucs)
        n_defined = defined.sum(axis=1)
        total = np.where(defined, aucs, 0.0).sum(axis=1)
        return np.divide(total, n_defined, out=np.full(len(counts), np.nan), where=n_defined > 0)

    def point(self) -> dict[str, float]:
        """The metrics of the test set itself (every sample once)."""
        return {m: float(v[0]) for m, v in self(np.ones((1, self.n), np.int32)).items()}


def bootstrap(models: Sequence[WeightedMetrics], resamples: int,
              seed: int) -> list[dict[str, np.ndarray]]:
    """Every metric of every model on the same seeded resamples (so differences between the
    models are paired): one {metric: (resamples,)} per model. All models share one test set."""
    n = models[0].n
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in models]
    for indices in resample_indices(n, resamples, seed):
        counts = multiplicities(indices, n)
        for model, out in zip(models, parts, strict=True):
            out.append(model(counts))
    return [{m: np.concatenate([c[m] for c in chunks]) for m in METRICS} for chunks in parts]

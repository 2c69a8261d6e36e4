"""How sure the comparison is: bootstrap intervals, pairwise tests and seed-level t-tests.

    compute(runs, final) -> the dict written as results/statistics.json:
        settings   confidence, resamples, seed, split, method, multiple_comparisons, ...
        intervals  per model × seed × metric: value and its percentile-bootstrap interval
        pairs      per pair of models on the same test samples (per seed) × metric: the
                   difference a − b, its paired-bootstrap interval, a test, Holm-adjusted p;
                   with several seeds also a paired t-test over the seeds (seed null)
        seeds      per model with several seeds × metric: mean, std and t-interval over seeds

Accuracy pairs are tested with McNemar's exact test, the other metrics with the paired
bootstrap itself; every test's p is Holm-adjusted within its family (one seed, one metric,
one test over all model pairs) and a difference is significant when that p < 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from cnnvit.compare import collect
from cnnvit.compare.resample import ECE_BINS, METRICS, WeightedMetrics, bootstrap

CONFIDENCE = 0.95
ALPHA = 0.05
RESAMPLES = 2000
SEED = 0
MCNEMAR, PAIRED_BOOTSTRAP, OVER_SEEDS = "mcnemar-exact", "paired-bootstrap", "paired-t-over-seeds"
COST_RATIOS = (("parameters", "parameters_ratio"), ("flops_per_image", "flops_ratio"))
CSV_COLUMNS = ("kind", "model", "a", "b", "seed", "metric", "value", "difference", "mean", "std",
               "low", "high", "p_value", "p_adjusted", "test", "significant", "n", "n_seeds",
               "a_only_correct", "b_only_correct", "seeds_significant", "parameters_ratio",
               "flops_ratio")


@dataclass(frozen=True)
class Sample:
    """One model × seed on its test set: point value and bootstrap values of every metric."""

    name: str
    seed: int | None
    test_set: bytes  # the test samples' identity (index and labels): pairs need the same
    correct: np.ndarray
    value: dict[str, float]
    resampled: dict[str, np.ndarray]


def _num(x: Any) -> float | None:
    """A plain finite float, or None (strict JSON has no NaN)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE
                        ) -> tuple[float | None, float | None]:
    """The central `confidence` interval of the bootstrap values (undefined ones dropped)."""
    v = values[~np.isnan(values)]
    if not len(v):
        return None, None
    low, high = np.quantile(v, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def bootstrap_p(differences: np.ndarray, observed: float) -> float | None:
    """Two-sided bootstrap p of "no difference": twice the share of resampled differences at
    or beyond 0 on the side opposite the observed one, with the (count + 1) / (B + 1)
    correction (1 when nothing was observed), so a small p always backs the observed sign."""
    d = differences[~np.isnan(differences)]
    if not len(d) or not math.isfinite(observed):
        return None
    if observed == 0:
        return 1.0
    against = int((d <= 0).sum()) if observed > 0 else int((d >= 0).sum())
    return min(1.0, 2 * (against + 1) / (len(d) + 1))


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test: (two-sided binomial p on the discordant pairs, a-only-correct,
    b-only-correct); p = 1 when the models never disagree."""
    a_only = int((a_correct & ~b_correct).sum())
    b_only = int((b_correct & ~a_correct).sum())
    if a_only + b_only == 0:
        return 1.0, 0, 0
    return float(st.binomtest(a_only, a_only + b_only, 0.5).pvalue), a_only, b_only


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values; a None (no test) stays None and does not count."""
    tested = [i for i, p in enumerate(p_values) if p is not None]
    p = np.array([p_values[i] for i in tested], dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out: list[float | None] = [None] * len(p_values)
    for i, value in zip(order, adjusted, strict=True):
        out[tested[i]] = float(value)
    return out


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
               ) -> tuple[float | None, float | None, float | None, float | None, int]:
    """(mean, sample std, low, high, n) with a Student-t interval on the mean; NaNs dropped."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    n = len(v)
    if n < 2:
        return (_num(v[0]) if n else None), None, None, None, n
    mean, std = float(v.mean()), float(v.std(ddof=1))
    half = float(st.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half, n


def paired_t_p(differences: np.ndarray) -> float | None:
    """Two-sided paired t-test p on per-seed differences (None with fewer than two)."""
    d = differences[~np.isnan(differences)]
    if len(d) < 2:
        return None
    if np.all(d == d[0]):  # no spread: t is 0 (no difference) or infinite
        return 1.0 if d[0] == 0 else 0.0
    return float(st.ttest_1samp(d, 0.0).pvalue)


def _samples(preds: dict[tuple[str, int | None], collect.Predictions], resamples: int,
             seed: int) -> list[Sample]:
    """Bootstrap every model × seed; those on the same test samples share the resamples."""
    groups: dict[bytes, list[tuple[str, int | None]]] = {}
    for key, p in preds.items():
        groups.setdefault(p.index.tobytes() + b"|" + p.labels.tobytes(), []).append(key)
    found = {}
    for test_set, keys in groups.items():
        models = [WeightedMetrics(preds[k].labels, preds[k].probs, preds[k].task) for k in keys]
        for key, model, boot in zip(keys, models, bootstrap(models, resamples, seed),
                                    strict=True):
            correct = preds[key].probs.argmax(axis=1) == preds[key].labels
            found[key] = Sample(key[0], key[1], test_set, correct, model.point(), boot)
    return [found[key] for key in preds]  # run order


def _interval_rows(samples: list[Sample], confidence: float) -> list[dict[str, Any]]:
    return [{"model": s.name, "seed": s.seed, "metric": m, "value": _num(s.value[m]),
             **dict(zip(("low", "high"), percentile_interval(s.resampled[m], confidence),
                        strict=True)), "n": len(s.correct)}
            for s in samples for m in METRICS]


def _ratios(costs: pd.DataFrame, a: str, b: str) -> dict[str, float | None]:
    """a's parameters and FLOPs per image over b's (None when either is unknown)."""
    out: dict[str, float | None] = {}
    for column, key in COST_RATIOS:
        va, vb = (_num(costs.at[m, column]) if m in costs.index else None for m in (a, b))
        out[key] = va / vb if va is not None and vb is not None and va > 0 and vb > 0 else None
    return out


def _pair(a: str, b: str, seed: int | None, metric: str, difference: float | None,
          interval: tuple[float | None, float | None], p: float | None, test: str,
          **extra: Any) -> dict[str, Any]:
    """A pairs row in schema order; `_adjust` fills p_adjusted and significant."""
    return {"a": a, "b": b, "seed": seed, "metric": metric, "difference": _num(difference),
            "low": interval[0], "high": interval[1], "p_value": p, "p_adjusted": None,
            "test": test, "significant": False, **extra}


def _pair_rows(samples: list[Sample], costs: pd.DataFrame,
               confidence: float) -> list[dict[str, Any]]:
    """Per seed, every two models on the same test samples: each metric's difference a − b
    with its paired-bootstrap interval; McNemar for accuracy, bootstrap p for the others."""
    rows = []
    for a, b in combinations(samples, 2):
        if a.seed != b.seed or a.test_set != b.test_set:
            continue
        p_mcnemar, a_only, b_only = mcnemar(a.correct, b.correct)
        extra: dict[str, Any] = {"n": len(a.correct), **_ratios(costs, a.name, b.name)}
        for m in METRICS:
            diff = a.resampled[m] - b.resampled[m]
            p: float | None
            if m == "accuracy":
                p, test = p_mcnemar, MCNEMAR
                counts = {"a_only_correct": a_only, "b_only_correct": b_only}
            else:
                p = bootstrap_p(diff, a.value[m] - b.value[m])
                test, counts = PAIRED_BOOTSTRAP, {}
            rows.append(_pair(a.name, b.name, a.seed, m, a.value[m] - b.value[m],
                              percentile_interval(diff, confidence), p, test, **counts, **extra))
    return rows


def _seeded(test: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Test rows of each model with several seeds, indexed by seed."""
    seeded = test[test["seed"].notna()]
    return {str(m): g.set_index("seed") for m, g in seeded.groupby("model", sort=False)
            if len(g) > 1}


def _seed_rows(test: pd.DataFrame, confidence: float) -> list[dict[str, Any]]:
    rows = []
    for model, g in _seeded(test).items():
        for m in METRICS:
            mean, std, low, high, n = t_interval(g[m].to_numpy(np.float64), confidence)
            rows.append({"model": model, "metric": m, "mean": mean, "std": std, "low": low,
                         "high": high, "n_seeds": n})
    return rows


def _seed_pair_rows(test: pd.DataFrame, costs: pd.DataFrame,
                    confidence: float) -> list[dict[str, Any]]:
    """Every two models sharing two or more seeds: paired t-test on the per-seed differences."""
    rows = []
    seeded = _seeded(test)
    for a, b in combinations(seeded, 2):
        shared = seeded[a].index.intersection(seeded[b].index)
        if len(shared) < 2:
            continue
        for m in METRICS:
            d = (seeded[a].loc[shared, m] - seeded[b].loc[shared, m]).to_numpy(np.float64)
            mean, _, low, high, n = t_interval(d, confidence)
            rows.append(_pair(a, b, None, m, mean, (low, high), paired_t_p(d), OVER_SEEDS,
                              n_seeds=n, **_ratios(costs, a, b)))
    return rows


def _adjust(pairs: list[dict[str, Any]]) -> bool:
    """Holm-adjust each family (seed, metric, test) and mark significance; True when some
    family has more than one test (so the adjustment changed something)."""
    families: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in pairs:
        families.setdefault((row["seed"], row["metric"], row["test"]), []).append(row)
    for rows in families.values():
        for row, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
            row |= {"p_adjusted": p, "significant": p is not None and p < ALPHA}
    for row in pairs:
        if row["test"] == OVER_SEEDS:  # how many single seeds agreed
            row["seeds_significant"] = sum(
                r["significant"] for r in pairs if r["seed"] is not None
                and (r["a"], r["b"], r["metric"]) == (row["a"], row["b"], row["metric"]))
    return any(len(rows) > 1 for rows in families.values())


def compute(runs: list[collect.ModelRun], final: pd.DataFrame, *, resamples: int = RESAMPLES,
            seed: int = SEED, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """statistics.json's content, from the models' predictions_test.csv (intervals, pairs)
    and final_comparison's test rows (seed-level statistics, cost ratios)."""
    preds = {(r.name, r.seed): p for r in runs if (p := collect.read_predictions(r)) is not None}
    test = final[final["split"] == "test"]
    costs = test.groupby("model", sort=False)[[c for c, _ in COST_RATIOS]].mean()
    samples = _samples(preds, resamples, seed)
    pairs = _pair_rows(samples, costs, confidence) + _seed_pair_rows(test, costs, confidence)
    multiple = _adjust(pairs)
    settings = {"confidence": confidence, "resamples": resamples, "seed": seed, "split": "test",
                "method": "percentile", "multiple_comparisons": "holm" if multiple else "none",
                "alpha": ALPHA, "ece_bins": ECE_BINS,
                "holm_family": "all model pairs of one seed, metric and test"}
    return {"settings": settings, "intervals": _interval_rows(samples, confidence),
            "pairs": pairs, "seeds": _seed_rows(test, confidence),
            "missing_predictions": [{"model": r.name, "seed": r.seed} for r in runs
                                    if (r.name, r.seed) not in preds]}


def frame(statistics: dict[str, Any], mode: str) -> pd.DataFrame:
    """statistics.csv: the intervals, pairs and seeds rows in one table, `kind` says which."""
    rows = [{"kind": kind, **row} for kind, key in (("interval", "intervals"), ("pair", "pairs"),
                                                     ("seed", "seeds"))
            for row in statistics[key]]
    df = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    for column in ("seed", "n", "n_seeds", "a_only_correct", "b_only_correct",
                   "seeds_significant"):
        df[column] = df[column].astype("Int64")
    return df.assign(mode=mode)

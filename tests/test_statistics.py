"""Tests for cnnvit.compare's statistics: every vectorised number against a direct reference."""

from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from cnnvit import metrics
from cnnvit.compare import compare
from cnnvit.compare.resample import (
    ECE_BINS,
    METRICS,
    WeightedMetrics,
    multiplicities,
    resample_indices,
)
from cnnvit.compare.statistics import (
    bootstrap_p,
    holm,
    mcnemar,
    paired_t_p,
    percentile_interval,
    t_interval,
)
from cnnvit.compare.verdicts import WINS, Verdicts
from tests.test_compare import CNN, CNN_COST, CNN_TEST, VIT, make_run, write_model

CLASSES = ["a", "b", "c", "d"]


def dyadic_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Probabilities in eighths (many ties; exact under renormalisation)."""
    return rng.multinomial(8, np.ones(k) / k, size=n) / 8


def sklearn_macro_auc(y: np.ndarray, p: np.ndarray, task: str) -> float | None:
    """Macro AUC the way metrics.compute asks scikit-learn for it."""
    present = np.unique(y)
    if len(present) < 2:
        return None
    if task == "binary-class":
        return float(roc_auc_score(y, p[:, 1]))
    if len(present) == p.shape[1] > 2:
        return float(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))


def explicit_resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.concatenate(list(resample_indices(n, resamples, seed)))


def test_ece_bins_are_metrics_compute_default():
    assert inspect.signature(metrics.compute).parameters["n_bins"].default == ECE_BINS


def test_multiplicities_count_the_draws():
    idx = explicit_resamples(7, 5, 3)
    counts = multiplicities(idx, 7)
    assert counts.shape == (5, 7) and (counts.sum(axis=1) == 7).all()
    for row, draws in zip(counts, idx, strict=True):
        assert row.tolist() == np.bincount(draws, minlength=7).tolist()


@pytest.mark.parametrize("task,k,dyadic", [("multi-class", 4, True), ("multi-class", 4, False),
                                           ("multi-class", 2, True), ("binary-class", 2, True)])
def test_vectorised_metrics_match_compute_and_sklearn_on_resamples(task, k, dyadic):
    rng = np.random.default_rng(k + dyadic)
    n = 40
    y = rng.integers(0, k, n)
    if k == 4:  # a rare class: absent from some resamples (macro over the present ones)
        y[y == 3] = 0
        y[:2] = 3
    p = dyadic_probs(rng, n, k) if dyadic else rng.dirichlet(np.ones(k), n)
    idx = explicit_resamples(n, 60, 7)
    got = WeightedMetrics(y, p, task)(multiplicities(idx, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, draw in enumerate(idx):
            ref = metrics.compute(y[draw], p[draw], CLASSES[:k], task=task)
            for m in ("accuracy", "f1_macro", "ece", "loss"):
                assert got[m][i] == pytest.approx(ref[m], abs=1e-12), (m, i)
            auc = sklearn_macro_auc(y[draw], p[draw], task)
            assert (np.isnan(got["auc_macro"][i]) if auc is None
                    else got["auc_macro"][i] == pytest.approx(auc, abs=1e-12)), i


def test_point_values_are_metrics_compute():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 300), rng.dirichlet(np.ones(4) * 0.5, 300)
    ref = metrics.compute(y, p, CLASSES)
    point = WeightedMetrics(y, p).point()
    assert point == pytest.approx({m: ref[m] for m in METRICS}, abs=1e-12)


def _predictions(run: Path, model: str) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(run / "models" / model / "predictions_test.csv")
    return df["label"].to_numpy(), df[[f"prob_{j}" for j in range(3)]].to_numpy()


def _rows(stats: dict, key: str, **match) -> list[dict]:
    return [r for r in stats[key] if all(r.get(k) == v for k, v in match.items())]


def test_intervals_and_paired_differences_match_an_explicit_loop(tmp_path):
    run = make_run(tmp_path)
    stats = json.loads(compare(run, resamples=80, seed=5)["statistics_json"].read_text())
    (y, pa), (_, pb) = _predictions(run, CNN), _predictions(run, VIT)
    names = ["basophil", "eosinophil", "neutrophil"]
    per_draw = {m: [] for m in METRICS}
    diffs = {m: [] for m in METRICS}
    for draw in explicit_resamples(len(y), 80, 5):
        a, b = (metrics.compute(y[draw], p[draw], names) for p in (pa, pb))
        for m in METRICS:
            per_draw[m].append(a[m])
            diffs[m].append(a[m] - b[m])
    for m in METRICS:
        (row,) = _rows(stats, "intervals", model=CNN, metric=m)
        assert [row["low"], row["high"]] == pytest.approx(np.percentile(per_draw[m], [2.5, 97.5]))
        (pair,) = _rows(stats, "pairs", metric=m)
        assert (pair["a"], pair["b"], pair["seed"]) == (CNN, VIT, None)
        assert [pair["low"], pair["high"]] == pytest.approx(np.percentile(diffs[m], [2.5, 97.5]))
        if m != "accuracy":
            assert pair["p_value"] == pytest.approx(
                bootstrap_p(np.array(diffs[m]), pair["difference"]))


def test_interval_agrees_with_scipy_bootstrap(tmp_path):
    run = make_run(tmp_path)
    stats = json.loads(compare(run)["statistics_json"].read_text())
    y, p = _predictions(run, VIT)
    correct = (p.argmax(axis=1) == y).astype(float)
    ref = st.bootstrap((correct,), np.mean, n_resamples=2000, method="percentile",
                       rng=np.random.default_rng(1)).confidence_interval
    (row,) = _rows(stats, "intervals", model=VIT, metric="accuracy")
    assert row["value"] == correct.mean()
    assert [row["low"], row["high"]] == pytest.approx([ref.low, ref.high], abs=0.005)


def test_percentile_interval_and_bootstrap_p_edges():
    assert percentile_interval(np.full(4, np.nan)) == (None, None)
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)
    assert bootstrap_p(np.zeros(99), 0.0) == 1.0  # identical models
    assert bootstrap_p(np.ones(99), 0.5) == pytest.approx(2 / 100)  # never ≤ 0: smallest p
    assert bootstrap_p(np.ones(99), -0.5) == 1.0  # resamples contradict the observed sign
    assert bootstrap_p(np.r_[-np.ones(9), np.ones(90)], 1.0) == pytest.approx(2 * 10 / 100)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    # 7 samples only a gets right, 2 only b, 5 both, 3 neither
    a = np.array([1] * 7 + [0] * 2 + [1] * 5 + [0] * 3, bool)
    b = np.array([0] * 7 + [1] * 2 + [1] * 5 + [0] * 3, bool)
    pmf = [math.comb(9, i) / 2**9 for i in range(10)]
    expected = sum(q for q in pmf if q <= pmf[7] * (1 + 1e-9))  # two-sided: as likely or less
    assert expected == pytest.approx(2 * sum(pmf[:3]))
    assert mcnemar(a, b) == (pytest.approx(expected), 7, 2)
    assert mcnemar(b, a)[0] == pytest.approx(expected)
    assert mcnemar(a, a) == (1.0, 0, 0)
    assert mcnemar(np.array([1, 0], bool), np.array([0, 1], bool))[0] == 1.0


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005, None, 0.2]
    # sorted 0.005 0.01 0.03 0.04 0.2 (m = 5): ×5 ×4 ×3 ×2 ×1, then a running maximum
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, None, 0.2])
    tested = [q for q in p if q is not None]
    order = sorted(tested)
    m = len(order)
    for q, adjusted in zip(p, holm(p), strict=True):
        if q is None:
            continue
        i = order.index(q)
        direct = max(min(1.0, (m - j) * order[j]) for j in range(i + 1))
        assert adjusted == pytest.approx(direct)
        # rejected at 5 % ⇔ every p up to its rank is below α / (m − rank)
        assert (adjusted < 0.05) == all(order[j] < 0.05 / (m - j) for j in range(i + 1))
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6]) and holm([0.7]) == [0.7]
    assert holm([0.5, 0.9, 0.8]) == pytest.approx([1.0, 1.0, 1.0])


def test_t_interval_and_paired_t_are_scipys():
    v = [0.95, 0.97, 0.96, 0.99]
    mean, std, low, high, n = t_interval(v)
    ref = st.t.interval(0.95, 3, loc=np.mean(v), scale=st.sem(v))
    assert (mean, std, n) == (pytest.approx(np.mean(v)), pytest.approx(np.std(v, ddof=1)), 4)
    assert (low, high) == pytest.approx(ref)
    assert t_interval([0.9]) == (0.9, None, None, None, 1)
    a, b = np.array([0.96, 0.95, 0.97]), np.array([0.94, 0.95, 0.93])
    assert paired_t_p(a - b) == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert paired_t_p(np.array([0.01])) is None
    assert paired_t_p(np.zeros(3)) == 1.0


def test_deterministic_and_seeded(tmp_path):
    run = make_run(tmp_path)
    first = compare(run)["statistics_json"].read_text()
    assert compare(run)["statistics_json"].read_text() == first
    other = json.loads(compare(run, seed=1)["statistics_json"].read_text())
    assert other["settings"]["seed"] == 1
    assert _rows(other, "intervals", model=CNN, metric="auc_macro")[0]["low"] != \
        _rows(json.loads(first), "intervals", model=CNN, metric="auc_macro")[0]["low"]


def _no_nan(constant: str) -> None:
    raise AssertionError(f"{constant} in strict JSON")


def test_schema_json_and_csv(tmp_path):
    paths = compare(make_run(tmp_path))
    stats = json.loads(paths["statistics_json"].read_text(), parse_constant=_no_nan)
    assert {k: stats["settings"][k] for k in ("confidence", "resamples", "seed", "split",
                                              "method", "multiple_comparisons")} == {
        "confidence": 0.95, "resamples": 2000, "seed": 0, "split": "test",
        "method": "percentile", "multiple_comparisons": "none"}
    assert len(stats["intervals"]) == 2 * len(METRICS) and stats["seeds"] == []
    assert set(stats["intervals"][0]) == {"model", "seed", "metric", "value", "low", "high", "n"}
    acc = _rows(stats, "pairs", metric="accuracy")[0]
    assert {"a", "b", "seed", "metric", "difference", "low", "high", "p_value", "p_adjusted",
            "test", "significant"} <= set(acc)
    assert acc["test"] == "mcnemar-exact" and acc["p_adjusted"] == acc["p_value"]
    assert acc["parameters_ratio"] == pytest.approx(CNN_COST["parameters"] / 203_000)
    assert acc["difference"] == pytest.approx(0.025) and acc["significant"] is True
    assert {r["test"] for r in stats["pairs"] if r["metric"] != "accuracy"} == {
        "paired-bootstrap"}
    df = pd.read_csv(paths["statistics_csv"])
    assert df["kind"].value_counts().to_dict() == {"interval": 10, "pair": 5}
    assert (df["mode"] == "full").all() and df.columns[-1] == "mode"


def three_models(root: Path) -> Path:
    """The two-model fixture plus a third, mid-accuracy model the size of the CNN."""
    run = make_run(root)
    write_model(run / "models" / "deit-tiny", "deit-tiny", {**CNN_TEST, "accuracy": 0.975},
                CNN_COST)
    return run


def test_three_models_holm(tmp_path):
    paths = compare(three_models(tmp_path))
    stats = json.loads(paths["statistics_json"].read_text())
    assert stats["settings"]["multiple_comparisons"] == "holm"
    for metric in METRICS:
        rows = _rows(stats, "pairs", metric=metric)
        assert len(rows) == 3
        assert [r["p_adjusted"] for r in rows] == pytest.approx(holm([r["p_value"] for r in rows]))
        assert all(r["significant"] == (r["p_adjusted"] < 0.05) for r in rows)
    text = paths["summary"].read_text()
    assert "Holm" in text and "## Every pair of models (test)" in text
    assert "### deit-tiny vs resnet18-small" in text
    assert "Size: deit-tiny has 1.0× the parameters and 1.0× the FLOPs per image of " \
           "resnet18-small." in text
    assert_wording_follows_statistics(text, stats)


def test_seeds_pairs_per_seed_and_t_test_over_seeds(tmp_path):
    paths = compare(make_run(tmp_path, seeds=(1, 2, 3)))
    stats = json.loads(paths["statistics_json"].read_text())
    per_seed = _rows(stats, "pairs", metric="accuracy", test="mcnemar-exact")
    assert sorted(r["seed"] for r in per_seed) == [1, 2, 3]
    (over,) = _rows(stats, "pairs", metric="accuracy", test="paired-t-over-seeds")
    final = pd.read_csv(paths["final_comparison"]).query("split == 'test'")
    acc = final.pivot(index="seed", columns="model", values="accuracy")
    d = acc[CNN] - acc[VIT]
    assert over["seed"] is None and over["n_seeds"] == 3
    assert over["difference"] == pytest.approx(d.mean())
    assert over["p_value"] == pytest.approx(st.ttest_rel(acc[CNN], acc[VIT]).pvalue)
    assert over["significant"] == (over["p_value"] < 0.05)
    assert over["seeds_significant"] == sum(r["significant"] for r in per_seed)
    (seed_row,) = _rows(stats, "seeds", model=CNN, metric="accuracy")
    assert (seed_row["mean"], seed_row["std"]) == (pytest.approx(acc[CNN].mean()),
                                                   pytest.approx(acc[CNN].std(ddof=1)))
    text = paths["summary"].read_text()
    assert "paired t-test over 3 seeds" in text and "## Across seeds" in text
    assert_wording_follows_statistics(text, stats)


def assert_wording_follows_statistics(text: str, stats: dict) -> None:
    """A winner is named on a metric exactly where statistics.json marks it significant."""
    verdicts = Verdicts(stats)
    models = list(dict.fromkeys(r["model"] for r in stats["intervals"]))
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            for metric, phrase in WINS.items():
                row = verdicts.find(a, b, metric)
                assert row is not None
                winner = verdicts.winner(row)
                claims = [f"**{x}** {phrase} {y}" in text for x, y in ((a, b), (b, a))]
                if winner is None:
                    assert not any(claims), (a, b, metric)
                else:
                    assert claims == [winner == a, winner == b], (a, b, metric)
    assert "stronger" not in text.lower() and "better than" not in text


def test_summary_wording_follows_the_statistics(tmp_path):
    for name, cnn in (("significant", CNN_TEST), ("close", {**CNN_TEST, "accuracy": 0.963})):
        paths = compare(make_run(tmp_path / name, cnn=cnn))
        stats = json.loads(paths["statistics_json"].read_text())
        text = paths["summary"].read_text()
        (acc,) = _rows(stats, "pairs", metric="accuracy")
        assert acc["significant"] is (name == "significant")
        assert ("**resnet18-small** is more accurate than vit-small-input" in text) is \
            acc["significant"]
        assert_wording_follows_statistics(text, stats)
        assert "- Calibration (test ECE, lower is better, with its 95 % interval): " \
               "resnet18-small " in text


def test_fairness_warning_only_beyond_four_times(tmp_path):
    run = make_run(tmp_path)
    assert "\n⚠ resnet18-small and vit-small-input differ more than 4×" in \
        compare(run)["summary"].read_text()
    for path in (run / "models").glob("*/summary.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "parameters": 1_000_000,
                                    "flops_per_image": 3_000_000 if CNN in str(path)
                                    else 1_000_000}))
    text = compare(run)["summary"].read_text()
    assert "⚠" not in text
    assert "resnet18-small has 1.0× the parameters and 3.0× the FLOPs per image of " \
           "vit-small-input" in text


def test_missing_predictions_mean_no_verdict(tmp_path):
    run = make_run(tmp_path)
    (run / "models" / VIT / "predictions_test.csv").unlink()
    paths = compare(run)
    stats = json.loads(paths["statistics_json"].read_text())
    assert stats["missing_predictions"] == [{"model": VIT, "seed": None}]
    assert stats["pairs"] == [] and len(stats["intervals"]) == len(METRICS)
    text = paths["summary"].read_text()
    assert "not tested (no predictions_test.csv for both), no verdict." in text
    assert "Note: no predictions_test.csv for vit-small-input" in text
    assert "**" not in text.split("## Cost")[0] and "more accurate" not in text

"""Learning curves: test accuracy against the number of training images, and where the curves
cross only when the paired tests say so.

Reads the models of `DIR/models/` (the whole training split) and of each
`DIR/curves/fraction_<f>/models/` (`cnnvit run --train-fractions`); writes
`results/learning_curve.csv` (per model, seed and size: accuracy with its Wilson interval at
`CONFIDENCE`, macro-F1) and `results/learning_curve_tests.csv` (per pair, seed and size:
McNemar's exact test on the shared test set, Holm-adjusted over the sizes of that pair and
seed).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from cnnvit import fmt
from cnnvit.compare import collect
from cnnvit.compare.statistics import ALPHA, CONFIDENCE, holm, mcnemar
from cnnvit.rundir import ModelDir, RunDir


def _point(run: collect.ModelRun, fraction: float) -> dict[str, Any]:
    test = run.metrics["test"]
    n = int(test["n"])
    low, high = st.binomtest(round(test["accuracy"] * n), n).proportion_ci(
        CONFIDENCE, method="wilson")
    _, resolved = ModelDir(run.path).read_config()
    return {"model": run.name, "seed": run.seed, "fraction": fraction,
            "train_images": int(resolved["split_sizes"]["train"]),
            "accuracy": test["accuracy"], "accuracy_low": low, "accuracy_high": high,
            "f1_macro": test["f1_macro"]}


def _runs(run_dir: RunDir) -> dict[float, list[collect.ModelRun]]:
    runs = {f: collect.discover(r) for f, r in run_dir.curve_runs().items()}
    return {**runs, 1.0: collect.discover(run_dir)}


def learning_curve(run_dir: RunDir) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(points, tests) of the run's learning curve, or None when it trained no fractions."""
    if not run_dir.curve_runs():
        return None
    by_fraction = _runs(run_dir)
    points = pd.DataFrame([_point(r, f) for f, runs in by_fraction.items() for r in runs])
    points = points.sort_values(["model", "seed", "train_images"], na_position="first")
    return points.reset_index(drop=True), _tests(by_fraction)


def _tests(by_fraction: dict[float, list[collect.ModelRun]]) -> pd.DataFrame:
    """McNemar's test for every pair of models of one seed at every size, Holm-adjusted over
    the sizes of each pair and seed."""
    rows = []
    for fraction, runs in by_fraction.items():
        correct = {(r.name, r.seed): c for r in runs if (c := _correct(r)) is not None}
        for (a, seed), (b, seed_b) in itertools.combinations(sorted(correct, key=str), 2):
            if seed == seed_b:
                p, a_only, b_only = mcnemar(correct[a, seed], correct[b, seed])
                rows.append({"model_a": a, "model_b": b, "seed": seed, "fraction": fraction,
                             "a_only_correct": a_only, "b_only_correct": b_only, "p": p})
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "seed", "fraction",
                                        "a_only_correct", "b_only_correct", "p"])
    frame["p_holm"] = frame.groupby(["model_a", "model_b", "seed"], dropna=False)["p"].transform(
        lambda p: holm(list(p)))
    return frame.sort_values(["model_a", "model_b", "seed", "fraction"],
                             na_position="first").reset_index(drop=True)


def _correct(run: collect.ModelRun) -> np.ndarray | None:
    preds = collect.read_predictions(run)
    return None if preds is None else preds.probs.argmax(1) == preds.labels


def crossover_sentences(points: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """One sentence per pair of models: where one overtakes the other, only between two sizes
    where the paired tests (every seed, Holm-adjusted) favour each in turn; else that they do
    not separate, or which one leads."""
    sizes = points.groupby("fraction")["train_images"].min()
    sentences = []
    for (a, b), pair in tests.groupby(["model_a", "model_b"]):
        signs = {}
        for fraction, rows in pair.groupby("fraction"):
            favour = np.sign(rows["b_only_correct"] - rows["a_only_correct"])  # +1: b better
            significant = rows["p_holm"] < ALPHA
            agree = significant.all() and len(set(favour)) == 1
            signs[float(fraction)] = int(favour.iloc[0]) if agree else 0
        sentences.append(_sentence(str(a), str(b), signs, sizes))
    return sentences


def _sentence(a: str, b: str, signs: dict[float, int], sizes: pd.Series) -> str:
    order = sorted(signs)
    n = {f: fmt.count(int(sizes[f])) for f in order}
    for i, j in itertools.pairwise([f for f in order if signs[f]]):
        if signs[i] != signs[j]:
            early, late = (a, b) if signs[i] < 0 else (b, a)
            return (f"{late} overtakes {early} between {n[i]} and {n[j]} training images "
                    f"(paired McNemar tests, Holm-adjusted, α = {ALPHA:g}).")
    leads = [f for f in order if signs[f]]
    if not leads:
        return (f"The learning curves of {a} and {b} do not separate at any training-set size "
                f"({', '.join(n[f] for f in order)} images): no paired test is significant.")
    leader = b if signs[leads[0]] > 0 else a
    return (f"{leader} is ahead at {', '.join(n[f] for f in leads)} training images and the "
            "curves do not cross where the tests can tell.")

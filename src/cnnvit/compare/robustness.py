"""Robustness to corruptions, from each model's `predictions_robustness.npz` (the robustness
stage): the tables and what they support saying.

    tables(runs) -> {"robustness": ..., "robustness_summary": ..., "robustness_tests": ...}
                    or None when no model has robustness predictions

- robustness: per model, seed, corruption and severity (0 = clean, one row): test accuracy,
  macro-F1, and the drop from clean accuracy;
- robustness_summary: per model and seed: clean accuracy, mean corruption accuracy (mCA: the
  mean over corruptions and severities 1–5), relative robustness (mCA ÷ clean accuracy), the
  mean drop and the corruption that costs most;
- robustness_tests: per pair of models (same seed) and corruption, at the middle severity:
  McNemar's exact test of the accuracies on the shared corrupted test set, and a paired
  bootstrap of the difference of the drops from clean (is one model hurt more?), each
  Holm-adjusted over the corruptions of that pair and seed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from cnnvit import fmt
from cnnvit.compare import collect
from cnnvit.compare.resample import multiplicities, resample_indices
from cnnvit.compare.statistics import (
    ALPHA,
    RESAMPLES,
    SEED,
    bootstrap_p,
    holm,
    mcnemar,
    percentile_interval,
)
from cnnvit.errors import CnnvitError
from cnnvit.rundir import ModelDir

MIDDLE = 3  # the severity the paired tests compare at
NAMES = ("robustness", "robustness_summary", "robustness_tests")


@dataclass(frozen=True)
class Corrupted:
    """One model × seed's predictions on the clean and the corrupted test sets."""

    name: str
    seed: int | None
    classes: int
    labels: np.ndarray  # (N,)
    clean: np.ndarray  # (N,) predicted classes
    predictions: np.ndarray  # (corruptions, severities, N)
    corruptions: list[str]
    severities: list[int]
    families: dict[str, str]
    reference: str


def read(runs: list[collect.ModelRun]) -> list[Corrupted]:
    """The robustness predictions of every model that has them."""
    out = []
    for run in runs:
        path = ModelDir(run.path).robustness
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                options = json.loads(str(f["options"]))
                out.append(Corrupted(run.name, run.seed, len(run.metrics["test"]["per_class"]),
                                     f["labels"], f["clean"], f["predictions"],
                                     list(options["corruptions"]),
                                     list(options["severities"]), dict(options["families"]),
                                     str(options["reference"])))
        except (OSError, ValueError, KeyError) as e:
            raise CnnvitError(f"{path}: unreadable ({e}); run `cnnvit robustness "
                              f"{Path(run.path).parents[1]} --force` to make it again") from e
    return out


def tables(runs: list[collect.ModelRun]) -> dict[str, pd.DataFrame] | None:
    """The three robustness tables (see the module docstring), or None without robustness
    predictions."""
    models = read(runs)
    if not models:
        return None
    table = pd.DataFrame([row for m in models for row in _rows(m)])
    return {"robustness": table, "robustness_summary": _summary(table),
            "robustness_tests": _tests(models)}


def _rows(m: Corrupted) -> list[dict]:
    def scores(pred: np.ndarray) -> tuple[float, float]:
        f1 = f1_score(m.labels, pred, labels=list(range(m.classes)), average="macro",
                      zero_division=0)
        return float((pred == m.labels).mean()), float(f1)

    clean_acc, clean_f1 = scores(m.clean)
    rows = [{"model": m.name, "seed": m.seed, "corruption": "clean", "family": "clean",
             "severity": 0, "accuracy": clean_acc, "f1_macro": clean_f1, "drop": 0.0}]
    for i, name in enumerate(m.corruptions):
        for j, severity in enumerate(m.severities):
            acc, f1 = scores(m.predictions[i, j])
            rows.append({"model": m.name, "seed": m.seed, "corruption": name,
                         "family": m.families.get(name, ""), "severity": severity,
                         "accuracy": acc, "f1_macro": f1, "drop": clean_acc - acc})
    return rows


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (model, seed), group in table.groupby(["model", "seed"], dropna=False, sort=True):
        clean = float(group.loc[group["severity"] == 0, "accuracy"].iloc[0])
        corrupted = group[group["severity"] > 0]
        mca = float(corrupted["accuracy"].mean())
        worst = corrupted.groupby("corruption")["drop"].mean().idxmax()
        rows.append({"model": model, "seed": None if pd.isna(seed) else seed,
                     "clean_accuracy": clean, "mean_corruption_accuracy": mca,
                     "relative_robustness": mca / clean if clean > 0 else None,
                     "mean_drop": clean - mca, "worst_corruption": worst})
    return pd.DataFrame(rows)


TEST_COLUMNS = ["model_a", "model_b", "seed", "corruption", "severity", "accuracy_a",
                "accuracy_b", "a_only_correct", "b_only_correct", "p", "drop_a", "drop_b",
                "drop_difference", "drop_low", "drop_high", "p_drop"]


def _tests(models: list[Corrupted]) -> pd.DataFrame:
    """Per pair of models of one seed and corruption at severity MIDDLE: McNemar's test of
    the accuracies and the paired bootstrap of the drops, each Holm-adjusted over the
    corruptions of the pair and seed."""
    rows = []
    for a, b in itertools.combinations(models, 2):
        if a.seed != b.seed or a.corruptions != b.corruptions or len(a.labels) != len(b.labels):
            continue
        j = a.severities.index(MIDDLE)
        a_clean, b_clean = a.clean == a.labels, b.clean == b.labels
        for i, name in enumerate(a.corruptions):
            a_ok, b_ok = a.predictions[i, j] == a.labels, b.predictions[i, j] == b.labels
            p, a_only, b_only = mcnemar(a_ok, b_ok)
            # per sample: how much more a loses than b (−2 … 2); its mean is drop_a − drop_b
            lost = (a_clean.astype(float) - a_ok) - (b_clean.astype(float) - b_ok)
            rows.append({"model_a": a.name, "model_b": b.name, "seed": a.seed,
                         "corruption": name, "severity": MIDDLE,
                         "accuracy_a": float(a_ok.mean()), "accuracy_b": float(b_ok.mean()),
                         "a_only_correct": a_only, "b_only_correct": b_only, "p": p,
                         "drop_a": float(a_clean.mean() - a_ok.mean()),
                         "drop_b": float(b_clean.mean() - b_ok.mean()), **_paired_mean(lost)})
    frame = pd.DataFrame(rows, columns=TEST_COLUMNS)
    family = frame.groupby(["model_a", "model_b", "seed"], dropna=False)
    for test, column in (("p", "significant"), ("p_drop", "drop_significant")):
        frame[f"{test}_holm"] = family[test].transform(lambda p: holm(list(p)))
        frame[column] = frame[f"{test}_holm"] < ALPHA
    return frame


def _paired_mean(values: np.ndarray) -> dict[str, float | None]:
    """The mean of per-sample paired differences, its percentile-bootstrap interval and the
    bootstrap p of "no difference" (the seeded resamples of `compare.statistics`)."""
    n = len(values)
    means = np.concatenate([multiplicities(idx, n) @ values / n
                            for idx in resample_indices(n, RESAMPLES, SEED)])
    observed = float(values.mean())
    low, high = percentile_interval(means)
    return {"drop_difference": observed, "drop_low": low, "drop_high": high,
            "p_drop": bootstrap_p(means, observed)}


def sentences(summary: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """One sentence per model (mean corruption accuracy against clean) and two per pair: under
    which corruptions one is more accurate than the other at the middle severity, and under
    which one loses more accuracy than the other, each only where every seed's Holm-adjusted
    test agrees; else that they do not separate."""
    out = []
    for model, rows in summary.groupby("model", sort=True):
        mca, clean = rows["mean_corruption_accuracy"].mean(), rows["clean_accuracy"].mean()
        out.append(f"{model}: mean corruption accuracy {fmt.metric(mca)} against "
                   f"{fmt.metric(clean)} clean (relative robustness "
                   f"{fmt.metric(rows['relative_robustness'].mean())}); its largest mean drop "
                   f"is under {rows['worst_corruption'].mode().iloc[0]}.")
    for (a, b), pair in tests.groupby(["model_a", "model_b"], sort=True):
        a, b = str(a), str(b)
        count = pair["corruption"].nunique()
        better = _agreeing(pair, pair["a_only_correct"] - pair["b_only_correct"], "significant")
        out.append(_pair_sentence(a, b, better, count, "is more accurate than",
                                  "paired McNemar tests"))
        loses = _agreeing(pair, pair["drop_difference"], "drop_significant")
        out.append(_pair_sentence(a, b, loses, count, "loses more accuracy than",
                                  "paired bootstrap of the drops from clean"))
    return out


def _agreeing(pair: pd.DataFrame, sign_of: pd.Series, significant: str) -> dict[int, list[str]]:
    """The corruptions where every seed's test is significant with the same sign of
    `sign_of` (+1: model a, −1: model b)."""
    out: dict[int, list[str]] = {1: [], -1: []}
    signs = np.sign(sign_of)
    for name, rows in pair.groupby("corruption", sort=False):
        sign = signs[rows.index]
        if rows[significant].all() and len(set(sign)) == 1 and sign.iloc[0] != 0:
            out[int(sign.iloc[0])].append(str(name))
    return out


def _pair_sentence(a: str, b: str, found: dict[int, list[str]], count: int, verb: str,
                   test: str) -> str:
    how = (f"(severity {MIDDLE}, {test}, Holm-adjusted over the corruptions, "
           f"α = {ALPHA:g})")
    if not found[1] and not found[-1]:
        return (f"Under corruption, neither {a} nor {b} {verb} the other in any of the "
                f"{count} corruptions: no paired test is significant {how}.")
    parts = [f"{winner} {verb} {loser} under {', '.join(names)}"
             for winner, loser, names in ((a, b, found[1]), (b, a, found[-1])) if names]
    rest = count - len(found[1]) - len(found[-1])
    tail = f"; they do not separate under the other {rest}" if rest else ""
    return f"{'; '.join(parts)}{tail} {how}."

"""Recommendations derived from the numbers by fixed, stated rules.

Each rule reads the run's statistics, costs and explanation checks and either yields one
sentence or nothing; the report prints the rules next to what they produced.
"""

from __future__ import annotations

from collections.abc import Callable

from cnnvit import fmt
from cnnvit.compare.verdicts import SIZE_WARNING
from cnnvit.report.facts import Facts

ECE_LIMIT = 0.05   # above this test ECE, probabilities should be calibrated before use


def _accuracy(facts: Facts) -> list[str]:
    stats = facts.learners.sort_values("accuracy", ascending=False, kind="stable")
    if len(stats) < 2:
        return []
    best = str(stats.index[0])
    tied = [best]
    for other in stats.index[1:]:
        row = facts.verdicts.find(best, str(other), "accuracy")
        if row is None or not row["significant"]:
            tied.append(str(other))
    if len(tied) == 1:
        return [f"For accuracy, choose **{best}**: it is significantly more accurate than every "
                "other model of this run."]
    cheapest = str(stats.loc[tied, "flops_per_image"].idxmin())
    names = ", ".join(tied)
    line = (f"The test accuracy of {names} does not differ significantly (best: {best}, "
            f"{fmt.metric(stats.at[best, 'accuracy'])}); choose among them on cost.")
    if cheapest != best:
        ratio = stats.at[best, "flops_per_image"] / stats.at[cheapest, "flops_per_image"]
        line += (f" **{cheapest}** needs the fewest FLOPs per image ({fmt.ratio(ratio)} fewer "
                 f"than {best}): prefer it where compute, latency or energy matter.")
    return [line]


def _calibration(facts: Facts) -> list[str]:
    return [f"{m}'s test ECE is {fmt.metric(e)} (above {ECE_LIMIT:g}): calibrate it (e.g. "
            "temperature scaling on the validation split) before reading its probabilities as "
            "confidences." for m, e in facts.stats["ece"].items() if e > ECE_LIMIT]


def _learning(facts: Facts) -> list[str]:
    return [f"{line} Check its schedule (epochs, learning rate) and input size before "
            "comparing it." for line in facts.not_learned.values()]


def _explanations(facts: Facts) -> list[str]:
    return [f"Do not use {m}'s maps to justify individual decisions: they fail the "
            "model-randomisation check (they barely change when the weights are re-initialised)."
            for m in facts.failed_sanity()]


def _fairness(facts: Facts) -> list[str]:
    stats = facts.stats
    models = list(stats.index)
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            ratios = [stats.at[a, col] / stats.at[b, col]
                      for col in ("parameters", "flops_per_image") if stats.at[b, col] > 0]
            if any(max(r, 1 / r) > SIZE_WARNING for r in ratios if r > 0):
                out.append(f"{a} and {b} differ more than {SIZE_WARNING:g}× in parameters or "
                           "FLOPs: to conclude about CNN vs ViT rather than about these two "
                           "models, compare models of similar size.")
    return out


def _seeds(facts: Facts) -> list[str]:
    if (facts.stats["n_seeds"] > 1).all():
        return []
    return ["One training run per model: repeat with several seeds (`--seeds 42,43,44`) before "
            "a final choice; a single run cannot show how much a retrained model varies."]


def _protocol(facts: Facts) -> list[str]:
    out = []
    if facts.mode == "reduced":
        out.append("This is a reduced run (shortened schedule): rerun in full mode before any "
                   "decision.")
    if facts.synthetic:
        out.append("The data is synthetic: these numbers say nothing about real images.")
    return out


# (the rule as the report states it, the function that applies it)
RULES: tuple[tuple[str, Callable[[Facts], list[str]]], ...] = (
    ("Protocol: a reduced or synthetic run supports no decision.", _protocol),
    ("Learning: a model whose validation accuracy is not above the majority-class rate "
     "(one-sided binomial test, p ≥ 0.05) did not learn: it is flagged and never ranked.",
     _learning),
    ("Accuracy: a model is preferred only when its accuracy is significantly higher (McNemar, "
     "or the t-test over seeds); among models that do not differ significantly, the one with "
     "the fewest FLOPs per image is preferred where cost matters.", _accuracy),
    (f"Calibration: a test ECE above {ECE_LIMIT:g} calls for calibration.", _calibration),
    ("Explanations: maps that fail the model-randomisation check are not to be used.",
     _explanations),
    (f"Fairness: models differing more than {SIZE_WARNING:g}× in size support no "
     "architecture-level conclusion.", _fairness),
    ("Seeds: a single run per model calls for more seeds.", _seeds),
)


def recommendations(facts: Facts) -> list[str]:
    """The sentences the rules produce, in rule order."""
    return [line for _, rule in RULES for line in rule(facts)]

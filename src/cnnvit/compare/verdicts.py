"""Sentences from statistics.json: which model wins a metric, only where the test says so.

A sentence names a winner ("A is more accurate than B") only for a pair row marked
significant; otherwise it says "no significant difference". Each verdict carries its evidence
(difference, interval, test, p) and the pair's size ratio, so the fairness of the comparison
is stated next to it.
"""

from __future__ import annotations

from typing import Any

from cnnvit import fmt
from cnnvit.compare.statistics import MCNEMAR, OVER_SEEDS

HIGHER_IS_BETTER = {"accuracy": True, "f1_macro": True, "auc_macro": True, "loss": False,
                    "ece": False}
NOUNS = {"accuracy": "accuracy", "f1_macro": "macro-F1", "auc_macro": "macro-AUC",
         "loss": "test loss", "ece": "ECE"}
WINS = {"accuracy": "is more accurate than", "f1_macro": "has a higher macro-F1 than",
        "auc_macro": "has a higher macro-AUC than", "loss": "has a lower test loss than",
        "ece": "is better calibrated (lower ECE) than"}
SIZE_WARNING = 4.0  # warn when two models differ more than this in parameters or FLOPs
_SIZES = (("parameters_ratio", "parameters"), ("flops_ratio", "FLOPs per image"))


def p_text(p: float | None) -> str:
    """p < 0.001, p = 0.0042, p = 0.18."""
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def amount(row: dict[str, Any], flip: bool = False) -> tuple[str, str]:
    """The difference and its interval in percentage points (loss: in its own unit), e.g.
    ("+4.3 pp", "[3.1, 5.5]"); `flip` states b − a instead of a − b."""
    d, low, high = row["difference"], row["low"], row["high"]
    if flip:
        d, low, high = (None if x is None else -x for x in (d, high, low))
    scale, unit = (1.0, "") if row["metric"] == "loss" else (100.0, " pp")
    present = [abs(x) * scale for x in (d, low, high) if x is not None]
    places = 4 if not unit else 1 if present and max(present) >= 1 else 2

    def num(x: float | None, signed: str = "") -> str:
        return fmt.NA if x is None else f"{x * scale:{signed}.{places}f}".replace("-", "−")

    return (fmt.NA if d is None else num(d, "+") + unit,
            fmt.NA if low is None else f"[{num(low)}, {num(high)}]")


class Verdicts:
    """Look-ups and sentences over one statistics.json dict."""

    def __init__(self, statistics: dict[str, Any]) -> None:
        self.pairs: list[dict[str, Any]] = statistics.get("pairs", [])
        self.settings: dict[str, Any] = statistics.get("settings", {})

    def find(self, x: str, y: str, metric: str) -> dict[str, Any] | None:
        """The row that decides x vs y on `metric`: the t-test over seeds when there is one,
        else the one single-run row (None when the two were not compared)."""
        rows = [r for r in self.pairs if r["metric"] == metric and {r["a"], r["b"]} == {x, y}]
        over_seeds = [r for r in rows if r["test"] == OVER_SEEDS]
        return over_seeds[0] if over_seeds else rows[0] if len(rows) == 1 else None

    @staticmethod
    def winner(row: dict[str, Any]) -> str | None:
        """The better model of a significant pair row, else None."""
        if not row["significant"] or row["difference"] is None:
            return None
        return row["a"] if (row["difference"] > 0) == HIGHER_IS_BETTER[row["metric"]] else row["b"]

    def _test(self, row: dict[str, Any]) -> str:
        """"McNemar p < 0.001", "paired t-test over 3 seeds p = 0.02 (...)", Holm noted."""
        holm = " Holm-adjusted" if self.settings.get("multiple_comparisons") == "holm" else ""
        p = p_text(row["p_adjusted"])
        if row["test"] == OVER_SEEDS:
            return (f"paired t-test over {row['n_seeds']} seeds,{holm} {p}; significant on "
                    f"{row.get('seeds_significant', 0)} of {row['n_seeds']} single seeds")
        name = "McNemar" if row["test"] == MCNEMAR else "paired bootstrap"
        return f"{name}{',' + holm if holm else ''} {p}"

    def sentence(self, row: dict[str, Any]) -> str:
        """"**A** is more accurate than B (+4.3 pp, 95 % CI [3.1, 5.5], McNemar p < 0.001)" or
        "no significant difference in accuracy between A and B (...)"."""
        winner = self.winner(row)
        a, b = row["a"], row["b"]
        flip = winner is not None and winner == b
        difference, interval = amount(row, flip)
        per_seed = " mean per-seed difference" if row["test"] == OVER_SEEDS else ""
        evidence = (f"{difference}{per_seed}, {self.settings.get('confidence', 0.95) * 100:g} % "
                    f"CI {interval}, {self._test(row)}")
        if winner is None:
            return f"no significant difference in {NOUNS[row['metric']]} between {a} and " \
                   f"{b} ({evidence})"
        loser = a if flip else b
        return f"**{winner}** {WINS[row['metric']]} {loser} ({evidence})"

    @staticmethod
    def cost(row: dict[str, Any]) -> str:
        """"A has 55× the parameters and 8.2× the FLOPs per image of B"."""
        terms = [(r >= 1, f"{fmt.ratio(max(r, 1 / r))} the {noun}")
                 for key, noun in _SIZES if (r := row.get(key)) is not None]
        if not terms:
            return "size ratio unknown"
        a, b = str(row["a"]), str(row["b"])
        if len({up for up, _ in terms}) == 1:
            big, small = (a, b) if terms[0][0] else (b, a)
            return f"{big} has {' and '.join(t for _, t in terms)} of {small}"
        return ", ".join(f"{a if up else b} has {t} of {b if up else a}" for up, t in terms)

    @staticmethod
    def warning(row: dict[str, Any]) -> str | None:
        """A "⚠" line when the two models differ more than 4× in parameters or FLOPs."""
        big = [f"{noun} {fmt.ratio(max(r, 1 / r))}" for key, noun in _SIZES
               if (r := row.get(key)) is not None and max(r, 1 / r) > SIZE_WARNING]
        if not big:
            return None
        return (f"⚠ {row['a']} and {row['b']} differ more than "
                f"{SIZE_WARNING:g}× in size ({', '.join(big)}): a difference between them may "
                "come from their size, not only from CNN vs ViT.")

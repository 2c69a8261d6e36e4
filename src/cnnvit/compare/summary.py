"""summary.md: the comparison in words and tables, every number taken from the tables and
every verdict ("more accurate", "better calibrated") from statistics.json."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cnnvit import fmt
from cnnvit.compare.tables import COST_COLUMNS
from cnnvit.compare.verdicts import HIGHER_IS_BETTER, Verdicts, md

MODE_LABELS = {"full": "full mode",
               "reduced": "reduced mode — shortened schedule, not the full protocol"}
TEST_TABLE = (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced acc."),
              ("precision_macro", "Macro P"), ("recall_macro", "Macro R"),
              ("f1_macro", "Macro F1"), ("auc_macro", "Macro AUC"), ("auc_micro", "Micro AUC"),
              ("loss", "Loss"), ("ece", "ECE"))
PRIMARY = (("accuracy", "Accuracy"), ("f1_macro", "Macro F1"), ("auc_macro", "Macro AUC"),
           ("loss", "Loss"), ("ece", "ECE"))  # the metrics statistics.json tests
# column, noun, "fewer" word when the other model needs less of it
TRADE_OFFS = (("parameters", "parameters", "fewer"),
              ("flops_per_image", "FLOPs per image", "fewer"),
              ("train_seconds", "training time", "less"))
SAME_WITHIN = 1.05  # cost ratios closer to 1 than this count as "about the same"


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A Markdown table; the first `text_columns` are left-aligned, numbers right-aligned."""
    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _stats(test: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per model (rows, in run order): `<col>` mean, `<col>_std` sample std, `n_seeds`."""
    grouped = test.groupby("model", sort=False)
    out = grouped[columns].mean()
    out = out.join(grouped[columns].std().add_suffix("_std"))
    out["n_seeds"] = grouped.size()
    return out


def _test_table(stats: pd.DataFrame, families: pd.Series) -> list[str]:
    rows = [[md(model), families[model] or "?",
             *(fmt.metric(r[col], r[f"{col}_std"] if r["n_seeds"] > 1 else None)
               for col, _ in TEST_TABLE)]
            for model, r in stats.iterrows()]
    return _table(["Model", "Family", *(label for _, label in TEST_TABLE)], rows, 2)


def _cost_table(stats: pd.DataFrame) -> list[str]:
    rows = [[md(model), fmt.si(r["parameters"]), fmt.si(r["flops_per_image"], "FLOPs"),
             fmt.seconds(r["train_seconds"]),
             f"{fmt.count(r['epochs_run'])} (best {fmt.count(r['best_epoch'])})",
             fmt.rate(r["train_images_per_s"]), fmt.rate(r["eval_images_per_s"]),
             fmt.memory(r["peak_memory_bytes"])]
            for model, r in stats.iterrows()]
    return _table(["Model", "Parameters", "FLOPs/image", "Training time", "Epochs",
                   "Train throughput", "Eval throughput", "Peak memory"], rows)


def metric_lines(stats: pd.DataFrame, verdicts: Verdicts) -> list[str]:
    """Per primary test metric: the two leading values and whether their difference is
    significant (a winner is named only then), each with the pair's size ratio; then a "⚠"
    line for each such pair that differs more than 4× in size."""
    lines, warnings = [], []
    for col, label in PRIMARY:
        head = f"- {label} ({'higher' if HIGHER_IS_BETTER[col] else 'lower'} is better): "
        values = stats[col].dropna().sort_values(ascending=not HIGHER_IS_BETTER[col],
                                                 kind="stable")
        if len(values) < 2:
            lines.append(head + "n/a (fewer than two models report it)")
            continue
        (first, v1), (second, v2) = list(values.items())[:2]
        line = head + f"{md(first)} {fmt.metric(v1)} vs {md(second)} {fmt.metric(v2)}"
        line += f" (top two of {len(values)})" if len(values) > 2 else ""
        row = verdicts.find(first, second, col)
        if row is None:
            lines.append(line + "; not tested (no predictions_test.csv for both), no verdict.")
            continue
        lines.append(f"{line}: {verdicts.sentence(row)}; {verdicts.cost(row)}.")
        if (warning := verdicts.warning(row)) and warning not in warnings:
            warnings.append(warning)
    return lines + ([""] + warnings if warnings else [])


def pair_lines(models: list[str], verdicts: Verdicts) -> list[str]:
    """Every pair of models: a verdict per primary metric, the size ratio, a "⚠" if needed."""
    lines = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            rows = [r for col, _ in PRIMARY if (r := verdicts.find(a, b, col)) is not None]
            if not rows:
                continue
            lines += [f"### {md(a)} vs {md(b)}", "", f"Size: {verdicts.cost(rows[0])}.", "",
                      *(f"- {verdicts.sentence(r)}." for r in rows), ""]
            if warning := verdicts.warning(rows[0]):
                lines += [warning, ""]
    return lines


def _cost_phrase(other: float, ref: float, noun: str, fewer: str) -> str | None:
    if any(math.isnan(v) or v <= 0 for v in (other, ref)):
        return None
    r = ref / other
    if 1 / SAME_WITHIN < r < SAME_WITHIN:
        return f"about the same {noun}"
    return f"{fmt.ratio(r)} {fewer} {noun}" if r > 1 else f"{fmt.ratio(1 / r)} more {noun}"


def trade_off_lines(stats: pd.DataFrame, verdicts: Verdicts) -> list[str]:
    """Each other model against the one with the highest accuracy: accuracy vs parameters,
    FLOPs, time (and whether the accuracy difference is significant)."""
    ranked = stats.sort_values("accuracy", ascending=False, kind="stable")
    ref, r = ranked.index[0], ranked.iloc[0]
    lines = []
    for model, o in ranked.iloc[1:].iterrows():
        phrases = [p for col, noun, fewer in TRADE_OFFS
                   if (p := _cost_phrase(o[col], r[col], noun, fewer)) is not None]
        line = (f"- {md(model)} reaches {fmt.metric(o['accuracy'])} test accuracy vs "
                f"{fmt.metric(r['accuracy'])} for {md(ref)}")
        if phrases:
            tail = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + \
                f" and {phrases[-1]}"
            line += f", with {tail}"
        row = verdicts.find(ref, model, "accuracy")
        if row is not None and not row["significant"]:
            line += "; the accuracy difference is not significant"
        elif row is not None and verdicts.winner(row) == ref and phrases and not any(
                " fewer " in p or " less " in p for p in phrases):
            line += f"; {md(ref)} is more accurate at no extra cost"
        lines.append(line + ".")
    return lines


def faithfulness_lines(df: pd.DataFrame, failed_sanity: frozenset[str] = frozenset()
                       ) -> list[str]:
    """Which model's explanations are more faithful, by deletion (↓) and insertion (↑) areas.

    Areas depend on the model (a confident model keeps a high probability longer), so each
    model's maps are judged against a random map on the same model: the gain is
    (random deletion − deletion) + (insertion − random insertion). Without random rows the raw
    areas decide. Models in `failed_sanity` (maps that fail the randomisation check) are not
    ranked: a map that does not depend on the weights cannot be the more faithful one.
    """
    needed = ["model", "method", "deletion_auc", "insertion_auc"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        return [f"- explain/faithfulness.csv lacks column(s) {', '.join(missing)}; "
                "faithfulness not summarised."]
    is_random = df["method"].astype(str) == "random"
    cols = ["deletion_auc", "insertion_auc"]
    real = df[~is_random].groupby("model", sort=False).agg(
        method=("method", lambda m: "/".join(dict.fromkeys(m.astype(str)))),
        deletion_auc=("deletion_auc", "mean"), insertion_auc=("insertion_auc", "mean"))
    if real.empty:
        return ["- explain/faithfulness.csv has no scores to summarise."]
    rnd = df[is_random].groupby("model", sort=False)[cols].mean()
    has_rnd = real.index.isin(rnd.index).all()
    lines = ["| Model | Method | Deletion AUC ↓ | Insertion AUC ↑ |"
             + (" Random: deletion | Random: insertion | Gain over random |" if has_rnd else ""),
             "|---|---|---:|---:|" + ("---:|---:|---:|" if has_rnd else "")]
    if has_rnd:
        real["gain"] = ((rnd.loc[real.index, "deletion_auc"] - real["deletion_auc"])
                        + (real["insertion_auc"] - rnd.loc[real.index, "insertion_auc"]))
    for m, row in real.iterrows():
        line = (f"| {md(m)} | {row['method']} | {fmt.metric(row['deletion_auc'])} | "
                f"{fmt.metric(row['insertion_auc'])} |")
        if has_rnd:
            line += (f" {fmt.metric(rnd.at[m, 'deletion_auc'])} | "
                     f"{fmt.metric(rnd.at[m, 'insertion_auc'])} | {fmt.metric(row['gain'])} |")
        lines.append(line)
    lines.append("")
    if len(real) > 1:
        if has_rnd:
            order = real["gain"].sort_values(ascending=False, kind="stable")
            basis = "its gain over a random map on the same model (deletion and insertion)"
        else:
            order = (real["insertion_auc"] - real["deletion_auc"]).sort_values(
                ascending=False, kind="stable")
            basis = "insertion AUC − deletion AUC (no random baseline in the file)"
        ranked = order[~order.index.isin(failed_sanity)]
        if len(ranked) > 1 and ranked.iloc[0] != ranked.iloc[1]:
            lines.append(f"- **{md(ranked.index[0])}** has the more faithful explanation by "
                         f"{basis}: {fmt.metric(ranked.iloc[0])} vs "
                         f"{fmt.metric(ranked.iloc[1])} for {md(ranked.index[1])}.")
        for m in order.index[order.index.isin(failed_sanity)]:
            lines.append(f"- {md(m)}'s {real.at[m, 'method']} maps are not ranked: they fail "
                         "the randomisation check below.")
    if has_rnd:
        weak = [m for m, g in real["gain"].items() if g <= 0]
        for m in weak:
            lines.append(f"- {md(m)}'s {real.at[m, 'method']} maps do no better than a random "
                         "map: they do not show what the model uses.")
    return lines


def _failed_sanity(df: pd.DataFrame | None) -> frozenset[str]:
    """The models whose maps fail the randomisation check (sanity.csv's `flag`)."""
    if df is None or not {"model", "flag"} <= set(df.columns):
        return frozenset()
    return frozenset(str(m) for m, flag in zip(df["model"], df["flag"], strict=True)
                     if str(flag).lower() == "true")


def sanity_lines(df: pd.DataFrame) -> list[str]:
    """The model-randomisation check (Adebayo et al. 2018), one line per model."""
    if not {"model", "method", "mean_spearman", "flag"} <= set(df.columns):
        return []
    lines = []
    for row in df.itertuples():
        verdict = ("the maps barely depend on the learned weights: do not read them as what "
                   "the model uses" if bool(row.flag) else "the maps depend on the learned "
                   "weights")
        rho = "n/a" if pd.isna(row.mean_spearman) else f"{row.mean_spearman:.2f}"
        lines.append(f"- Randomisation check, {md(row.model)} ({row.method}): rank correlation "
                     f"with a re-initialised model {rho}; {verdict}.")
    return lines


def _with_interval(value: float | None, low: float | None, high: float | None,
                   std: float | None = None) -> str:
    """0.9860 [0.9780, 0.9930], or 0.9860 ± 0.0020 [0.9810, 0.9910] over seeds."""
    text = fmt.metric(value, std)
    return text if low is None else f"{text} [{fmt.metric(low)}, {fmt.metric(high)}]"


def interval_table(statistics: dict[str, Any]) -> list[str]:
    """Each model (and seed): every tested metric with its bootstrap interval."""
    cells: dict[tuple[str, int | None], dict[str, str]] = {}
    for r in statistics["intervals"]:
        cells.setdefault((r["model"], r["seed"]), {})[r["metric"]] = _with_interval(
            r["value"], r["low"], r["high"])
    seeded = any(seed is not None for _, seed in cells)
    rows = [[md(model), *([fmt.count(seed)] if seeded else []),
             *(c.get(col, fmt.NA) for col, _ in PRIMARY)] for (model, seed), c in cells.items()]
    return _table(["Model", *(["Seed"] if seeded else []), *(label for _, label in PRIMARY)],
                  rows)


def seed_table(statistics: dict[str, Any]) -> list[str]:
    """Each model with several seeds: mean ± std and the t-interval of every tested metric."""
    cells: dict[str, dict[str, str]] = {}
    for r in statistics["seeds"]:
        cells.setdefault(r["model"], {"n": fmt.count(r["n_seeds"])})[r["metric"]] = \
            _with_interval(r["mean"], r["low"], r["high"], r["std"])
    rows = [[md(model), c["n"], *(c.get(col, fmt.NA) for col, _ in PRIMARY)]
            for model, c in cells.items()]
    return _table(["Model", "Seeds", *(label for _, label in PRIMARY)], rows)


def _label(model: str, seed: int | None) -> str:
    return md(model) if seed is None else f"{md(model)} (seed {seed})"


def calibration_lines(statistics: dict[str, Any]) -> list[str]:
    """Each model's test ECE with its interval (over seeds when it has several)."""
    seeds = {r["model"]: r for r in statistics["seeds"] if r["metric"] == "ece"}
    parts = [f"{_label(r['model'], r['seed'])} {_with_interval(r['value'], r['low'], r['high'])}"
             for r in statistics["intervals"] if r["metric"] == "ece" and r["model"] not in seeds]
    parts += [f"{md(m)} {_with_interval(r['mean'], r['low'], r['high'], r['std'])} over "
              f"{r['n_seeds']} seeds" for m, r in seeds.items()]
    confidence = statistics["settings"]["confidence"] * 100
    return [f"- Calibration (test ECE, lower is better, with its {confidence:g} % interval): "
            + "; ".join(parts) + "."] if parts else []


def method_lines(statistics: dict[str, Any]) -> list[str]:
    """How the verdicts and intervals were made, and which models could not be tested."""
    s = statistics["settings"]
    holm = (" after Holm's step-down adjustment over the model pairs"
            if s["multiple_comparisons"] == "holm" else "")
    lines = [f"Verdicts: a difference is significant when p < {s['alpha']:g}{holm}. Accuracy: "
             "McNemar's exact test on the test images one model classifies correctly and the "
             "other does not; the other metrics: paired bootstrap (the same "
             f"{s['resamples']:,} resamples of the test set for both models, seed {s['seed']})."
             f" Intervals: {s['confidence'] * 100:g} % {s['method']} bootstrap. With several "
             "seeds the verdict is a paired t-test over the seeds: the seed-to-seed spread "
             "decides whether a difference would hold if the models were trained again."]
    missing = [_label(m["model"], m["seed"]) for m in statistics["missing_predictions"]]
    if missing:
        lines += ["", "Note: no predictions_test.csv for " + ", ".join(missing)
                  + ": not tested, so no verdict involves them."]
    return lines


def _statistics_sections(stats: pd.DataFrame, statistics: dict[str, Any] | None,
                         verdicts: Verdicts) -> list[str]:
    """Verdict per primary metric, every pair (three models or more), intervals, seeds."""
    lines = ["## Primary metrics (test): which differences are significant", "",
             *metric_lines(stats, verdicts), ""]
    if statistics is None:
        return lines
    lines += [*method_lines(statistics), ""]
    if len(stats) > 2:
        lines += ["## Every pair of models (test)", "", *pair_lines(list(stats.index), verdicts)]
    if statistics["intervals"]:
        confidence = statistics["settings"]["confidence"] * 100
        lines += [f"## Confidence intervals (test, {confidence:g} % bootstrap)", "",
                  *interval_table(statistics), "", *calibration_lines(statistics), ""]
    if statistics["seeds"]:
        lines += ["## Across seeds (mean ± std, t-interval)", "", *seed_table(statistics), ""]
    return lines


def render(final: pd.DataFrame, mode: str, faithfulness: pd.DataFrame | None,
           sanity: pd.DataFrame | None = None, statistics: dict[str, Any] | None = None) -> str:
    """The whole summary.md text, from final_comparison rows, statistics.json's content (no
    verdict without it) and the explain stage's faithfulness and sanity tables."""
    test = final[final["split"] == "test"]
    stats = _stats(test, [c for c, _ in TEST_TABLE] + list(COST_COLUMNS))
    families = test.groupby("model", sort=False)["family"].first()
    verdicts = Verdicts(statistics or {})
    n_seeds = stats["n_seeds"]
    lines = [f"# Comparison summary ({MODE_LABELS[mode]})", ""]
    if final["synthetic"].any():
        lines += ["> **Warning: SYNTHETIC data.** These numbers come from generated images and "
                  "say nothing about performance on real data.", ""]
    datasets = ", ".join(dict.fromkeys(final["dataset"].dropna().astype(str))) or "unknown"
    seeds = ("one run per model" if (n_seeds == 1).all()
             else f"{fmt.count(n_seeds.max())} seeds per model (mean ± sample std)"
             if n_seeds.nunique() == 1 else "seeds per model: "
             + ", ".join(f"{md(m)} {n}" for m, n in n_seeds.items()) + " (mean ± sample std)")
    lines += [f"Dataset: {datasets}. Models: {len(stats)}; {seeds}. Test split (primary); "
              "validation rows are in final_comparison.csv.", "",
              "## Test results", "", *_test_table(stats, families), "",
              *_statistics_sections(stats, statistics, verdicts),
              "## Cost", "", *_cost_table(stats), ""]
    if len(stats) > 1:
        lines += ["## Trade-offs", "", *trade_off_lines(stats, verdicts), ""]
    if faithfulness is not None:
        lines += ["## Explanation faithfulness", "",
                  *faithfulness_lines(faithfulness, _failed_sanity(sanity)),
                  *(sanity_lines(sanity) if sanity is not None else []), ""]
    lines += ["Generated by `cnnvit compare` from the run directory's metrics_*.json, "
              "summary.json and predictions_test.csv files (statistics.json)."]
    return "\n".join(lines) + "\n"

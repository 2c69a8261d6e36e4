"""summary.md: the comparison in words and tables, every number taken from the tables and
every verdict ("more accurate", "better calibrated") from statistics.json."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import pandas as pd

from cnnvit import fmt
from cnnvit.compare.tables import COST_COLUMNS
from cnnvit.compare.verdicts import HIGHER_IS_BETTER, Verdicts, p_text
from cnnvit.document import Block, Bullets, Para, Section, Table, markdown
from cnnvit.metrics import CHANCE_ALPHA
from cnnvit.rundir import TRAINING_TIME

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
FAITHFULNESS_COLUMNS = ("model", "method", "deletion_auc", "insertion_auc")
SAME_WITHIN = 1.05  # cost ratios closer to 1 than this count as "about the same"


def model_stats(test: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Per model (rows, in run order): `<col>` mean, `<col>_std` sample std, `n_seeds`; by
    default for the test-table metrics and the cost columns."""
    columns = columns or [c for c, _ in TEST_TABLE] + list(COST_COLUMNS)
    grouped = test.groupby("model", sort=False)
    out = grouped[columns].mean()
    out = out.join(grouped[columns].std().add_suffix("_std"))
    out["n_seeds"] = grouped.size()
    return out


def test_table(stats: pd.DataFrame, families: pd.Series) -> Table:
    """Every test metric per model (mean ± std over seeds)."""
    rows = [[str(model), families[model] or "?",
             *(fmt.metric(r[col], r[f"{col}_std"] if r["n_seeds"] > 1 else None)
               for col, _ in TEST_TABLE)]
            for model, r in stats.iterrows()]
    return Table(["Model", "Family", *(label for _, label in TEST_TABLE)], rows, 2)


def cost_table(stats: pd.DataFrame) -> Table:
    """Parameters, FLOPs, training time, epochs, throughput and memory per model."""
    rows = [[str(model), fmt.si(r["parameters"]), fmt.si(r["flops_per_image"], "FLOPs"),
             fmt.seconds(r["train_seconds"]),
             f"{fmt.count(r['epochs_run'])} (best {fmt.count(r['best_epoch'])})",
             fmt.rate(r["train_images_per_s"]), fmt.rate(r["eval_images_per_s"]),
             fmt.memory(r["peak_memory_bytes"])]
            for model, r in stats.iterrows()]
    return Table(["Model", "Parameters", "FLOPs/image", "Training time", "Epochs",
                  "Train throughput", "Eval throughput", "Peak memory"], rows)


def not_learned(final: pd.DataFrame) -> dict[str, str]:
    """The models (any seed) whose validation accuracy is not above the majority-class rate
    (one-sided exact binomial p ≥ 0.05): model → the sentence that says so."""
    val = final[final["split"] == "val"]
    if "chance_p" not in val.columns:
        return {}
    out: dict[str, str] = {}
    for row in val.itertuples():
        p = row.chance_p
        if isinstance(p, float) and not math.isnan(p) and p >= CHANCE_ALPHA \
                and row.model not in out:
            seed = "" if pd.isna(row.seed) else f" (seed {row.seed})"
            out[str(row.model)] = (
                f"**{row.model} did not learn**{seed}: its validation accuracy "
                f"{fmt.metric(row.accuracy)} is not above the majority-class rate "
                f"{fmt.metric(row.chance_rate)} (one-sided binomial {p_text(p)}). Its numbers "
                "are listed, but it is not ranked against the other models.")
    return out


def metric_items(stats: pd.DataFrame, verdicts: Verdicts) -> tuple[list[str], list[str]]:
    """Per primary test metric: the two leading values and whether their difference is
    significant (a winner is named only then), each with the pair's size ratio; and a "⚠"
    warning for each such pair that differs more than 4× in size."""
    items, warnings = [], []
    for col, label in PRIMARY:
        head = f"{label} ({'higher' if HIGHER_IS_BETTER[col] else 'lower'} is better): "
        values = stats[col].dropna().sort_values(ascending=not HIGHER_IS_BETTER[col],
                                                 kind="stable")
        if len(values) < 2:
            items.append(head + "n/a (fewer than two ranked models report it)")
            continue
        (first, v1), (second, v2) = list(values.items())[:2]
        line = head + f"{first} {fmt.metric(v1)} vs {second} {fmt.metric(v2)}"
        line += f" (top two of {len(values)})" if len(values) > 2 else ""
        row = verdicts.find(first, second, col)
        if row is None:
            items.append(line + "; not tested (no predictions_test.csv for both), no verdict.")
            continue
        items.append(f"{line}: {verdicts.sentence(row)}; {verdicts.cost(row)}.")
        if (warning := verdicts.warning(row)) and warning not in warnings:
            warnings.append(warning)
    return items, warnings


def pair_sections(models: list[str], verdicts: Verdicts) -> list[Section]:
    """Every pair of models: a verdict per primary metric, the size ratio, a "⚠" if needed."""
    sections = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            rows = [r for col, _ in PRIMARY if (r := verdicts.find(a, b, col)) is not None]
            if not rows:
                continue
            blocks: list[Block] = [Para(f"Size: {verdicts.cost(rows[0])}."),
                                   Bullets([f"{verdicts.sentence(r)}." for r in rows])]
            if warning := verdicts.warning(rows[0]):
                blocks.append(Para(warning))
            sections.append(Section(f"{a} vs {b}", blocks))
    return sections


def _cost_phrase(other: float, ref: float, noun: str, fewer: str) -> str | None:
    if any(math.isnan(v) or v <= 0 for v in (other, ref)):
        return None
    r = ref / other
    if 1 / SAME_WITHIN < r < SAME_WITHIN:
        return f"about the same {noun}"
    return f"{fmt.ratio(r)} {fewer} {noun}" if r > 1 else f"{fmt.ratio(1 / r)} more {noun}"


def trade_off_items(stats: pd.DataFrame, verdicts: Verdicts) -> list[str]:
    """Each other model against the one with the highest accuracy: accuracy vs parameters,
    FLOPs, time (and whether the accuracy difference is significant)."""
    ranked = stats.sort_values("accuracy", ascending=False, kind="stable")
    ref, r = ranked.index[0], ranked.iloc[0]
    lines = []
    for model, o in ranked.iloc[1:].iterrows():
        phrases = [p for col, noun, fewer in TRADE_OFFS
                   if (p := _cost_phrase(o[col], r[col], noun, fewer)) is not None]
        line = (f"{model} reaches {fmt.metric(o['accuracy'])} test accuracy vs "
                f"{fmt.metric(r['accuracy'])} for {ref}")
        if phrases:
            tail = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + \
                f" and {phrases[-1]}"
            line += f", with {tail}"
        row = verdicts.find(ref, model, "accuracy")
        if row is not None and not row["significant"]:
            line += "; the accuracy difference is not significant"
        elif row is not None and verdicts.winner(row) == ref and phrases and not any(
                " fewer " in p or " less " in p for p in phrases):
            line += f"; {ref} is more accurate at no extra cost"
        lines.append(line + ".")
    return lines


def _faithfulness_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per model: method and mean areas (and `gain` over random); the random rows' means or
    None when the file has none for every model."""
    is_random = df["method"].astype(str) == "random"
    real = df[~is_random].groupby("model", sort=False).agg(
        method=("method", lambda m: "/".join(dict.fromkeys(m.astype(str)))),
        deletion_auc=("deletion_auc", "mean"), insertion_auc=("insertion_auc", "mean"))
    rnd = df[is_random].groupby("model", sort=False)[["deletion_auc", "insertion_auc"]].mean()
    if real.empty or not real.index.isin(rnd.index).all():
        return real, None
    real["gain"] = ((rnd.loc[real.index, "deletion_auc"] - real["deletion_auc"])
                    + (real["insertion_auc"] - rnd.loc[real.index, "insertion_auc"]))
    return real, rnd


def faithfulness_table(df: pd.DataFrame) -> Table | None:
    """Mean deletion / insertion areas per model, with the random-map baseline when present
    (None when the file lacks the columns or the scores)."""
    if not set(FAITHFULNESS_COLUMNS) <= set(df.columns):
        return None
    real, rnd = _faithfulness_frame(df)
    if real.empty:
        return None
    header = ["Model", "Method", "Deletion AUC ↓", "Insertion AUC ↑"]
    if rnd is not None:
        header += ["Random: deletion", "Random: insertion", "Gain over random"]
    rows = []
    for m, row in real.iterrows():
        cells = [str(m), row["method"], fmt.metric(row["deletion_auc"]),
                 fmt.metric(row["insertion_auc"])]
        if rnd is not None:
            cells += [fmt.metric(rnd.at[m, "deletion_auc"]),
                      fmt.metric(rnd.at[m, "insertion_auc"]), fmt.metric(row["gain"])]
        rows.append(cells)
    return Table(header, rows, 2)


def faithfulness_items(df: pd.DataFrame, failing: Collection[str] = ()) -> list[str]:
    """Which model's explanations are more faithful, by deletion (↓) and insertion (↑) areas.

    Areas depend on the model (a confident model keeps a high probability longer), so each
    model's maps are judged against a random map on the same model: the gain is
    (random deletion − deletion) + (insertion − random insertion). Without random rows the raw
    areas decide. Models in `failing` (maps that fail the randomisation check) are not
    ranked: a map that does not depend on the weights cannot be the more faithful one.
    """
    missing = [c for c in FAITHFULNESS_COLUMNS if c not in df.columns]
    if missing:
        return [f"explain/faithfulness.csv lacks column(s) {', '.join(missing)}; "
                "faithfulness not summarised."]
    real, rnd = _faithfulness_frame(df)
    if real.empty:
        return ["explain/faithfulness.csv has no scores to summarise."]
    items = []
    if len(real) > 1:
        if rnd is not None:
            order = real["gain"].sort_values(ascending=False, kind="stable")
            basis = "its gain over a random map on the same model (deletion and insertion)"
        else:
            order = (real["insertion_auc"] - real["deletion_auc"]).sort_values(
                ascending=False, kind="stable")
            basis = "insertion AUC − deletion AUC (no random baseline in the file)"
        ranked = order[~order.index.isin(failing)]
        if len(ranked) > 1 and ranked.iloc[0] != ranked.iloc[1]:
            items.append(f"**{ranked.index[0]}** has the more faithful explanation by "
                         f"{basis}: {fmt.metric(ranked.iloc[0])} vs "
                         f"{fmt.metric(ranked.iloc[1])} for {ranked.index[1]}.")
        for m in order.index[order.index.isin(failing)]:
            items.append(f"{m}'s {real.at[m, 'method']} maps are not ranked: they fail "
                         "the randomisation check below.")
    if rnd is not None:
        for m, g in real["gain"].items():
            if g <= 0:
                items.append(f"{m}'s {real.at[m, 'method']} maps do no better than a random "
                             "map: they do not show what the model uses.")
    return items


def failed_sanity(df: pd.DataFrame | None) -> tuple[str, ...]:
    """The models whose maps fail the randomisation check (sanity.csv's `flag`), in file
    order."""
    if df is None or not {"model", "flag"} <= set(df.columns):
        return ()
    return tuple(dict.fromkeys(str(m) for m, flag in zip(df["model"], df["flag"], strict=True)
                               if str(flag).lower() == "true"))


def sanity_items(df: pd.DataFrame) -> list[str]:
    """The model-randomisation check (Adebayo et al. 2018), one line per model."""
    if not {"model", "method", "mean_spearman", "flag"} <= set(df.columns):
        return []
    lines = []
    for row in df.itertuples():
        verdict = ("the maps barely depend on the learned weights: do not read them as what "
                   "the model uses" if bool(row.flag) else "the maps depend on the learned "
                   "weights")
        rho = "n/a" if pd.isna(row.mean_spearman) else f"{row.mean_spearman:.2f}"
        lines.append(f"Randomisation check, {row.model} ({row.method}): rank correlation "
                     f"with a re-initialised model {rho}; {verdict}.")
    return lines


def _with_interval(value: float | None, low: float | None, high: float | None,
                   std: float | None = None) -> str:
    """0.9860 [0.9780, 0.9930], or 0.9860 ± 0.0020 [0.9810, 0.9910] over seeds."""
    text = fmt.metric(value, std)
    return text if low is None else f"{text} [{fmt.metric(low)}, {fmt.metric(high)}]"


def interval_table(statistics: dict[str, Any]) -> Table:
    """Each model (and seed): every tested metric with its bootstrap interval."""
    cells: dict[tuple[str, int | None], dict[str, str]] = {}
    for r in statistics["intervals"]:
        cells.setdefault((r["model"], r["seed"]), {})[r["metric"]] = _with_interval(
            r["value"], r["low"], r["high"])
    seeded = any(seed is not None for _, seed in cells)
    rows = [[str(model), *([fmt.count(seed)] if seeded else []),
             *(c.get(col, fmt.NA) for col, _ in PRIMARY)] for (model, seed), c in cells.items()]
    return Table(["Model", *(["Seed"] if seeded else []), *(label for _, label in PRIMARY)],
                 rows)


def seed_table(statistics: dict[str, Any]) -> Table:
    """Each model with several seeds: mean ± std and the t-interval of every tested metric."""
    cells: dict[str, dict[str, str]] = {}
    for r in statistics["seeds"]:
        cells.setdefault(r["model"], {"n": fmt.count(r["n_seeds"])})[r["metric"]] = \
            _with_interval(r["mean"], r["low"], r["high"], r["std"])
    rows = [[str(model), c["n"], *(c.get(col, fmt.NA) for col, _ in PRIMARY)]
            for model, c in cells.items()]
    return Table(["Model", "Seeds", *(label for _, label in PRIMARY)], rows)


def _label(model: str, seed: int | None) -> str:
    return str(model) if seed is None else f"{model} (seed {seed})"


def calibration_items(statistics: dict[str, Any]) -> list[str]:
    """Each model's test ECE with its interval (over seeds when it has several)."""
    seeds = {r["model"]: r for r in statistics["seeds"] if r["metric"] == "ece"}
    parts = [f"{_label(r['model'], r['seed'])} {_with_interval(r['value'], r['low'], r['high'])}"
             for r in statistics["intervals"] if r["metric"] == "ece" and r["model"] not in seeds]
    parts += [f"{m} {_with_interval(r['mean'], r['low'], r['high'], r['std'])} over "
              f"{r['n_seeds']} seeds" for m, r in seeds.items()]
    confidence = statistics["settings"]["confidence"] * 100
    return [f"Calibration (test ECE, lower is better, with its {confidence:g} % interval): "
            + "; ".join(parts) + "."] if parts else []


def method_paragraphs(statistics: dict[str, Any]) -> list[Block]:
    """How the verdicts and intervals were made, and which models could not be tested."""
    s = statistics["settings"]
    holm = (" after Holm's step-down adjustment over the model pairs"
            if s["multiple_comparisons"] == "holm" else "")
    blocks: list[Block] = [Para(
        f"Verdicts: a difference is significant when p < {s['alpha']:g}{holm}. Accuracy: "
        "McNemar's exact test on the test images one model classifies correctly and the "
        "other does not; the other metrics: paired bootstrap (the same "
        f"{s['resamples']:,} resamples of the test set for both models, seed {s['seed']})."
        f" Intervals: {s['confidence'] * 100:g} % {s['method']} bootstrap. With several "
        "seeds the verdict is a paired t-test over the seeds: the seed-to-seed spread "
        "decides whether a difference would hold if the models were trained again. ECE is "
        "biased upwards on a resample (binning noise adds to it), so its percentile "
        "interval can lie mostly above the estimate, and that of an ECE difference to one "
        "side of it.")]
    missing = [_label(m["model"], m["seed"]) for m in statistics["missing_predictions"]]
    if missing:
        blocks.append(Para("Note: no predictions_test.csv for " + ", ".join(missing)
                           + ": not tested, so no verdict involves them."))
    return blocks


def statistics_sections(stats: pd.DataFrame, statistics: dict[str, Any] | None,
                        verdicts: Verdicts) -> list[Section]:
    """Verdict per primary metric, every pair (three models or more), intervals, seeds;
    `stats`: the models that are ranked (those that learned)."""
    items, warnings = metric_items(stats, verdicts)
    first = Section("Primary metrics (test): which differences are significant",
                    [Bullets(items), *(Para(w) for w in warnings)])
    if statistics is None:
        return [first]
    first.blocks += method_paragraphs(statistics)
    sections = [first]
    if len(stats) > 2:
        sections.append(Section("Every pair of models (test)", [],
                                pair_sections(list(stats.index), verdicts)))
    if statistics["intervals"]:
        confidence = statistics["settings"]["confidence"] * 100
        sections.append(Section(f"Confidence intervals (test, {confidence:g} % bootstrap)",
                                [interval_table(statistics),
                                 Bullets(calibration_items(statistics))]))
    if statistics["seeds"]:
        sections.append(Section("Across seeds (mean ± std, t-interval)",
                                [seed_table(statistics)]))
    return sections


def faithfulness_section(faithfulness: pd.DataFrame, sanity: pd.DataFrame | None) -> Section:
    """The faithfulness table and verdicts, and the randomisation check per model."""
    table = faithfulness_table(faithfulness)
    return Section("Explanation faithfulness", [
        *([table] if table is not None else []),
        Bullets(faithfulness_items(faithfulness, failed_sanity(sanity))
                + (sanity_items(sanity) if sanity is not None else []))])


def seeds_phrase(n_seeds: pd.Series) -> str:
    """"one run per model", "3 seeds per model (mean ± sample std)", or per model."""
    if (n_seeds == 1).all():
        return "one run per model"
    if n_seeds.nunique() == 1:
        return f"{fmt.count(n_seeds.max())} seeds per model (mean ± sample std)"
    return ("seeds per model: " + ", ".join(f"{m} {n}" for m, n in n_seeds.items())
            + " (mean ± sample std)")


SYNTHETIC_WARNING = ("**Warning: SYNTHETIC data.** These numbers come from generated images "
                     "and say nothing about performance on real data.")


def render(final: pd.DataFrame, mode: str, faithfulness: pd.DataFrame | None,
           sanity: pd.DataFrame | None = None, statistics: dict[str, Any] | None = None,
           learning_curve: list[str] | None = None, robustness: list[str] | None = None
           ) -> str:
    """The whole summary.md text, from final_comparison rows, statistics.json's content (no
    verdict without it), the explain stage's faithfulness and sanity tables, the learning
    curve's sentences (`curves.crossover_sentences`) and the robustness sentences
    (`robustness.sentences`)."""
    test = final[final["split"] == "test"]
    stats = model_stats(test)
    families = test.groupby("model", sort=False)["family"].first()
    verdicts = Verdicts(statistics or {})
    intro: list[Block] = [Para(SYNTHETIC_WARNING)] if final["synthetic"].any() else []
    failed = not_learned(final)
    intro += [Para(f"⚠ {line}") for line in failed.values()]
    learners = stats.drop(index=list(failed))
    datasets = ", ".join(dict.fromkeys(final["dataset"].dropna().astype(str))) or "unknown"
    intro.append(Para(f"Dataset: {datasets}. Models: {len(stats)}; "
                      f"{seeds_phrase(stats['n_seeds'])}. Test split (primary); validation "
                      "rows are in final_comparison.csv."))
    sections = [Section("Test results", [test_table(stats, families)]),
                *statistics_sections(learners, statistics, verdicts),
                Section("Cost", [cost_table(stats), Para(f"Training time: {TRAINING_TIME}.")])]
    if len(learners) > 1:
        sections.append(Section("Trade-offs", [Bullets(trade_off_items(learners, verdicts))]))
    if learning_curve:
        sections.append(Section("Learning curve (test accuracy against training images)", [
            Bullets(learning_curve), Para("Points, intervals and tests: learning_curve.csv and "
                                          "learning_curve_tests.csv.")]))
    if robustness:
        sections.append(Section("Robustness to corruptions (test split)", [
            Bullets(robustness), Para("Per corruption and severity: robustness.csv; per model: "
                                      "robustness_summary.csv; tests: robustness_tests.csv.")]))
    if faithfulness is not None:
        sections.append(faithfulness_section(faithfulness, sanity))
    sections.append(Section("Provenance", [Para(
        "Generated by `cnnvit compare` from the run directory's metrics_*.json, summary.json "
        "and predictions_test.csv files (statistics.json).")]))
    return markdown(f"Comparison summary ({MODE_LABELS[mode]})", intro, sections)

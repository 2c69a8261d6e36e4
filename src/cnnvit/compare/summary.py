"""summary.md: the comparison in words and tables, every number taken from the tables."""

from __future__ import annotations

import math

import pandas as pd

from cnnvit import fmt
from cnnvit.compare.tables import COST_COLUMNS

MODE_LABELS = {"full": "full mode",
               "reduced": "reduced mode — shortened schedule, not the full protocol"}
TEST_TABLE = (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced acc."),
              ("precision_macro", "Macro P"), ("recall_macro", "Macro R"),
              ("f1_macro", "Macro F1"), ("auc_macro", "Macro AUC"), ("auc_micro", "Micro AUC"),
              ("loss", "Loss"), ("ece", "ECE"))
# metric, label, higher is better
PRIMARY = (("accuracy", "Accuracy", True), ("f1_macro", "Macro F1", True),
           ("auc_macro", "Macro AUC", True), ("loss", "Loss", False), ("ece", "ECE", False))
# column, noun, "fewer" word when the other model needs less of it
TRADE_OFFS = (("parameters", "parameters", "fewer"),
              ("flops_per_image", "FLOPs per image", "fewer"),
              ("train_seconds", "training time", "less"))
SAME_WITHIN = 1.05  # cost ratios closer to 1 than this count as "about the same"


def _md(name: str) -> str:
    return str(name).replace("|", "\\|")


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
    rows = [[_md(model), families[model] or "?",
             *(fmt.metric(r[col], r[f"{col}_std"] if r["n_seeds"] > 1 else None)
               for col, _ in TEST_TABLE)]
            for model, r in stats.iterrows()]
    return _table(["Model", "Family", *(label for _, label in TEST_TABLE)], rows, 2)


def _cost_table(stats: pd.DataFrame) -> list[str]:
    rows = [[_md(model), fmt.si(r["parameters"]), fmt.si(r["flops_per_image"], "FLOPs"),
             fmt.seconds(r["train_seconds"]),
             f"{fmt.count(r['epochs_run'])} (best {fmt.count(r['best_epoch'])})",
             fmt.rate(r["train_images_per_s"]), fmt.rate(r["eval_images_per_s"]),
             fmt.memory(r["peak_memory_bytes"])]
            for model, r in stats.iterrows()]
    return _table(["Model", "Parameters", "FLOPs/image", "Training time", "Epochs",
                   "Train throughput", "Eval throughput", "Peak memory"], rows)


def stronger_lines(stats: pd.DataFrame) -> list[str]:
    """Which model is stronger on each primary test metric, and by how much."""
    lines = []
    for col, label, higher in PRIMARY:
        head = f"- {label} ({'higher' if higher else 'lower'} is better): "
        values = stats[col].dropna().sort_values(ascending=not higher, kind="stable")
        if len(values) < 2:
            lines.append(head + "n/a (fewer than two models report it)")
            continue
        (best, v1), (second, v2) = list(values.items())[:2]
        if v1 == v2:
            lines.append(head + f"tie between {_md(best)} and {_md(second)} at {fmt.metric(v1)}")
            continue
        line = (head + f"**{_md(best)}** {fmt.metric(v1)} vs {_md(second)} {fmt.metric(v2)}"
                + (" (next best)" if len(values) > 2 else "")
                + f", margin {fmt.metric(abs(v1 - v2))}")
        s1, s2 = stats.at[best, f"{col}_std"], stats.at[second, f"{col}_std"]
        if not (math.isnan(s1) or math.isnan(s2)):
            line += f" (seed std {fmt.metric(s1)} and {fmt.metric(s2)})"
        lines.append(line)
    return lines


def _cost_phrase(other: float, ref: float, noun: str, fewer: str) -> str | None:
    if any(math.isnan(v) or v <= 0 for v in (other, ref)):
        return None
    r = ref / other
    if 1 / SAME_WITHIN < r < SAME_WITHIN:
        return f"about the same {noun}"
    return f"{fmt.ratio(r)} {fewer} {noun}" if r > 1 else f"{fmt.ratio(1 / r)} more {noun}"


def trade_off_lines(stats: pd.DataFrame) -> list[str]:
    """Each other model against the most accurate one: accuracy vs parameters, FLOPs, time."""
    ranked = stats.sort_values("accuracy", ascending=False, kind="stable")
    ref, r = ranked.index[0], ranked.iloc[0]
    lines = []
    for model, o in ranked.iloc[1:].iterrows():
        phrases = [p for col, noun, fewer in TRADE_OFFS
                   if (p := _cost_phrase(o[col], r[col], noun, fewer)) is not None]
        line = (f"- {_md(model)} reaches {fmt.metric(o['accuracy'])} test accuracy vs "
                f"{fmt.metric(r['accuracy'])} for {_md(ref)}")
        if phrases:
            tail = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + \
                f" and {phrases[-1]}"
            line += f", with {tail}"
        if phrases and o["accuracy"] < r["accuracy"] and not any(
                " fewer " in p or " less " in p for p in phrases):
            line += f"; {_md(ref)} is more accurate at no extra cost"
        lines.append(line + ".")
    return lines


def faithfulness_lines(df: pd.DataFrame) -> list[str]:
    """Which model's explanations are more faithful, by deletion (↓) and insertion (↑) areas.

    Areas depend on the model (a confident model keeps a high probability longer), so each
    model's maps are judged against a random map on the same model: the gain is
    (random deletion − deletion) + (insertion − random insertion). Without random rows the raw
    areas decide.
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
        line = (f"| {_md(m)} | {row['method']} | {fmt.metric(row['deletion_auc'])} | "
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
        if order.iloc[0] != order.iloc[1]:
            lines.append(f"- **{_md(order.index[0])}** has the more faithful explanation by "
                         f"{basis}: {fmt.metric(order.iloc[0])} vs "
                         f"{fmt.metric(order.iloc[1])} for {_md(order.index[1])}.")
    if has_rnd:
        weak = [m for m, g in real["gain"].items() if g <= 0]
        for m in weak:
            lines.append(f"- {_md(m)}'s {real.at[m, 'method']} maps do no better than a random "
                         "map: they do not show what the model uses.")
    return lines


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
        lines.append(f"- Randomisation check, {_md(row.model)} ({row.method}): rank correlation "
                     f"with a re-initialised model {rho}; {verdict}.")
    return lines


def render(final: pd.DataFrame, mode: str, faithfulness: pd.DataFrame | None,
           sanity: pd.DataFrame | None = None) -> str:
    """The whole summary.md text, from final_comparison rows (and the explain stage's
    faithfulness and sanity tables)."""
    test = final[final["split"] == "test"]
    stats = _stats(test, [c for c, _ in TEST_TABLE] + list(COST_COLUMNS))
    families = test.groupby("model", sort=False)["family"].first()
    n_seeds = stats["n_seeds"]
    lines = [f"# Comparison summary ({MODE_LABELS[mode]})", ""]
    if final["synthetic"].any():
        lines += ["> **Warning: SYNTHETIC data.** These numbers come from generated images and "
                  "say nothing about performance on real data.", ""]
    datasets = ", ".join(dict.fromkeys(final["dataset"].dropna().astype(str))) or "unknown"
    seeds = ("one run per model" if (n_seeds == 1).all()
             else f"{fmt.count(n_seeds.max())} seeds per model (mean ± sample std)"
             if n_seeds.nunique() == 1 else "seeds per model: "
             + ", ".join(f"{_md(m)} {n}" for m, n in n_seeds.items()) + " (mean ± sample std)")
    lines += [f"Dataset: {datasets}. Models: {len(stats)}; {seeds}. Test split (primary); "
              "validation rows are in final_comparison.csv.", "",
              "## Test results", "", *_test_table(stats, families), "",
              "## Stronger model per primary metric (test)", "", *stronger_lines(stats), "",
              "## Cost", "", *_cost_table(stats), ""]
    if len(stats) > 1:
        lines += ["## Trade-offs", "", *trade_off_lines(stats), ""]
    if faithfulness is not None:
        lines += ["## Explanation faithfulness", "", *faithfulness_lines(faithfulness),
                  *(sanity_lines(sanity) if sanity is not None else []), ""]
    lines += ["Generated by `cnnvit compare` from the run directory's metrics_*.json and "
              "summary.json files."]
    return "\n".join(lines) + "\n"

"""The comparison tables, built from the collected runs with pandas."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cnnvit.compare.collect import SPLITS, ModelRun
from cnnvit.metrics import chance_of

CORE_METRICS = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_micro", "recall_micro", "f1_micro", "auc_macro", "auc_micro", "loss",
                "ece")
COST_COLUMNS = ("parameters", "flops_per_image", "train_seconds", "epochs_run", "best_epoch",
                "train_images_per_s", "eval_images_per_s", "peak_memory_bytes")
# numeric keys of a metrics JSON that describe the evaluation rather than measure the model
NOT_METRICS = frozenset({"n", "num_classes", "epoch", "eval_images_per_s"})
PER_CLASS_COLUMNS = ("precision", "recall", "f1", "accuracy", "support", "auc")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metric_columns(runs: list[ModelRun]) -> list[str]:
    """The core metrics, then every other numeric scalar key found in any metrics JSON."""
    extra: dict[str, None] = {}
    for run in runs:
        for m in run.metrics.values():
            extra.update({k: None for k, v in m.items()
                          if _is_number(v) and k not in NOT_METRICS and k not in CORE_METRICS})
    return [*CORE_METRICS, *extra]


def final_comparison(runs: list[ModelRun], mode: str, metrics: list[str]) -> pd.DataFrame:
    """One row per model × seed × split; test rows are the primary ones."""
    rows = []
    for run in runs:
        for split in SPLITS:
            m = run.metrics[split]
            arch = str(run.summary.get("architecture") or m.get("model") or run.name)
            row: dict[str, Any] = {"model": run.name, "seed": run.seed, "split": split,
                                   "primary": split == "test", "mode": mode}
            row.update({k: m.get(k) for k in metrics})
            row.update({k: run.summary.get(k) for k in COST_COLUMNS})
            if m.get("eval_images_per_s") is not None:  # measured on this very split
                row["eval_images_per_s"] = m["eval_images_per_s"]
            row.update({"architecture": arch, "family": run.summary.get("family", ""),
                        "dataset": m.get("dataset", run.summary.get("dataset")),
                        "synthetic": bool(m.get("synthetic", False)), "n": m.get("n")})
            row.update(_chance(m))
            rows.append(row)
    df = pd.DataFrame(rows)
    df["seed"] = df["seed"].astype("Int64")
    for col in (*metrics, *COST_COLUMNS, "chance_rate", "chance_p"):
        df[col] = pd.to_numeric(df[col])
    return df


def _chance(m: dict[str, Any]) -> dict[str, float | None]:
    """The majority-class rate of the split and the binomial p of beating it (None when the
    metrics file lacks the counts)."""
    tested = chance_of(m)
    return dict(zip(("chance_rate", "chance_p"), tested or (None, None), strict=True))


def per_class(runs: list[ModelRun]) -> pd.DataFrame:
    """One row per model × seed × split × class, from the metrics JSONs' `per_class` lists."""
    rows = [{"model": run.name, "seed": run.seed, "split": split,
             "class_index": entry.get("index"), "class": entry.get("class"),
             **{k: entry.get(k) for k in PER_CLASS_COLUMNS}}
            for run in runs for split in SPLITS
            for entry in run.metrics[split].get("per_class") or []]
    df = pd.DataFrame(rows, columns=["model", "seed", "split", "class_index", "class",
                                     *PER_CLASS_COLUMNS])
    df["seed"] = df["seed"].astype("Int64")
    for col in PER_CLASS_COLUMNS:
        df[col] = pd.to_numeric(df[col])
    return df


def per_class_accuracy(per_class_df: pd.DataFrame) -> pd.DataFrame:
    """Rows = classes, columns = models: test per-class accuracy (mean over seeds)."""
    test = per_class_df[per_class_df["split"] == "test"]
    table = test.groupby(["class_index", "class", "model"])["accuracy"].mean().unstack("model")
    table = table.reindex(columns=list(dict.fromkeys(test["model"])))
    table.columns.name = None
    return table.reset_index().drop(columns="class_index")


def seed_summary(final: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per model × split × metric: mean, sample std (ddof=1), n_seeds, min, max."""
    parts = []
    for (model, split), group in final.groupby(["model", "split"], sort=False):
        stats = group[metrics].agg(["mean", "std", "count", "min", "max"]).T
        stats = stats.rename(columns={"count": "n_seeds"}).rename_axis("metric").reset_index()
        stats.insert(0, "split", split)
        stats.insert(0, "model", model)
        parts.append(stats)
    out = pd.concat(parts, ignore_index=True)
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out

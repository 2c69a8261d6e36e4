"""Aggregate a sweep directory: mean ± std over seeds of every job's test results.

    aggregate(sweep_dir) -> {"sweep_summary_csv": Path, "sweep_summary_md": Path}

Reads only `SWEEP_DIR/sweep.json` (written by `cnnvit sweep`: the grid and its jobs) and each
finished job's `results/final_comparison.csv`; writes `SWEEP_DIR/results/sweep_summary.csv`
(long format: dataset, variant, model, image_size, metric, mean, std, n_seeds) and
`sweep_summary.md`. The standard deviation is the sample one (ddof=1), empty for one seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cnnvit import fmt
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_csv, atomic_write_text, read_json

SWEEP_FILE = "sweep.json"  # the marker of a sweep directory
RESULTS_FILE = "results/final_comparison.csv"  # relative to a job's run directory
GROUP = ["dataset", "variant", "model", "image_size"]
# metric, its column in the Markdown table, how a value is written there
METRICS: dict[str, tuple[str, Any]] = {
    "accuracy": ("test accuracy", lambda x: f"{x:.4f}"),
    "f1_macro": ("test macro-F1", lambda x: f"{x:.4f}"),
    "parameters": ("parameters", fmt.si),
    "flops_per_image": ("FLOPs / image", lambda x: fmt.si(x, "FLOPs")),
    "train_seconds": ("training time", fmt.seconds),
}


def is_sweep(path: str | Path) -> bool:
    """Whether `path` is a sweep directory (it holds sweep.json)."""
    return (Path(path) / SWEEP_FILE).is_file()


def read_record(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's record: its grid, jobs, executor and submissions."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise CnnvitError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE}); run "
                          f"`cnnvit sweep GRID.yaml --out {sweep_dir}` first")
    return read_json(path)


def collect(sweep_dir: str | Path) -> tuple[pd.DataFrame, int, int]:
    """The test rows of every finished job, labelled with the job's dataset, variant, image
    size and seed; and how many jobs had results out of how many."""
    root = Path(sweep_dir)
    jobs = read_record(root).get("jobs", [])
    frames = []
    for job in jobs:
        csv = root / job["dir"] / RESULTS_FILE
        if not csv.is_file():
            continue
        df = pd.read_csv(csv)
        df = df[df["split"] == "test"]
        frames.append(df[["model", *METRICS]].assign(
            dataset=job["dataset"], variant=job.get("variant", ""),
            image_size=int(job["image_size"]), seed=int(job["seed"])))
    if not frames:
        raise CnnvitError(f"{root}: none of its {len(jobs)} jobs has results yet ({RESULTS_FILE}"
                          "); run or finish the sweep first")
    return pd.concat(frames, ignore_index=True), len(frames), len(jobs)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per dataset × variant × model × image size × metric."""
    long = rows.melt(id_vars=[*GROUP, "seed"], value_vars=list(METRICS), var_name="metric")
    long["value"] = pd.to_numeric(long["value"])
    out = (long.groupby([*GROUP, "metric"], sort=False)["value"]
           .agg(mean="mean", std="std", n_seeds="count").reset_index())
    order = {m: i for i, m in enumerate(METRICS)}
    out = out.sort_values(["dataset", "variant", "model", "image_size", "metric"],
                          key=lambda s: s.map(order) if s.name == "metric" else s)
    return out.reset_index(drop=True)


def _cell(row: pd.Series | None, writer: Any) -> str:
    if row is None or pd.isna(row["mean"]):
        return fmt.NA
    text = writer(row["mean"])
    same = pd.isna(row["std"]) or row["std"] == 0  # one seed, or a cost every seed shares
    return text if same else f"{text} ± {writer(row['std'])}"


def render(summary: pd.DataFrame, found: int, total: int) -> str:
    """summary.md of the sweep: one table per dataset (and variant), mean ± std over seeds."""
    lines = ["# Sweep summary", "", f"Test results of {found} of {total} jobs, mean ± standard "
             "deviation (ddof=1) over seeds; n = the number of seeds.", ""]
    for (dataset, variant), part in summary.groupby(["dataset", "variant"], sort=False):
        lines += [f"## {dataset}" + (f" ({variant})" if variant else ""), "",
                  "| model | image size | n | " + " | ".join(t for t, _ in METRICS.values())
                  + " |", "|---|---:|---:|" + "---:|" * len(METRICS)]
        for (model, size), cells in part.groupby(["model", "image_size"], sort=False):
            by_metric = {r["metric"]: r for _, r in cells.iterrows()}
            n = int(cells["n_seeds"].max())
            values = [_cell(by_metric.get(m), w) for m, (_, w) in METRICS.items()]
            lines.append(f"| {model} | {size} px | {n} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def aggregate(sweep_dir: str | Path) -> dict[str, Path]:
    """Write `results/sweep_summary.csv` and `.md` of a sweep directory; return the paths."""
    root = Path(sweep_dir)
    rows, found, total = collect(root)
    summary = summarize(rows)
    paths = {"sweep_summary_csv": root / "results" / "sweep_summary.csv",
             "sweep_summary_md": root / "results" / "sweep_summary.md"}
    atomic_write_csv(summary, paths["sweep_summary_csv"], index=False)
    atomic_write_text(paths["sweep_summary_md"], render(summary, found, total))
    return paths

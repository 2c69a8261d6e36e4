"""Compare stage: read a run directory's model results, write tables and summary.md.

    compare(run_dir, mode=None) -> {"final_comparison": Path, "per_class": Path,
                                    "per_class_accuracy": Path, ["seed_summary": Path,]
                                    "statistics_csv": Path, "statistics_json": Path,
                                    ["learning_curve": Path, "learning_curve_tests": Path,]
                                    ["robustness": Path, "robustness_summary": Path,
                                     "robustness_tests": Path,]
                                    "summary": Path}

Reads only `DIR/models/<name>[/seed_<n>]/{metrics_val,metrics_test,summary}.json` and
`predictions_test.csv`, `DIR/manifest.json` (mode) and, when present,
`DIR/explain/{faithfulness,sanity}.csv`, the learning curve's models under `DIR/curves/` and
each model's `predictions_robustness.npz`.
"""

from __future__ import annotations

from pathlib import Path

from cnnvit.compare import collect, curves, robustness, statistics, summary, tables
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_csv, atomic_write_json, atomic_write_text
from cnnvit.rundir import RunDir

__all__ = ["compare"]


def compare(run_dir: str | Path, *, mode: str | None = None,
            resamples: int = statistics.RESAMPLES, seed: int = statistics.SEED) -> dict[str, Path]:
    """Write `DIR/results/` comparison tables, statistics and summary.md; return the paths.

    `mode` ("full" or "reduced") defaults to the manifest's, else "full". With seeded models
    (`seed_<n>/` dirs) also writes seed_summary.csv; otherwise a stale one is removed.
    `resamples` and `seed` set the bootstrap of statistics.csv/.json.
    """
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise CnnvitError(f"{run.root}: no such run directory; run `cnnvit run --out "
                          f"{run.root}` first")
    runs = collect.discover(run)
    mode = run.mode(mode)
    metrics = tables.metric_columns(runs)
    final = tables.final_comparison(runs, mode, metrics)
    per_class = tables.per_class(runs)

    stats = statistics.compute(runs, final, resamples=resamples, seed=seed)
    results = run.results
    frames = {"final_comparison": final, "per_class": per_class,
              "per_class_accuracy": tables.per_class_accuracy(per_class),
              "statistics": statistics.frame(stats, mode)}
    seed_path = results / "seed_summary.csv"
    if final["seed"].notna().any():
        frames["seed_summary"] = tables.seed_summary(final, metrics)
    else:
        seed_path.unlink(missing_ok=True)
    written: dict[str, Path] = {}
    for name, df in frames.items():
        key = "statistics_csv" if name == "statistics" else name
        written[key] = results / f"{name}.csv"
        # every table says which mode made it, so reduced numbers are never mistaken for full
        atomic_write_csv(df if "mode" in df else df.assign(mode=mode), written[key])
    written["statistics_json"] = results / "statistics.json"
    atomic_write_json(written["statistics_json"], stats)
    curve = curves.learning_curve(run)
    if curve is not None:
        for name, df in zip(("learning_curve", "learning_curve_tests"), curve, strict=True):
            written[name] = results / f"{name}.csv"
            atomic_write_csv(df.assign(mode=mode), written[name])
    robust = robustness.tables(runs)
    for name in robustness.NAMES:
        if robust is not None:
            written[name] = results / f"{name}.csv"
            atomic_write_csv(robust[name].assign(mode=mode), written[name])
        else:  # the stage did not run (--no-robustness): no stale table from an earlier one
            (results / f"{name}.csv").unlink(missing_ok=True)
    written["summary"] = results / "summary.md"
    text = summary.render(
        final, mode, collect.read_explain_csv(run, "faithfulness.csv"),
        collect.read_explain_csv(run, "sanity.csv"), stats,
        curves.crossover_sentences(*curve) if curve is not None else None,
        robustness.sentences(robust["robustness_summary"], robust["robustness_tests"])
        if robust is not None else None)
    atomic_write_text(written["summary"], text)
    return written

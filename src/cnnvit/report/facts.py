"""Everything the report says, read from the run directory's files (and nothing else)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cnnvit.compare import collect, robustness
from cnnvit.compare.summary import failed_sanity, model_stats, not_learned
from cnnvit.compare.verdicts import Verdicts
from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.rundir import RunDir


@dataclass
class Facts:
    """The run's files, loaded: tables as pandas frames, JSON files as dicts."""

    run: RunDir
    mode: str
    manifest: dict[str, Any]
    final: pd.DataFrame            # results/final_comparison.csv
    per_class: pd.DataFrame        # results/per_class.csv
    statistics: dict[str, Any]     # results/statistics.json
    configs: dict[str, dict[str, Any]]  # model -> {"config": ..., "resolved": ...}
    faithfulness: pd.DataFrame | None
    sanity: pd.DataFrame | None
    learning_curve: tuple[pd.DataFrame, pd.DataFrame] | None  # points and tests, if trained
    robustness: dict[str, pd.DataFrame] | None  # results/robustness*.csv, if the stage ran

    @cached_property
    def test(self) -> pd.DataFrame:
        return self.final[self.final["split"] == "test"]

    @cached_property
    def stats(self) -> pd.DataFrame:
        """Per model: test metrics and costs (mean over seeds), `<col>_std`, `n_seeds`."""
        return model_stats(self.test)

    @cached_property
    def not_learned(self) -> dict[str, str]:
        """The models whose validation accuracy is not above chance → the sentence saying so."""
        return not_learned(self.final)

    @cached_property
    def learners(self) -> pd.DataFrame:
        """`stats` of the models that are ranked: those that learned."""
        return self.stats.drop(index=list(self.not_learned))

    @cached_property
    def verdicts(self) -> Verdicts:
        return Verdicts(self.statistics)

    @cached_property
    def families(self) -> pd.Series:
        return self.test.groupby("model", sort=False)["family"].first()

    @property
    def synthetic(self) -> bool:
        return bool(self.final["synthetic"].any())

    def failed_sanity(self) -> tuple[str, ...]:
        """The models whose maps fail the model-randomisation check."""
        return failed_sanity(self.sanity)

    def figure(self, name: str) -> Path | None:
        """`figures/<name>.png` if the figures stage drew it."""
        path = self.run.figures / f"{name}.png"
        return path if path.is_file() else None


def _csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise CnnvitError(f"{path}: cannot read ({e}); run `cnnvit compare "
                          f"{path.parent.parent}` again") from e


def load(run_dir: str | Path) -> Facts:
    """Read the files the report is made from; a missing one is an error that says which
    command writes it."""
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise CnnvitError(f"{run.root}: no such run directory; run `cnnvit run --out "
                          f"{run.root}` first")
    needed = [run.results / n for n in ("final_comparison.csv", "per_class.csv",
                                        "statistics.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise CnnvitError(f"{run.results}: missing {', '.join(missing)}; run `cnnvit compare "
                          f"{run.root}` first")
    manifest = run.read_manifest()
    configs: dict[str, dict[str, Any]] = {}
    for entry in run.models():  # with seeds, the first seed's config stands for the model
        if entry.name not in configs and entry.dir.config.is_file():
            cfg, resolved = entry.dir.read_config()
            configs[entry.name] = {"config": cfg.to_dict(), "resolved": resolved}
        configs.setdefault(entry.name, {"config": {}, "resolved": {}})  # not recorded
    return Facts(run=run, mode=run.mode(), manifest=manifest, final=_csv(needed[0]),
                 per_class=_csv(needed[1]), statistics=read_json(needed[2]), configs=configs,
                 faithfulness=collect.read_explain_csv(run, "faithfulness.csv"),
                 sanity=collect.read_explain_csv(run, "sanity.csv"),
                 learning_curve=_learning_curve(run), robustness=_robustness(run))


def _robustness(run: RunDir) -> dict[str, pd.DataFrame] | None:
    """results/robustness.csv, robustness_summary.csv and robustness_tests.csv, when the
    robustness stage ran."""
    paths = {name: run.results / f"{name}.csv" for name in robustness.NAMES}
    if not all(p.is_file() for p in paths.values()):
        return None
    return {name: _csv(path) for name, path in paths.items()}


def _learning_curve(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """results/learning_curve.csv and learning_curve_tests.csv, when the run has a curve."""
    paths = [run.results / f"{name}.csv" for name in ("learning_curve", "learning_curve_tests")]
    if not all(p.is_file() for p in paths):
        return None
    return _csv(paths[0]), _csv(paths[1])


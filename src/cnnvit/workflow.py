"""`cnnvit run`: the staged comparison study, resumable, timed and recorded.

Stages: data → train (every model × seed) → evaluate → explain → robustness → compare →
figures → report, then `DIR/ARTIFACTS.md` indexes every file. Each stage logs its start and
duration to stdout and `DIR/logs/run_<timestamp>.log`; `DIR/manifest.json` records versions,
device, data, configs and stage timings. Re-running the same command continues: finished
models are kept (unless `force`), interrupted ones resume from their last checkpoint. SIGINT
and SIGTERM (Slurm's time limit) stop the run with a line in the log and the stopped stage in
the manifest.

Under torchrun every process trains each model together (DistributedDataParallel); rank 0
alone writes the log and the manifest, and runs the stages after training on its own.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from cnnvit import __version__, data, fmt
from cnnvit.config import Config
from cnnvit.engine import distributed
from cnnvit.engine.evaluate import evaluate_dir
from cnnvit.engine.runtime import resolve_device
from cnnvit.engine.setup import load_config, load_data
from cnnvit.engine.train import fit, remaining_phases, unfinished_files
from cnnvit.errors import CnnvitError, Interrupted, handling_signals, raise_interrupted
from cnnvit.io import atomic_write_text, make_dir, open_log, read_json, silent_log
from cnnvit.presets import ModelPlan, Preset
from cnnvit.rundir import TRAINING_TIME, ModelDir, RunDir


def _stamp() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"cnnvit": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "medmnist", "numpy", "scikit-learn",
                "grad-cam"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def _device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {"device": str(device), "cpu_count": os.cpu_count(),
                             "gpu_count": torch.cuda.device_count(),
                             "platform": platform.platform()}
    if device.type == "cuda":
        facts["device_name"] = torch.cuda.get_device_name(device)
    else:
        facts["device_name"] = _cpu_name()
    return facts


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _failure(exc: BaseException) -> str:
    """Why a stage failed, in one line."""
    if isinstance(exc, CnnvitError | Interrupted):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]


class Study:
    """One `cnnvit run`: the preset, the run directory, the log and the manifest."""

    def __init__(self, preset: Preset, out: str | Path, *, reduced: bool = False,
                 force: bool = False, explain: bool = True, quiet: bool = False,
                 explain_options: dict[str, Any] | None = None,
                 train_fractions: list[float] | None = None,
                 curve_schedule: str = "epochs", robustness: bool = True) -> None:
        self.preset = preset
        # learning curves: the shares of the training split below 1 (1 is the main study)
        shares = preset.train_fractions if train_fractions is None else train_fractions
        self.fractions = sorted({f for f in shares if f < 1})
        self.curve_schedule = curve_schedule
        self.mode = "reduced" if reduced else "full"
        self.run_dir = RunDir.for_mode(out, self.mode)
        self.root = self.run_dir.root
        self.force = force
        self.explain = explain
        self.robustness = robustness
        self.explain_options = explain_options or {}
        self.quiet = quiet
        self.world = distributed.world_from_env()
        make_dir(self.root)
        started = datetime.now()
        self.log = (open_log(self.run_dir.log_file(started)) if self.world.is_main else
                    silent_log(f"run.rank{self.world.rank}"))
        try:
            old = self.run_dir.read_manifest()
        except CnnvitError:  # a damaged manifest is rewritten below
            old = {}
        self.manifest: dict[str, Any] = {
            "cnnvit_version": __version__, "git_commit": _git_commit(),
            "versions": _versions(), "preset": preset.name, "description": preset.description,
            "mode": self.mode, "command": " ".join(sys.argv), "dataset": preset.dataset,
            "seeds": preset.seeds, "started": started.isoformat(timespec="seconds"),
            "train_fractions": [*self.fractions, 1.0] if self.fractions else None,
            "curve_schedule": curve_schedule if self.fractions else None,
            "stages": {}, "models": {}, "runs": old.get("runs", 0) + 1}
        self._datasets: dict[tuple, data.Dataset] = {}

    def _write_manifest(self) -> None:
        if self.world.is_main:
            self.run_dir.write_manifest(self.manifest)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Log the stage's start and duration and record them in the manifest (or why it
        failed: the error's message, "interrupted ...", "internal error: ...")."""
        start, t0 = _stamp(), time.perf_counter()
        self.log.info(f"[{start}] stage {name}: start")
        try:
            yield
        except (Exception, KeyboardInterrupt) as exc:
            reason = _failure(exc)
            self.log.error(f"[{_stamp()}] stage {name}: failed: {reason}")
            self.manifest["stages"][name] = {"start": start, "failed": reason}
            self._write_manifest()
            raise
        seconds = time.perf_counter() - t0
        end = _stamp()
        self.log.info(f"[{end}] stage {name}: done in {fmt.seconds(seconds)}")
        self.manifest["stages"][name] = {"start": start, "end": end,
                                         "seconds": round(seconds, 3)}
        self._write_manifest()

    # -- the stages -------------------------------------------------------------------------

    def model_dirs(self, fraction: float = 1.0) -> list[tuple[ModelPlan, int, ModelDir]]:
        """(plan, seed, directory) for every model × seed (trained on `fraction` of the
        training split: below 1, under `curves/fraction_<f>/`)."""
        several = len(self.preset.seeds) > 1
        run = self.run_dir if fraction >= 1 else self.run_dir.curve_run(fraction)
        return [(plan, seed, run.model_dir(plan.name, seed if several else None))
                for plan in self.preset.models for seed in self.preset.seeds]

    def config_for(self, plan: ModelPlan, seed: int, model_dir: ModelDir,
                   fraction: float = 1.0) -> Config:
        """A model's config; on a `fraction` of the training split, the same epochs (so fewer
        optimizer steps), or with `curve_schedule` "steps" epochs ÷ fraction (about the same
        steps, warm-up scaled alike)."""
        cfg = load_config(None, {**plan.overrides, "seed": seed, "out": str(model_dir.path)})
        if fraction >= 1:
            return cfg
        cfg = cfg.replace(train_fraction=fraction)
        if self.curve_schedule == "steps":
            cfg = cfg.replace(epochs=math.ceil(cfg.epochs / fraction),
                              warmup_epochs=cfg.warmup_epochs / fraction)
        return cfg

    def _dataset(self, cfg: Config) -> data.Dataset:
        key = (cfg.dataset, cfg.data_size, cfg.image_size, cfg.data_root, cfg.strict_data)
        if key not in self._datasets:
            self._datasets[key] = load_data(cfg)
        return self._datasets[key]

    def stage_data(self) -> None:
        device = resolve_device(self.config_for(*self.model_dirs()[0]).device)
        world = distributed.join(device)  # under torchrun: before any data is loaded
        infos = {}
        for plan, seed, model_dir in self.model_dirs():
            cfg = self.config_for(plan, seed, model_dir)
            with world.main_first():  # a download or a cache write happens once
                ds = self._dataset(cfg)
            key = f"{ds.info.spec} ({ds.info.image_size}px)"
            if key not in infos:
                infos[key] = {"spec": ds.info.spec, "name": ds.info.name,
                              "native_size": ds.info.image_size, "md5": ds.info.md5,
                              "task": ds.info.task, "classes": ds.info.class_names,
                              "split_sizes": {k: len(v) for k, v in ds.splits.items()},
                              "split_note": ds.info.split_note,
                              "synthetic": ds.info.synthetic, "notes": list(ds.info.notes)}
                for line in data.describe(ds).splitlines():
                    self.log.info(f"  {line}")
        self.manifest["data"] = infos
        self.manifest.update(_device_facts(device))
        self.manifest["world_size"] = world.size
        self.manifest["distributed_backend"] = distributed.backend()

    def stage_train(self, fraction: float = 1.0) -> None:
        self.log.info(f"  training time: {TRAINING_TIME}")
        for plan, seed, model_dir in self.model_dirs(fraction):
            cfg = self.config_for(plan, seed, model_dir, fraction)
            extension = cfg.replace(**plan.extend) if plan.extend else None
            label = (f"{plan.name}" + (f" seed {seed}" if len(self.preset.seeds) > 1 else "")
                     + (f" on {fraction:g} of the training split" if fraction < 1 else ""))
            if self.force and model_dir.path.exists() and self.world.is_main:
                shutil.rmtree(model_dir.path)
            self.world.barrier()  # no rank looks at the directory before it is removed
            phases = remaining_phases(cfg, resume=True, extension=extension)
            if not phases:
                self.log.info(f"  {label}: already trained ({model_dir.path}); --force retrains")
            else:
                self._train(label, cfg, extension, phases, model_dir)
            saved, resolved = model_dir.read_config()
            self.manifest["models"][str(model_dir.path.relative_to(self.root))] = {
                "config": saved.to_dict(), "resolved": resolved}
            self._write_manifest()

    def _train(self, label: str, cfg: Config, extension: Config | None, phases: list[Config],
               model_dir: ModelDir) -> None:
        """Train (or continue) one model, logging what it starts from and what it cost."""
        t0 = time.perf_counter()
        self.log.info(f"  [{_stamp()}] {label}: training {cfg.model}")
        if model_dir.checkpoint("last").is_file():
            self.log.info(f"  {label}: continuing from {model_dir.checkpoint('last')}")
        elif model_dir.config.is_file():  # started before, nothing to continue from
            missing = ", ".join(unfinished_files(model_dir))
            self.log.info(f"  {label}: not finished ({missing} missing or unreadable) and no "
                          "checkpoints/last.pt: training from the start")
        if extension is not None and phases[-1] is extension:
            self.log.info(f"  {label}: then an extension phase to {extension.epochs} "
                          f"epochs at lr {extension.lr:g} (a resume of the finished run)")
        files = [h for h in self.log.handlers if isinstance(h, logging.FileHandler)]
        fit(cfg, resume=True, extension=extension, quiet=self.quiet,
            dataset=self._dataset(cfg), also_log_to=files)
        train_seconds = model_dir.read_summary().get("train_seconds")
        self.log.info(f"  [{_stamp()}] {label}: training time {fmt.seconds(train_seconds)}; "
                      f"{fmt.seconds(time.perf_counter() - t0)} in all, with validation, "
                      "checkpoints and evaluation")

    def stage_evaluate(self) -> None:
        for _plan, _seed, model_dir in self.model_dirs():
            missing = [s for s in ("val", "test") if not model_dir.metrics(s).is_file()]
            if missing:
                evaluate_dir(model_dir.path, tuple(missing))
            test = read_json(model_dir.metrics("test"))
            auc = "n/a" if test["auc_macro"] is None else f"{test['auc_macro']:.4f}"
            self.log.info(f"  {model_dir.path.relative_to(self.root)}: test accuracy "
                          f"{test['accuracy']:.4f}, macro-F1 {test['f1_macro']:.4f}, macro-AUC "
                          f"{auc}, loss {test['loss']:.4f}")

    def _explain_is_current(self, stamp: Path) -> bool:
        """The explain outputs were made with these options from the current checkpoints."""
        if self.force or not stamp.is_file():
            return False
        try:
            if json.loads(stamp.read_text()) != self.explain_options:
                return False
        except ValueError:
            return False
        made = stamp.stat().st_mtime
        return all(d.checkpoint("best").stat().st_mtime < made for _, _, d in self.model_dirs())

    def stage_explain(self) -> None:
        from cnnvit.explain.stage import explain_run

        stamp = self.run_dir.explain / "options.json"
        if self._explain_is_current(stamp):
            self.log.info(f"  explanations up to date ({stamp.parent}); --force recomputes")
            return
        out = explain_run(self.root, logger=self.log, progress=not self.quiet,
                          **self.explain_options)
        atomic_write_text(stamp, json.dumps(self.explain_options, sort_keys=True))
        self.log.info(f"  explanations: {out}")

    def stage_robustness(self) -> None:
        from cnnvit.robustness.stage import robustness_run

        robustness_run(self.root, force=self.force, logger=self.log)

    def stage_compare(self) -> None:
        from cnnvit.compare import compare

        paths = compare(self.root, mode=self.mode)
        for name, path in paths.items():
            self.log.info(f"  {name}: {path}")

    def stage_figures(self) -> None:
        from cnnvit.plots.render import plot

        paths = plot(self.root, log=self.log.info)
        if paths:
            self.log.info(f"  figures: {len(paths)} files in {paths[0].parent}")

    def stage_report(self) -> None:
        from cnnvit.report import report

        for kind, path in report(self.root).items():
            self.log.info(f"  report ({kind}): {path}")

    def run(self) -> Path:
        """Run every stage in order; returns the run directory. SIGINT and SIGTERM raise
        `Interrupted` (training first saves where it stands), recorded by `stage`."""
        t0 = time.perf_counter()
        self.log.info(f"cnnvit run --preset {self.preset.name} ({self.mode} mode) → {self.root}")
        self._write_manifest()
        stages: dict[str, Callable[[], None]] = {
                  "data": self.stage_data, "train": self.stage_train,
                  **{f"curve {f:g}": functools.partial(self.stage_train, f)
                     for f in self.fractions},
                  "evaluate": self.stage_evaluate, "explain": self.stage_explain,
                  "robustness": self.stage_robustness, "compare": self.stage_compare,
                  "figures": self.stage_figures, "report": self.stage_report}
        if not self.world.is_main:  # the other ranks of a torchrun job help train, nothing else
            stages = {name: run_stage for name, run_stage in stages.items()
                      if name in ("data", "train") or name.startswith("curve ")}
        with handling_signals(raise_interrupted):
            for name, run_stage in stages.items():
                if {"explain": self.explain, "robustness": self.robustness}.get(name, True):
                    with self.stage(name):
                        run_stage()
        if not self.world.is_main:
            return self.root
        self.log.info(f"  artifact index: {self.run_dir.write_artifact_index()}")
        total = time.perf_counter() - t0
        self.manifest["finished"] = datetime.now().isoformat(timespec="seconds")
        self.manifest["total_seconds"] = round(total, 3)
        self._write_manifest()
        self.log.info(f"[{_stamp()}] total: {fmt.seconds(total)} → {self.root}")
        return self.root

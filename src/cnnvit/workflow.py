"""`cnnvit run`: the staged comparison study, resumable, timed and recorded.

Stages: data → train (every model × seed) → evaluate → explain → compare. Each stage logs its
start and duration to stdout and `DIR/logs/run_<timestamp>.log`; `DIR/manifest.json` records
versions, device, data, configs and stage timings. Re-running the same command continues:
finished models are kept (unless `force`), interrupted ones resume from their last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from cnnvit import __version__, config, data
from cnnvit.config import Config
from cnnvit.engine.evaluate import evaluate_dir
from cnnvit.engine.runtime import resolve_device
from cnnvit.engine.setup import load_data
from cnnvit.engine.train import fit
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_text
from cnnvit.presets import ModelPlan, Preset


def _stamp() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes:02d} min {sec:04.1f} s"
    return f"{minutes} min {sec:04.1f} s" if minutes else f"{sec:.1f} s"


def _logger(path: Path) -> logging.Logger:
    log = logging.getLogger(f"cnnvit.run.{path}")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in (logging.FileHandler(path, encoding="utf-8"),
                    logging.StreamHandler(sys.stdout)):
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    return log


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


class Study:
    """One `cnnvit run`: the preset, the run directory, the log and the manifest."""

    def __init__(self, preset: Preset, out: str | Path, *, reduced: bool = False,
                 force: bool = False, explain: bool = True, quiet: bool = False,
                 explain_options: dict[str, Any] | None = None) -> None:
        self.preset = preset
        self.mode = "reduced" if reduced else "full"
        self.root = Path(out) / "reduced" if reduced else Path(out)
        self.force = force
        self.explain = explain
        self.explain_options = explain_options or {}
        self.quiet = quiet
        self.root.mkdir(parents=True, exist_ok=True)
        started = datetime.now()
        self.log = _logger(self.root / "logs" / f"run_{started:%Y%m%d_%H%M%S}.log")
        old = self._read_manifest()
        self.manifest: dict[str, Any] = {
            "cnnvit_version": __version__, "git_commit": _git_commit(),
            "versions": _versions(), "preset": preset.name, "description": preset.description,
            "mode": self.mode, "command": " ".join(sys.argv), "dataset": preset.dataset,
            "seeds": preset.seeds, "started": started.isoformat(timespec="seconds"),
            "stages": {}, "models": {}, "runs": old.get("runs", 0) + 1}
        self._datasets: dict[tuple, data.Dataset] = {}

    def _read_manifest(self) -> dict[str, Any]:
        path = self.root / "manifest.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def _write_manifest(self) -> None:
        atomic_write_text(self.root / "manifest.json", json.dumps(self.manifest, indent=2,
                                                                  default=str))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Log the stage's start and duration and record them in the manifest."""
        start, t0 = _stamp(), time.perf_counter()
        self.log.info(f"[{start}] stage {name}: start")
        try:
            yield
        except (CnnvitError, KeyboardInterrupt) as exc:
            reason = exc.message if isinstance(exc, CnnvitError) else "interrupted"
            self.log.error(f"[{_stamp()}] stage {name}: failed: {reason}")
            self.manifest["stages"][name] = {"start": start, "failed": reason}
            self._write_manifest()
            raise
        seconds = time.perf_counter() - t0
        end = _stamp()
        self.log.info(f"[{end}] stage {name}: done in {_duration(seconds)}")
        self.manifest["stages"][name] = {"start": start, "end": end,
                                         "seconds": round(seconds, 3)}
        self._write_manifest()

    # -- the stages -------------------------------------------------------------------------

    def model_dirs(self) -> list[tuple[ModelPlan, int, Path]]:
        """(plan, seed, directory) for every model × seed."""
        several = len(self.preset.seeds) > 1
        return [(plan, seed, self.root / "models" / plan.name /
                 (f"seed_{seed}" if several else ""))
                for plan in self.preset.models for seed in self.preset.seeds]

    def config_for(self, plan: ModelPlan, seed: int, model_dir: Path) -> Config:
        return config.load(None, {**plan.overrides, "seed": seed, "out": str(model_dir)})

    def _dataset(self, cfg: Config) -> data.Dataset:
        key = (cfg.dataset, cfg.data_size, cfg.image_size, cfg.data_root)
        if key not in self._datasets:
            self._datasets[key] = load_data(cfg)
        return self._datasets[key]

    def stage_data(self) -> None:
        infos = {}
        for plan, seed, model_dir in self.model_dirs():
            cfg = self.config_for(plan, seed, model_dir)
            ds = self._dataset(cfg)
            key = f"{ds.info.spec} ({ds.info.image_size}px)"
            if key not in infos:
                infos[key] = {"spec": ds.info.spec, "name": ds.info.name,
                              "native_size": ds.info.image_size, "md5": ds.info.md5,
                              "task": ds.info.task, "classes": ds.info.class_names,
                              "split_sizes": {k: len(v) for k, v in ds.splits.items()},
                              "split_note": ds.info.split_note,
                              "synthetic": ds.info.synthetic}
                for line in data.describe(ds).splitlines():
                    self.log.info(f"  {line}")
        self.manifest["data"] = infos
        self.manifest.update(_device_facts(resolve_device(
            self.config_for(*self.model_dirs()[0]).device)))

    def stage_train(self) -> None:
        for plan, seed, model_dir in self.model_dirs():
            cfg = self.config_for(plan, seed, model_dir)
            target = cfg.replace(**plan.extend) if plan.extend else cfg
            label = f"{plan.name}" + (f" seed {seed}" if len(self.preset.seeds) > 1 else "")
            if self.force and model_dir.exists():
                shutil.rmtree(model_dir)
            saved_epochs = (config.from_model_dir(model_dir)[0].epochs
                            if (model_dir / "config.yaml").is_file() else None)
            finished = (model_dir / "summary.json").is_file()  # fit removes it when it starts
            in_extension = bool(plan.extend) and saved_epochs == target.epochs
            if finished and (not plan.extend or in_extension):
                self.log.info(f"  {label}: already trained ({model_dir}); --force retrains")
            else:
                t0 = time.perf_counter()
                self.log.info(f"  [{_stamp()}] {label}: training {cfg.model}")
                ds = self._dataset(cfg)
                if not in_extension and not finished:
                    last = model_dir / "checkpoints" / "last.pt"
                    fit(cfg, resume=last.is_file(), quiet=self.quiet, dataset=ds)
                if plan.extend:
                    self.log.info(f"  {label}: extension phase to {target.epochs} epochs at lr "
                                  f"{target.lr:g} (a resume of the finished run)")
                    fit(target, resume=True, quiet=self.quiet, dataset=ds)
                self.log.info(f"  [{_stamp()}] {label}: trained in "
                              f"{_duration(time.perf_counter() - t0)}")
            saved, resolved = config.from_model_dir(model_dir)
            self.manifest["models"][str(model_dir.relative_to(self.root))] = {
                "config": saved.to_dict(), "resolved": resolved}
            self._write_manifest()

    def stage_evaluate(self) -> None:
        for _plan, _seed, model_dir in self.model_dirs():
            missing = [s for s in ("val", "test")
                       if not (model_dir / f"metrics_{s}.json").is_file()]
            if missing:
                evaluate_dir(model_dir, tuple(missing))
            test = json.loads((model_dir / "metrics_test.json").read_text())
            auc = "n/a" if test["auc_macro"] is None else f"{test['auc_macro']:.4f}"
            self.log.info(f"  {model_dir.relative_to(self.root)}: test accuracy "
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
        return all((d / "checkpoints" / "best.pt").stat().st_mtime < made
                   for _, _, d in self.model_dirs())

    def stage_explain(self) -> None:
        from cnnvit.explain.stage import explain_run

        stamp = self.root / "explain" / "options.json"
        if self._explain_is_current(stamp):
            self.log.info(f"  explanations up to date ({stamp.parent}); --force recomputes")
            return
        out = explain_run(self.root, logger=self.log, **self.explain_options)
        atomic_write_text(stamp, json.dumps(self.explain_options, sort_keys=True))
        self.log.info(f"  explanations: {out}")

    def stage_compare(self) -> None:
        from cnnvit.compare import compare

        paths = compare(self.root, mode=self.mode)
        for name, path in paths.items():
            self.log.info(f"  {name}: {path}")

    def run(self) -> Path:
        """Run every stage in order; returns the run directory."""
        t0 = time.perf_counter()
        self.log.info(f"cnnvit run --preset {self.preset.name} ({self.mode} mode) → {self.root}")
        self._write_manifest()
        with self.stage("data"):
            self.stage_data()
        with self.stage("train"):
            self.stage_train()
        with self.stage("evaluate"):
            self.stage_evaluate()
        if self.explain:
            with self.stage("explain"):
                self.stage_explain()
        with self.stage("compare"):
            self.stage_compare()
        total = time.perf_counter() - t0
        self.manifest["finished"] = datetime.now().isoformat(timespec="seconds")
        self.manifest["total_seconds"] = round(total, 3)
        self._write_manifest()
        self.log.info(f"[{_stamp()}] total: {_duration(total)} → {self.root}")
        return self.root

"""`fit`: train one model into a model directory (its layout: `cnnvit.rundir.ModelDir`).

Per epoch: a seeded permutation of the on-device training split, batched augmentation, one
optimizer step per batch, validation metrics, `history.csv`, `checkpoints/last.pt`, and
`checkpoints/best.pt` when the selection metric improves. At the end the best checkpoint is
evaluated on val and test and `summary.json` is written. `fit` alone decides whether a model
directory is started, resumed, extended or left alone (`remaining_phases`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from cnnvit import __version__, config, metrics, models
from cnnvit.checkpoint import load_checkpoint, save_checkpoint
from cnnvit.config import Config
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Dataset
from cnnvit.engine.evaluate import evaluate_split, predict
from cnnvit.engine.flops import flops_per_image
from cnnvit.engine.optim import build_optimizer, lr_at, set_lr
from cnnvit.engine.runtime import (
    amp_dtype,
    autocast,
    configure,
    epoch_generator,
    epoch_seed,
    seed_everything,
)
from cnnvit.engine.setup import Setup, prepare
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_csv, open_log
from cnnvit.rundir import ModelDir

# Keys a resumed run may change; anything else must match the interrupted run.
RESUMABLE_KEYS = {"epochs", "lr", "patience", "max_minutes", "device", "out", "threads",
                  "eval_batch_size", "download", "data_root", "compile", "min_lr"}
LOWER_IS_BETTER = {"loss"}


@dataclass
class Progress:
    """Where training stands; saved in every last.pt, so a resumed run continues exactly."""

    epoch: int = 0                 # epochs done
    phase_start: int = 0           # first epoch of the current schedule (an extension restarts it)
    best_score: float | None = None
    best_epoch: int = 0
    stale: int = 0                 # epochs since the selection metric last improved
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """What one training phase works with, built once by `_open`."""

    cfg: Config
    out: ModelDir
    setup: Setup
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    log: logging.Logger
    resolved: dict[str, Any]
    memory: MemoryPeak
    train: BatchPipeline
    val: BatchPipeline


def remaining_phases(cfg: Config, resume: bool = False,
                     extension: Config | None = None) -> list[Config]:
    """The training phases still to run in `cfg.out`, in order: [] when it is finished.

    `extension` is a second phase (more epochs, a new lr) run as a resume of the finished
    first one. Without a `last.pt` everything starts from scratch; with one, `resume` must be
    set, the phases must differ from the saved run only in `RESUMABLE_KEYS`, and the saved run
    continues in the phase whose epochs and lr it was started with (a saved run asked for other
    epochs or lr is extended).
    """
    out = ModelDir(cfg.out)
    phases = [cfg] if extension is None else [cfg, extension]
    if not out.checkpoint("last").is_file():
        return phases
    if not resume:
        raise CnnvitError(f"{out.path} already holds a trained model; pass --resume to continue "
                          "it or choose another --out")
    saved, _ = out.read_config()
    for phase in phases:
        _check_resume(phase, saved.to_dict())
    for i, phase in enumerate(phases):
        if (phase.epochs, phase.lr) == (saved.epochs, saved.lr):
            return phases[i + 1:] if out.finished else phases[i:]
    return phases


def resume_config(out: str, overrides: dict[str, Any]) -> Config | None:
    """The config to resume `out` with: its saved config with `overrides` on top (None when
    `out` holds no model yet)."""
    model_dir = ModelDir(out)
    if not model_dir.config.is_file():
        return None
    saved, _ = model_dir.read_config()
    return config.apply_overrides(saved, overrides)


def fit(cfg: Config, *, resume: bool = False, extension: Config | None = None,
        quiet: bool = False, dataset: Dataset | None = None,
        also_log_to: Sequence[logging.Handler] = ()) -> Path:
    """Train `cfg.model` on `cfg.dataset` into `cfg.out` (then `extension`, if given); returns
    the model directory. `dataset`: the already loaded data `cfg.dataset` names;
    `also_log_to`: handlers (e.g. a run log's file) that get the training log's lines too."""
    for phase in remaining_phases(cfg, resume, extension):
        _fit_phase(phase, quiet, dataset, also_log_to)
    return Path(cfg.out)


def _fit_phase(cfg: Config, quiet: bool, dataset: Dataset | None,
               also_log_to: Sequence[logging.Handler]) -> None:
    """One training phase, from scratch or from `last.pt`, to `summary.json`."""
    out = ModelDir(cfg.out)
    state = load_checkpoint(out.checkpoint("last")) if out.checkpoint("last").is_file() else None
    out.summary.unlink(missing_ok=True)  # present only once training has finished
    run = _open(cfg, out, state, quiet, dataset)
    for handler in also_log_to:
        run.log.addHandler(handler)
    progress = _restore(run, state) if state is not None else _start(run)
    train_model: Callable[..., Any] = torch.compile(run.model) if cfg.compile else run.model
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    stop_reason = "finished"
    for epoch in range(progress.epoch, cfg.epochs):
        if progress.stale and cfg.patience and progress.stale >= cfg.patience:
            stop_reason = f"early stop: {progress.stale} epochs without improvement"
            break
        if deadline is not None and time.monotonic() > deadline:
            stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
            break
        train, cut_short = _train_epoch(run, train_model, epoch, progress.phase_start,
                                        deadline, quiet)
        val = _validate(run)
        score = _score(val, cfg.selection_metric)
        improved = _record(progress, epoch, train, val, score, cfg.selection_metric)
        _save_checkpoints(run, progress, improved, score)
        _log_epoch(run, progress.history[-1])
        if cut_short:
            stop_reason = f"time budget of {cfg.max_minutes:g} min reached mid-epoch"
            break
    _finish(run, progress, stop_reason)


def _check_resume(cfg: Config, saved: dict[str, Any]) -> None:
    changed = sorted(k for k, v in cfg.to_dict().items()
                     if k not in RESUMABLE_KEYS and saved.get(k) != v)
    if changed:
        listing = ", ".join(f"{k}: {saved.get(k)!r} → {getattr(cfg, k)!r}" for k in changed[:5])
        raise CnnvitError(f"cannot resume: the config differs from the interrupted run "
                          f"({listing}). Only {', '.join(sorted(RESUMABLE_KEYS))} may change; "
                          "use a new --out to train a different configuration")


def _open(cfg: Config, out: ModelDir, state: dict[str, Any] | None, quiet: bool,
          dataset: Dataset | None) -> Run:
    """Seed, load the data, build the model and optimizer, write config.yaml."""
    configure(cfg.threads, cfg.deterministic)
    seed_everything(cfg.seed)
    setup = prepare(cfg, dataset)
    memory = MemoryPeak(setup.device)
    # A resumed run loads its own weights from the checkpoint: no pretrained download needed.
    model = setup.build_model(pretrained=False, weights=None) if state else setup.build_model()
    log = open_log(out.log, console=not quiet, timestamps=True)  # now: bad input leaves no file
    resolved = setup.resolved() | {
        "parameters": models.count_parameters(model), "family": models.family(model),
        "cnnvit_version": __version__, "torch_version": str(torch.__version__),
        "weights_report": getattr(model, "cnnvit_weights_report", None),
        "flops_per_image": (state["resolved"].get("flops_per_image") if state else
                            flops_per_image(model, setup.info.channels, setup.image_size))}
    out.write_config(cfg, resolved)
    dtype = amp_dtype(cfg.amp, setup.device)
    return Run(cfg, out, setup, model, build_optimizer(model, cfg),
               torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), dtype, log,
               resolved, memory, setup.pipeline("train", train=True), setup.pipeline("val"))


def _start(run: Run) -> Progress:
    info, cfg = run.setup.info, run.cfg
    run.log.info(f"training {cfg.model} ({run.resolved['parameters'] / 1e6:.2f} M params) on "
                 f"{cfg.dataset}{' [SYNTHETIC]' if info.synthetic else ''}: "
                 f"{run.resolved['split_sizes']} at {run.setup.image_size}px on "
                 f"{run.setup.device}")
    return Progress()


def _restore(run: Run, state: dict[str, Any]) -> Progress:
    """Weights, optimizer and progress from last.pt; a new epochs/lr target is an extension."""
    cfg = run.cfg
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if "scaler" in state and run.scaler.is_enabled():
        run.scaler.load_state_dict(state["scaler"])
    progress = Progress(**{k: state[k] for k in Progress.__dataclass_fields__})
    progress.history = list(progress.history)
    saved = state["config"]
    if (cfg.epochs, cfg.lr) == (saved["epochs"], saved["lr"]):
        run.log.info(f"resuming at epoch {progress.epoch + 1}/{cfg.epochs}")
        return progress
    if cfg.epochs <= progress.epoch:
        raise CnnvitError(f"cannot extend {run.out.path}: it already ran {progress.epoch} "
                          f"epochs; ask for more with --epochs N (N > {progress.epoch})")
    progress.phase_start, progress.stale = progress.epoch, 0  # a new schedule over the new epochs
    run.log.info(f"extending from epoch {progress.epoch} to {cfg.epochs} at lr {cfg.lr:g}")
    return progress


def train_step(model: Callable[..., torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               optimizer: torch.optim.Optimizer, criterion: torch.nn.Module,
               scaler: torch.amp.GradScaler, dtype: torch.dtype | None,
               grad_clip: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step (autocast, scaled backward, optional clipping); (logits, loss)."""
    with autocast(x.device, dtype):
        logits = model(x)
        loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return logits.detach(), loss.detach()


def _train_epoch(run: Run, train_model: Callable[..., Any], epoch: int, phase_start: int,
                 deadline: float | None, quiet: bool) -> tuple[dict[str, Any], bool]:
    """One pass over the training split: (lr, loss, accuracy, seconds, images/s; cut short?)."""
    cfg, device, pipe = run.cfg, run.setup.device, run.train
    steps = pipe.num_batches(cfg.batch_size, drop_last=True)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    torch.manual_seed(epoch_seed(cfg.seed, epoch))  # dropout etc. reproducible per epoch
    gen = epoch_generator(cfg.seed, epoch, device)
    run.model.train()  # the compiled module shares its modules with the model
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, epoch_lr, cut_short = 0, 0.0, False
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, unit="batch",
               disable=quiet or not sys.stderr.isatty())
    for step, (x, y) in enumerate(pipe.batches(cfg.batch_size, gen, drop_last=True)):
        lr = lr_at(cfg, epoch + step / steps, phase_start, 1 / steps)
        epoch_lr = lr if step == 0 else epoch_lr
        set_lr(run.optimizer, lr)
        logits, loss = train_step(train_model, x, y, run.optimizer, criterion, run.scaler,
                                  run.dtype, cfg.grad_clip)
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        bar.update(1)
        if step % 8 == 0:
            run.memory.sample()
        if deadline is not None and time.monotonic() > deadline:
            cut_short = True
            break
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return {"lr": epoch_lr, "loss": float(loss_sum) / max(seen, 1),
            "accuracy": int(correct) / max(seen, 1), "seconds": seconds,
            "images_per_s": seen / seconds}, cut_short


def _validate(run: Run) -> dict[str, Any]:
    """Metrics of the current weights on the validation split."""
    info = run.setup.info
    probs, _ = predict(run.model, run.val, run.cfg.eval_batch_size, run.dtype)
    return metrics.compute(run.setup.dataset["val"].labels, probs, list(info.class_names),
                           task=info.task)


def _score(result: dict[str, Any], metric: str) -> float:
    value = result.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        # e.g. AUC undefined on a one-class val split: fall back to a defined metric
        value = result["loss"] if metric in LOWER_IS_BETTER else result["accuracy"]
    return float(value)


def _record(progress: Progress, epoch: int, train: dict[str, Any], val: dict[str, Any],
            score: float, metric: str) -> bool:
    """Add the epoch to the history (one row of history.csv); whether it is the best so far."""
    best = progress.best_score
    improved = best is None or (score < best if metric in LOWER_IS_BETTER else score > best)
    progress.history.append({
        "epoch": epoch + 1, "lr": train["lr"], "train_loss": train["loss"],
        "train_accuracy": train["accuracy"], "val_loss": val["loss"],
        "val_accuracy": val["accuracy"], "val_f1_macro": val["f1_macro"],
        "val_auc_macro": val["auc_macro"], "val_ece": val["ece"],
        "seconds": round(train["seconds"], 3),
        "train_images_per_s": round(train["images_per_s"], 1), "best": improved,
        "phase_start": progress.phase_start})
    progress.epoch = epoch + 1
    progress.train_seconds += train["seconds"]
    if improved:
        progress.best_score, progress.best_epoch, progress.stale = score, epoch + 1, 0
    else:
        progress.stale += 1
    return improved


def _save_checkpoints(run: Run, progress: Progress, improved: bool, score: float) -> None:
    """best.pt when the epoch improved, history.csv, then last.pt (the epoch is done once it
    exists)."""
    state = run.model.state_dict()
    cfg = run.cfg.to_dict()
    if improved:
        save_checkpoint(run.out.checkpoint("best"),
                        {"model": state, "epoch": progress.epoch, "config": cfg,
                         "resolved": run.resolved, "score": score,
                         "selection_metric": run.cfg.selection_metric})
    atomic_write_csv(pd.DataFrame(progress.history), run.out.history)
    payload = {"model": state, "optimizer": run.optimizer.state_dict(), **asdict(progress),
               "config": cfg, "resolved": run.resolved}
    if run.scaler.is_enabled():
        payload["scaler"] = run.scaler.state_dict()
    save_checkpoint(run.out.checkpoint("last"), payload)


def _log_epoch(run: Run, row: dict[str, Any]) -> None:
    auc = "n/a" if row["val_auc_macro"] is None else f"{row['val_auc_macro']:.3f}"
    run.log.info(f"epoch {row['epoch']:>3}/{run.cfg.epochs} lr {row['lr']:.2e} | train loss "
                 f"{row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | val loss "
                 f"{row['val_loss']:.4f} acc {row['val_accuracy']:.3f} f1 "
                 f"{row['val_f1_macro']:.3f} auc {auc} | {row['seconds']:.1f}s "
                 f"{row['train_images_per_s']:.0f} img/s{' *' if row['best'] else ''}")


def _finish(run: Run, progress: Progress, stop_reason: str) -> None:
    """Evaluate the best checkpoint on val and test; write summary.json last."""
    cfg, out = run.cfg, run.out
    if not progress.history:
        raise CnnvitError(f"{out.path}: no epoch was trained (the time budget was already "
                          "spent?)")
    run.log.info(f"{stop_reason}; best epoch {progress.best_epoch} ({cfg.selection_metric} "
                 f"{progress.best_score:.4f}); evaluating the best checkpoint on val and test")
    run.model.load_state_dict(load_checkpoint(out.checkpoint("best"))["model"])
    extra = {"checkpoint": "best", "epoch": progress.best_epoch}
    results = {s: evaluate_split(run.model, run.setup, s, out, extra) for s in ("val", "test")}
    out.write_summary(_summary(run, progress, stop_reason, results["test"]))
    test = results["test"]
    auc = "n/a" if test["auc_macro"] is None else f"{test['auc_macro']:.4f}"
    run.log.info(f"test: acc {test['accuracy']:.4f} f1_macro {test['f1_macro']:.4f} "
                 f"auc_macro {auc} loss {test['loss']:.4f} → {out.path}")


def _summary(run: Run, progress: Progress, stop_reason: str,
             test: dict[str, Any]) -> dict[str, Any]:
    """Cost and outcome of the run, and what later stages need to describe the model."""
    cfg, setup, history = run.cfg, run.setup, progress.history
    return {"model": cfg.model, "architecture": cfg.model, "family": run.resolved["family"],
            "dataset": cfg.dataset, "synthetic": setup.info.synthetic,
            "num_classes": setup.info.num_classes, "in_chans": setup.info.channels,
            "pretrained": cfg.pretrained, "weights": cfg.weights,
            "parameters": run.resolved["parameters"],
            "flops_per_image": run.resolved["flops_per_image"], "image_size": setup.image_size,
            "epochs": cfg.epochs, "epochs_run": len(history),
            "best_epoch": progress.best_epoch, "stop_reason": stop_reason,
            "train_seconds": round(progress.train_seconds, 3),
            "train_images_per_s": round(sum(h["train_images_per_s"] for h in history)
                                        / len(history), 1),
            "eval_images_per_s": test["eval_images_per_s"], **run.memory.report(),
            "device": str(setup.device)}


class MemoryPeak:
    """Peak memory while training: CUDA's max allocated, or the growth of this process's RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = self.peak = rss_bytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_bytes())

    def report(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(self.device)),
                    "peak_memory_kind": "cuda_max_allocated"}
        return {"peak_memory_bytes": int(self.peak - self.base),
                "peak_memory_kind": "cpu_rss_growth"}


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0

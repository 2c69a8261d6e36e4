"""`fit`: train one model into a model directory (see DESIGN.md for the layout).

Per epoch: a seeded permutation of the on-device training split, batched augmentation, one
optimizer step per batch, validation metrics, `history.csv`, `checkpoints/last.pt`, and
`checkpoints/best.pt` when the selection metric improves. At the end the best checkpoint is
evaluated on val and test. `resume=True` continues from `last.pt`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from cnnvit import __version__, metrics, models
from cnnvit import config as config_mod
from cnnvit.checkpoint import load_checkpoint, save_checkpoint
from cnnvit.config import Config
from cnnvit.data.types import Dataset
from cnnvit.engine.evaluate import evaluate_split, predict
from cnnvit.engine.flops import flops_per_image
from cnnvit.engine.optim import build_optimizer, lr_at, set_lr
from cnnvit.engine.runtime import (
    amp_dtype,
    autocast,
    configure,
    epoch_generator,
    seed_everything,
)
from cnnvit.engine.setup import Setup, prepare
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_csv, atomic_write_text

# Keys a resumed run may change; anything else must match the interrupted run.
RESUMABLE_KEYS = {"epochs", "lr", "patience", "max_minutes", "device", "out", "threads",
                  "eval_batch_size", "download", "data_root", "compile", "min_lr"}
LOWER_IS_BETTER = {"loss"}


def _logger(path: Path, quiet: bool) -> logging.Logger:
    log = logging.getLogger(f"cnnvit.train.{path}")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(fh)
    if not quiet:
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(sh)
    return log


def _better(score: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return score < best if metric in LOWER_IS_BETTER else score > best


def _score(result: dict[str, Any], metric: str) -> float:
    value = result.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        # e.g. AUC undefined on a one-class val split: fall back to a defined metric
        value = result["loss"] if metric in LOWER_IS_BETTER else result["accuracy"]
    return float(value)


def _check_resume(cfg: Config, saved: dict[str, Any]) -> None:
    changed = sorted(k for k, v in cfg.to_dict().items()
                     if k not in RESUMABLE_KEYS and saved.get(k) != v)
    if changed:
        listing = ", ".join(f"{k}: {saved.get(k)!r} → {getattr(cfg, k)!r}" for k in changed[:5])
        raise CnnvitError(f"cannot resume: the config differs from the interrupted run "
                          f"({listing}). Only {', '.join(sorted(RESUMABLE_KEYS))} may change; "
                          "use a new --out to train a different configuration")


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
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
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return logits.detach(), loss.detach()


def fit(cfg: Config, *, resume: bool = False, quiet: bool = False,
        dataset: Dataset | None = None) -> Path:
    """Train `cfg.model` on `cfg.dataset` into `cfg.out`; returns the model directory.

    `dataset`: the already loaded data `cfg.dataset` names (saves reloading it per model).
    """
    out = Path(cfg.out)
    last_path = out / "checkpoints" / "last.pt"
    state = load_checkpoint(last_path) if resume and last_path.is_file() else None
    if resume and state is None and (out / "config.yaml").exists():
        raise CnnvitError(f"cannot resume {out}: checkpoints/last.pt is missing")
    if state is not None:
        _check_resume(cfg, state["config"])
    elif not resume and (out / "checkpoints" / "last.pt").exists():
        raise CnnvitError(f"{out} already holds a trained model; pass --resume to continue it "
                          "or choose another --out")

    (out / "summary.json").unlink(missing_ok=True)  # present only once training has finished
    configure(cfg.threads, cfg.deterministic)
    seed_everything(cfg.seed)
    setup = prepare(cfg, dataset)
    base_rss = peak_rss = rss_bytes()  # CPU memory: growth above this while training
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    # A resumed run loads its own weights from the checkpoint: no pretrained download needed.
    model = setup.build_model(pretrained=False, weights=None) if state else setup.build_model()
    log = _logger(out / "train.log", quiet)  # only now: a bad model or data leaves no files
    resolved = setup.resolved() | {
        "parameters": models.count_parameters(model),
        "cnnvit_version": __version__, "torch_version": str(torch.__version__),
        "weights_report": getattr(model, "cnnvit_weights_report", None),
    }
    if state is not None:
        resolved["flops_per_image"] = state["resolved"].get("flops_per_image")
    else:
        resolved["flops_per_image"] = flops_per_image(model, setup.info.channels,
                                                      setup.image_size)
    config_mod.write(cfg, out / "config.yaml", resolved)

    optimizer = build_optimizer(model, cfg)
    dtype = amp_dtype(cfg.amp, setup.device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    history: list[dict[str, Any]] = []
    start_epoch, phase_start, best, best_epoch, stale, train_seconds = 0, 0, None, 0, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        history = list(state["history"])
        start_epoch, phase_start = int(state["epoch"]), int(state["phase_start"])
        best, best_epoch = state["best_score"], int(state["best_epoch"])
        stale, train_seconds = int(state["stale"]), float(state["train_seconds"])
        saved = state["config"]
        if cfg.epochs != saved["epochs"] or cfg.lr != saved["lr"]:
            if cfg.epochs <= start_epoch:
                raise CnnvitError(f"cannot extend {out}: it already ran {start_epoch} epochs; "
                                  f"ask for more with --epochs N (N > {start_epoch})")
            phase_start = start_epoch  # an extension: a new schedule over the added epochs
            stale = 0
            log.info(f"extending from epoch {start_epoch} to {cfg.epochs} at lr {cfg.lr:g}")
        else:
            log.info(f"resuming at epoch {start_epoch + 1}/{cfg.epochs}")
    else:
        log.info(f"training {cfg.model} ({resolved['parameters'] / 1e6:.2f} M params) on "
                 f"{cfg.dataset}{' [SYNTHETIC]' if setup.info.synthetic else ''}: "
                 f"{resolved['split_sizes']} at {setup.image_size}px on {setup.device}")

    train_model = torch.compile(model) if cfg.compile else model
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    train_pipe, val_pipe = setup.pipeline("train", train=True), setup.pipeline("val")
    steps = train_pipe.num_batches(cfg.batch_size, drop_last=True)
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    stop_reason = "finished"
    show_bar = not quiet and sys.stderr.isatty()

    for epoch in range(start_epoch, cfg.epochs):
        if stale and cfg.patience and stale >= cfg.patience:
            stop_reason = f"early stop: {stale} epochs without improvement"
            break
        if deadline is not None and time.monotonic() > deadline:
            stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
            break
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout etc. reproducible per epoch
        gen = epoch_generator(cfg.seed, epoch, setup.device)
        train_model.train()
        loss_sum = torch.zeros((), device=setup.device)
        correct = torch.zeros((), device=setup.device, dtype=torch.long)
        seen = 0
        t0 = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not show_bar, unit="batch")
        for step, (x, y) in enumerate(train_pipe.batches(cfg.batch_size, gen, drop_last=True)):
            lr = lr_at(cfg, epoch + step / steps, phase_start, 1 / steps)
            if step == 0:
                epoch_lr = lr
            set_lr(optimizer, lr)
            logits, loss = train_step(train_model, x, y, optimizer, criterion, scaler, dtype,
                                      cfg.grad_clip)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            bar.update(1)
            if step % 8 == 0:
                peak_rss = max(peak_rss, rss_bytes())
            if deadline is not None and time.monotonic() > deadline:
                stop_reason = f"time budget of {cfg.max_minutes:g} min reached mid-epoch"
                break
        bar.close()
        if setup.device.type == "cuda":
            torch.cuda.synchronize(setup.device)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        probs, _ = predict(model, val_pipe, cfg.eval_batch_size, dtype)
        val = metrics.compute(setup.dataset["val"].labels, probs,
                              list(setup.info.class_names), task=setup.info.task)
        score = _score(val, cfg.selection_metric)
        improved = _better(score, best, cfg.selection_metric)
        row = {"epoch": epoch + 1, "lr": epoch_lr, "train_loss": float(loss_sum) / max(seen, 1),
               "train_accuracy": int(correct) / max(seen, 1), "val_loss": val["loss"],
               "val_accuracy": val["accuracy"], "val_f1_macro": val["f1_macro"],
               "val_auc_macro": val["auc_macro"], "val_ece": val["ece"],
               "seconds": round(seconds, 3), "train_images_per_s": round(seen / seconds, 1),
               "best": improved}
        history.append(row)
        if improved:
            best, best_epoch, stale = score, epoch + 1, 0
        else:
            stale += 1
        payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "epoch": epoch + 1, "phase_start": phase_start, "best_score": best,
                   "best_epoch": best_epoch, "stale": stale, "train_seconds": train_seconds,
                   "history": history, "config": cfg.to_dict(), "resolved": resolved}
        if scaler.is_enabled():
            payload["scaler"] = scaler.state_dict()
        if improved:
            save_checkpoint(out / "checkpoints" / "best.pt",
                            {"model": payload["model"], "epoch": epoch + 1,
                             "config": payload["config"], "resolved": resolved,
                             "score": score, "selection_metric": cfg.selection_metric})
        atomic_write_csv(pd.DataFrame(history), out / "history.csv")
        save_checkpoint(last_path, payload)  # last: the epoch counts as done once this exists
        auc = "n/a" if val["auc_macro"] is None else f"{val['auc_macro']:.3f}"
        log.info(f"epoch {epoch + 1:>3}/{cfg.epochs} lr {epoch_lr:.2e} | train loss "
                 f"{row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | val loss "
                 f"{val['loss']:.4f} acc {val['accuracy']:.3f} f1 {val['f1_macro']:.3f} auc "
                 f"{auc} | {seconds:.1f}s {row['train_images_per_s']:.0f} img/s"
                 f"{' *' if improved else ''}")
        if stop_reason.endswith("mid-epoch"):
            break

    if not history:
        raise CnnvitError(f"{out}: no epoch was trained (the time budget was already spent?)")
    log.info(f"{stop_reason}; best epoch {best_epoch} ({cfg.selection_metric} {best:.4f}); "
             f"evaluating the best checkpoint on val and test")
    best_state = load_checkpoint(out / "checkpoints" / "best.pt")
    model.load_state_dict(best_state["model"])
    extra = {"checkpoint": "best", "epoch": best_epoch}
    results = {s: evaluate_split(model, setup, s, out, extra) for s in ("val", "test")}
    summary = _summary(setup, resolved, history, best_epoch, train_seconds, stop_reason,
                       results, base_rss, peak_rss)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    test = results["test"]
    log.info(f"test: acc {test['accuracy']:.4f} f1_macro {test['f1_macro']:.4f} "
             f"auc_macro {test['auc_macro']} loss {test['loss']:.4f} → {out}")
    return out


def _summary(setup: Setup, resolved: dict, history: list[dict], best_epoch: int,
             train_seconds: float, stop_reason: str, results: dict, base_rss: int,
             peak_rss: int) -> dict[str, Any]:
    """Cost and outcome of the run, read by `cnnvit compare`."""
    device = setup.device
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else peak_rss - base_rss)
    return {"model": setup.cfg.model, "dataset": setup.cfg.dataset,
            "synthetic": setup.info.synthetic, "parameters": resolved["parameters"],
            "flops_per_image": resolved["flops_per_image"], "image_size": setup.image_size,
            "epochs": setup.cfg.epochs, "epochs_run": len(history), "best_epoch": best_epoch,
            "stop_reason": stop_reason,
            "train_seconds": round(train_seconds, 3),
            "train_images_per_s": round(sum(h["train_images_per_s"] for h in history)
                                        / len(history), 1),
            "eval_images_per_s": results["test"]["eval_images_per_s"],
            "peak_memory_bytes": int(peak), "peak_memory_kind": (
                "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_growth"),
            "device": str(device)}


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0

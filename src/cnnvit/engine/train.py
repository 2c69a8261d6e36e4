"""`fit`: train one model into a model directory (its layout: `cnnvit.rundir.ModelDir`).

Per epoch: a seeded permutation of the on-device training split, batched augmentation, one
optimizer step per batch, validation metrics, `history.csv`, `checkpoints/last.pt`, and
`checkpoints/best.pt` when the selection metric improves. At the end the best checkpoint is
evaluated on val and test and `summary.json` is written. `fit` alone decides whether a model
directory is started, resumed, extended or left alone (`remaining_phases`).

Faults: SIGINT or SIGTERM stop training after the current optimizer step; `last.pt` then holds
the epoch in progress (its running totals and random state too), so running the same command
again ends exactly where an uninterrupted run would have. A non-finite loss stops training
(`nan_policy: stop`, keeping the checkpoints written before it) or skips the batch
(`nan_policy: skip-batch`).

Under torchrun (`cnnvit.engine.distributed`) every process runs `fit` on its part of each
global batch through DistributedDataParallel; the processes take every stop decision together
at the periodic host check, and rank 0 alone writes.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pandas as pd
import torch
from tqdm.auto import tqdm

from cnnvit import __version__, config, metrics, models
from cnnvit.checkpoint import is_readable_checkpoint, load_checkpoint, save_checkpoint
from cnnvit.config import Config
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Dataset
from cnnvit.engine.distributed import World, join
from cnnvit.engine.evaluate import evaluate_split, predict
from cnnvit.engine.flops import flops_per_image
from cnnvit.engine.memory import MemoryPeak
from cnnvit.engine.optim import build_optimizer, lr_at, set_lr
from cnnvit.engine.progress import EpochState, Progress
from cnnvit.engine.runtime import (
    autocast,
    configure,
    epoch_generator,
    epoch_seed,
    rank_seed,
    resolve_device,
    seed_everything,
    training_dtype,
)
from cnnvit.engine.setup import Setup, prepare
from cnnvit.errors import (
    CnnvitError,
    Interrupted,
    handling_signals,
    raise_interrupted,
    signal_name,
)
from cnnvit.io import atomic_write_csv, check_creatable, open_log, read_json, silent_log
from cnnvit.rundir import ModelDir

# Keys a resumed run may change; anything else must match the interrupted run.
RESUMABLE_KEYS = {"epochs", "lr", "patience", "max_minutes", "device", "out", "threads",
                  "eval_batch_size", "download", "data_root", "compile", "min_lr", "nan_policy"}
LOWER_IS_BETTER = {"loss"}
CHECK_EVERY = 8  # optimizer steps between host-side checks (memory, a non-finite loss)


class StopRequest:
    """The SIGINT/SIGTERM handler while training: the first signal asks the loop to stop after
    the current optimizer step (and save); a second one stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise_interrupted(signum, frame)
        self.signum = signum


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
    stop: StopRequest
    skip_nonfinite: bool           # nan_policy skip-batch
    world: World                   # this process among those of a torchrun job


def unfinished_files(out: ModelDir) -> list[str]:
    """The files of a finished model that are missing or do not parse, relative to `out`
    ([]: it is finished): summary.json, checkpoints/best.pt, metrics_{val,test}.json."""
    missing = [p for p in (out.summary, out.metrics("val"), out.metrics("test"))
               if not _parses(p)]
    if not is_readable_checkpoint(out.checkpoint("best")):
        missing.insert(1, out.checkpoint("best"))
    return [p.relative_to(out.path).as_posix() for p in missing]


def _parses(path: Path) -> bool:
    try:
        return path.is_file() and bool(read_json(path))
    except CnnvitError:
        return False


def remaining_phases(cfg: Config, resume: bool = False,
                     extension: Config | None = None) -> list[Config]:
    """The training phases still to run in `cfg.out`, in order: [] when it is finished.

    `extension` is a second phase (more epochs, a new lr) run as a resume of the finished
    first one. An unfinished model (`unfinished_files`) without a `last.pt` starts from
    scratch; with one it continues, whether `resume` is set or not. A finished model is
    continued only with `resume`. A continued run must differ from the saved one only in
    `RESUMABLE_KEYS`, and goes on in the phase whose epochs and lr it was started with (a
    saved run asked for other epochs or lr is extended).
    """
    out = ModelDir(cfg.out)
    phases = [cfg] if extension is None else [cfg, extension]
    finished, has_last = not unfinished_files(out), out.checkpoint("last").is_file()
    if not finished and not has_last:
        return phases
    if finished and not resume:
        raise CnnvitError(f"{out.path} already holds a trained model; pass --resume to extend "
                          "it (more --epochs, a new --lr) or choose another --out")
    saved, _ = out.read_config()
    for phase in phases:
        _check_resume(phase, saved.to_dict())
    todo = next((phases[i + 1:] if finished else phases[i:] for i, phase in enumerate(phases)
                 if (phase.epochs, phase.lr) == (saved.epochs, saved.lr)), phases)
    if todo and not has_last:
        raise CnnvitError(f"cannot extend {out.path}: {out.checkpoint('last')} (the optimizer "
                          "state to continue from) is missing; train into a new --out")
    return todo


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
    `also_log_to`: handlers (e.g. a run log's file) that get the training log's lines too.

    While it runs, SIGINT and SIGTERM stop training after the current optimizer step, save it
    in last.pt and raise `Interrupted`; the previous handlers are restored afterwards.
    """
    phases = remaining_phases(cfg, resume, extension)
    if phases:
        check_creatable(cfg.out)  # before anything is loaded or written
    stop = StopRequest()
    with handling_signals(stop):
        for phase in phases:
            _fit_phase(phase, quiet, dataset, also_log_to, stop)
    return Path(cfg.out)


def _fit_phase(cfg: Config, quiet: bool, dataset: Dataset | None,
               also_log_to: Sequence[logging.Handler], stop: StopRequest) -> None:
    """One training phase, from scratch or from `last.pt`, to `summary.json`."""
    out = ModelDir(cfg.out)
    state = load_checkpoint(out.checkpoint("last")) if out.checkpoint("last").is_file() else None
    if state is not None:
        _check_best_kept(out, state)
    run = _open(cfg, out, state, quiet, dataset, stop)
    if run.world.is_main:
        out.summary.unlink(missing_ok=True)  # present only once training has finished
    for handler in also_log_to:
        run.log.addHandler(handler)
    progress = _restore(run, state) if state is not None else _start(run)
    partial = (EpochState.from_checkpoint(state["partial"], run.setup.device, run.world)
               if state is not None and state.get("partial") else None)
    train_model = _training_module(run)
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    stop_reason = "finished"
    for epoch in range(progress.epoch, cfg.epochs):
        if progress.stale and cfg.patience and progress.stale >= cfg.patience:
            stop_reason = f"early stop: {progress.stale} epochs without improvement"
            break
        ending = _ending(run, deadline)
        if ending == "signal":
            _interrupted(run, progress, partial)
        if ending == "budget":
            stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
            break
        done, ending = _train_epoch(run, train_model, epoch, progress.phase_start, deadline,
                                    quiet, partial)
        partial = None
        if ending == "signal":
            _interrupted(run, progress, done)
        val = _validate(run)
        score = _score(val, cfg.selection_metric)
        improved = _record(progress, epoch, _epoch_totals(run, done.reduced(run.world)), val,
                           score, cfg.selection_metric)
        _save_checkpoints(run, progress, improved, score)
        _log_epoch(run, progress.history[-1])
        if ending == "budget":
            stop_reason = f"time budget of {cfg.max_minutes:g} min reached mid-epoch"
            break
    _finish(run, progress, stop_reason)
    run.world.barrier()  # every rank leaves with the model's files written
    if stop.signum is not None:  # it came while the best checkpoint was evaluated
        _stop(run, f"interrupted by {signal_name(stop.signum)} after training finished; the "
                   f"results in {out.path} are complete")


def _training_module(run: Run) -> Callable[..., Any]:
    """The module training steps call: the model, in DistributedDataParallel when several
    processes train it (their gradients averaged at each step), compiled with `compile`."""
    module: torch.nn.Module = run.model
    if run.world.distributed:
        device = run.setup.device
        module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(module) if run.cfg.compile else module


def _ending(run: Run, deadline: float | None) -> str | None:
    """Why training must end now: "signal" (SIGINT/SIGTERM), "budget" (--max-minutes) or
    None. Several processes decide together, so that all stop after the same step."""
    signal, budget = run.world.any([run.stop.signum is not None,
                                    deadline is not None and time.monotonic() > deadline],
                                   run.setup.device)
    return "signal" if signal else "budget" if budget else None


def _check_resume(cfg: Config, saved: dict[str, Any]) -> None:
    changed = sorted(k for k, v in cfg.to_dict().items()
                     if k not in RESUMABLE_KEYS and saved.get(k) != v)
    if changed:
        listing = ", ".join(f"{k}: {saved.get(k)!r} → {getattr(cfg, k)!r}" for k in changed[:5])
        raise CnnvitError(f"cannot resume: the config differs from the interrupted run "
                          f"({listing}). Only {', '.join(sorted(RESUMABLE_KEYS))} may change; "
                          "use a new --out to train a different configuration")


def _check_best_kept(out: ModelDir, state: dict[str, Any]) -> None:
    """A run continues only with its best checkpoint: the final evaluation reads it."""
    best = out.checkpoint("best")
    if state.get("best_epoch") and not is_readable_checkpoint(best):
        raise CnnvitError(f"{best} is missing or unreadable, so the weights of the best epoch "
                          f"({state['best_epoch']}) are lost; delete {out.path} and train it "
                          "again (`cnnvit run --force` does that)")


def _open(cfg: Config, out: ModelDir, state: dict[str, Any] | None, quiet: bool,
          dataset: Dataset | None, stop: StopRequest) -> Run:
    """Join the other processes (under torchrun), seed, load the data, build the model and
    optimizer, write config.yaml."""
    configure(cfg.threads, cfg.deterministic)
    seed_everything(cfg.seed)
    world = join(resolve_device(cfg.device))
    _check_global_batch(cfg, world)
    with world.main_first():  # a download or a cache write happens once
        setup = prepare(cfg, dataset)
    memory = MemoryPeak(setup.device)
    # A resumed run loads its own weights from the checkpoint: no pretrained download needed.
    with world.main_first():
        model = (setup.build_model(pretrained=False, weights=None) if state else
                 setup.build_model())
    log = _training_log(out, quiet, world)  # now: bad input leaves no file
    resolved = setup.resolved() | {
        "parameters": models.count_parameters(model), "family": models.family(model),
        "cnnvit_version": __version__, "torch_version": str(torch.__version__),
        "weights_report": getattr(model, "cnnvit_weights_report", None),
        "flops_per_image": (state["resolved"].get("flops_per_image") if state else
                            flops_per_image(model, setup.info.channels, setup.image_size))}
    dtype, why = training_dtype(cfg.amp, setup.device, resolved["flops_per_image"])
    if state is not None and "train_precision" in state["resolved"]:  # never change mid-run
        saved = state["resolved"]["train_precision"]["dtype"]
        dtype = None if saved == "float32" else getattr(torch, saved)
        why = state["resolved"]["train_precision"]["why"]
    resolved["train_precision"] = {"dtype": str(dtype or torch.float32).removeprefix("torch."),
                                   "why": why}
    resolved["world_size"] = world.size
    if world.is_main:
        out.write_config(cfg, resolved)
    return Run(cfg, out, setup, model, build_optimizer(model, cfg),
               torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), dtype, log,
               resolved, memory, setup.pipeline("train", train=True), setup.pipeline("val"),
               stop, getattr(cfg, "nan_policy", "stop") == "skip-batch", world)


def _check_global_batch(cfg: Config, world: World) -> None:
    """`batch_size` is the global batch: every process takes an equal part of it."""
    if cfg.batch_size % world.size:
        raise CnnvitError(f"batch_size {cfg.batch_size} is the global batch, shared equally by "
                          f"the {world.size} processes of this torchrun job: use a multiple of "
                          f"{world.size} (--batch-size)")


def _training_log(out: ModelDir, quiet: bool, world: World) -> logging.Logger:
    """train.log (and stdout unless `quiet`) on rank 0; a log that writes nothing elsewhere."""
    if world.is_main:
        return open_log(out.log, console=not quiet, timestamps=True)
    return silent_log(f"train.rank{world.rank}")


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
        step = (state.get("partial") or {}).get("steps")
        run.log.info(f"resuming at epoch {progress.epoch + 1}/{cfg.epochs}"
                     + (f" after step {step}" if step else ""))
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
               grad_clip: float = 0.0, skip_nonfinite: bool = False, world: World = World()
               ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """One optimisation step (autocast, scaled backward, optional clipping); (logits, loss,
    whether a step was taken). With `skip_nonfinite`, a batch whose loss is not finite (on
    any rank: they skip together) takes no step."""
    with autocast(x.device, dtype):
        logits = model(x)
        loss = criterion(logits.float(), y)
    if skip_nonfinite and world.any([not bool(torch.isfinite(loss))], x.device)[0]:
        return logits.detach(), loss.detach(), False
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return logits.detach(), loss.detach(), True


def _criterion(cfg: Config) -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def _train_epoch(run: Run, train_model: Callable[..., Any], epoch: int, phase_start: int,
                 deadline: float | None, quiet: bool, resumed: EpochState | None
                 ) -> tuple[EpochState, str | None]:
    """One pass over the training split, or the rest of an interrupted one: the epoch's state
    and why it ended early (None, "signal" or "budget")."""
    cfg, device, pipe, world = run.cfg, run.setup.device, run.train, run.world
    steps = pipe.num_batches(cfg.batch_size, drop_last=True)
    criterion = _criterion(cfg)
    # dropout etc. reproducible per epoch (each rank its own draws)
    torch.manual_seed(rank_seed(epoch_seed(cfg.seed, epoch), world.rank))
    batches = pipe.batches(  # the same permutation on every rank, each its part of a batch
        cfg.batch_size, epoch_generator(cfg.seed, epoch, device), drop_last=True,
        shard=(world.rank, world.size),
        augment_generator=epoch_generator(cfg.seed, epoch, device, world.rank) if world.rank
        else None)
    state = resumed or EpochState.start(epoch, device)
    if resumed is not None:  # draw what the interrupted run drew for the batches it took
        collections.deque(itertools.islice(batches, resumed.steps), maxlen=0)
        resumed.restore_rng(device, world.rank)
    run.model.train()  # the compiled module shares its modules with the model
    ended, t0 = None, time.perf_counter()
    bar = tqdm(total=steps, initial=state.steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               leave=False, unit="batch",
               disable=quiet or not world.is_main or not sys.stderr.isatty())
    for step, (x, y) in enumerate(batches, start=state.steps):
        lr = lr_at(cfg, epoch + step / steps, phase_start, 1 / steps)
        _train_batch(run, train_model, criterion, state, x, y, lr)
        bar.update(1)
        if state.steps % CHECK_EVERY == 0:
            run.memory.sample()
            _check_finite(run, state, steps)
        # several processes agree at the host-side checks; one process checks every step
        if not world.distributed or state.steps % CHECK_EVERY == 0:
            ended = _ending(run, deadline)
        if ended:
            break
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    state.seconds += time.perf_counter() - t0
    _check_finite(run, state, steps)
    if ended == "signal":
        state.save_rng(device, world)
    return state, ended


def _train_batch(run: Run, model: Callable[..., Any], criterion: torch.nn.Module,
                 state: EpochState, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
    """One optimizer step, added to the epoch's totals. A non-finite loss is noted on the
    device (read every CHECK_EVERY steps), or its batch skipped and left out of the totals."""
    state.lr = lr if state.steps == 0 else state.lr
    set_lr(run.optimizer, lr)
    logits, loss, stepped = train_step(model, x, y, run.optimizer, criterion, run.scaler,
                                       run.dtype, run.cfg.grad_clip,
                                       skip_nonfinite=run.skip_nonfinite, world=run.world)
    state.steps += 1
    if not stepped:
        state.skipped += 1
        return
    state.bad_step = torch.where((state.bad_step < 0) & ~torch.isfinite(loss), state.steps - 1,
                                 state.bad_step)
    state.loss_sum += loss * len(y)
    state.correct += (logits.argmax(1) == y).sum()
    state.seen += len(y)


def _check_finite(run: Run, state: EpochState, steps: int) -> None:
    """Stop at a non-finite loss (nan_policy stop): the checkpoints written before it are kept
    and nothing after it is saved. Several processes stop together, at the first bad step of
    any of them."""
    never = torch.iinfo(torch.long).max
    first = run.world.min_(torch.where(state.bad_step < 0, never, state.bad_step))
    bad = -1 if int(first) == never else int(first)
    if bad < 0 and not (state.steps == steps and state.skipped == steps):
        return
    last = run.out.checkpoint("last")
    kept = (f"the last good state, {last}, is kept" if last.is_file() else
            "no checkpoint had been written yet")
    if bad >= 0:
        where, remedy = f"at epoch {state.epoch + 1} step {bad + 1}/{steps}", (
            "Lower --lr or --set nan_policy=skip-batch")
    else:
        where, remedy = f"at every step of epoch {state.epoch + 1}", "Lower --lr"
    _stop(run, f"the training loss was not finite {where}; training stopped and {kept}. "
               f"{remedy}, then run the same command again", CnnvitError)


def _epoch_totals(run: Run, state: EpochState) -> dict[str, Any]:
    """A finished epoch's lr, loss, accuracy, seconds and images/s."""
    if state.skipped:
        run.log.warning(f"epoch {state.epoch + 1}: skipped {state.skipped} of {state.steps} "
                        "batches with a non-finite loss (nan_policy skip-batch)")
    return {"lr": state.lr, "loss": float(state.loss_sum) / max(state.seen, 1),
            "accuracy": int(state.correct) / max(state.seen, 1), "seconds": state.seconds,
            "images_per_s": state.seen / max(state.seconds, 1e-9)}


def _interrupted(run: Run, progress: Progress, epoch: EpochState | None) -> NoReturn:
    """After a stop signal: save the epoch in progress in last.pt (if it took a step), say
    where training stopped and raise `Interrupted`."""
    if epoch is not None and epoch.steps:
        _save_last(run, progress, epoch.reduced(run.world))
    last = run.out.checkpoint("last")
    saved = (f"{last} holds the training so far" if last.is_file() else
             "nothing had been trained yet")
    signum = run.stop.signum or 0
    _stop(run, f"interrupted at epoch {progress.epoch + 1} step {epoch.steps if epoch else 0} "
               f"by {signal_name(signum)}; {saved}: run the same command again to resume")


def _stop(run: Run, message: str, error: type[CnnvitError] | None = None) -> NoReturn:
    """Log `message` in train.log and raise it: an `error`, else `Interrupted`."""
    run.log.error(message)
    if error is not None:
        raise error(message)
    raise Interrupted(message, 128 + (run.stop.signum or 0))


def _validate(run: Run) -> dict[str, Any]:
    """Metrics of the current weights on the validation split."""
    info = run.setup.info
    run.world.broadcast_buffers(run.model)  # every rank evaluates rank 0's model
    probs, _ = predict(run.model, run.val, run.cfg.eval_batch_size, run.dtype, run.world)
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
    exists); rank 0 writes them."""
    if not run.world.is_main:
        return
    if improved:
        save_checkpoint(run.out.checkpoint("best"),
                        {"model": run.model.state_dict(), "epoch": progress.epoch,
                         "config": run.cfg.to_dict(), "resolved": run.resolved, "score": score,
                         "selection_metric": run.cfg.selection_metric})
    atomic_write_csv(pd.DataFrame(progress.history), run.out.history)
    _save_last(run, progress)


def _save_last(run: Run, progress: Progress, epoch: EpochState | None = None) -> None:
    """last.pt (rank 0 writes it): weights, optimizer and progress, and the epoch in progress
    (its totals over all ranks) when interrupted."""
    if not run.world.is_main:
        return
    payload = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
               **asdict(progress), "config": run.cfg.to_dict(), "resolved": run.resolved}
    if run.scaler.is_enabled():
        payload["scaler"] = run.scaler.state_dict()
    if epoch is not None:
        payload["partial"] = epoch.to_checkpoint()
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
        raise CnnvitError(f"{out.path}: no epoch was trained: the time budget (--max-minutes "
                          f"{cfg.max_minutes:g}) ran out before the first epoch ended; raise it "
                          "(0 = no budget) and run the same command again")
    run.log.info(f"{stop_reason}; best epoch {progress.best_epoch} ({cfg.selection_metric} "
                 f"{progress.best_score:.4f}); evaluating the best checkpoint on val and test")
    run.world.barrier()  # rank 0 has written best.pt
    run.model.load_state_dict(load_checkpoint(out.checkpoint("best"))["model"])
    extra = {"checkpoint": "best", "epoch": progress.best_epoch}
    results = {s: evaluate_split(run.model, run.setup, s, out, extra, run.world)
               for s in ("val", "test")}
    summary = _summary(run, progress, stop_reason, results["test"])
    if run.world.is_main:
        out.write_summary(summary)
    test = results["test"]
    auc = "n/a" if test["auc_macro"] is None else f"{test['auc_macro']:.4f}"
    run.log.info(f"test: acc {test['accuracy']:.4f} f1_macro {test['f1_macro']:.4f} "
                 f"auc_macro {auc} loss {test['loss']:.4f} → {out.path}")
    _warn_if_not_learned(run, results["val"])


def _warn_if_not_learned(run: Run, val: dict[str, Any]) -> None:
    """A loud line when the validation accuracy is not above the majority-class rate."""
    tested = metrics.chance_of(val)
    if tested is None:
        return
    rate, p = tested
    if p >= metrics.CHANCE_ALPHA:
        run.log.warning(f"⚠ {run.cfg.model} did not learn: validation accuracy "
                        f"{val['accuracy']:.4f} is not above the majority-class rate {rate:.4f} "
                        f"(one-sided binomial p = {p:.2g}); check the schedule (epochs, lr) and "
                        "the input size before comparing it")


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
            "eval_images_per_s": test["eval_images_per_s"], **run.memory.report(run.world),
            "device": str(setup.device), "world_size": run.world.size}

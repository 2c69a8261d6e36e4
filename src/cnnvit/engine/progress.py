"""Where training stands, as saved in `last.pt`: finished epochs (`Progress`) and the epoch in
progress (`EpochState`), so that a resumed run continues exactly."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from cnnvit.engine.distributed import World


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
class EpochState:
    """An epoch in progress: its running totals, and the global random state once it is
    interrupted. Saved in last.pt (as `partial`) when training stops mid-epoch."""

    epoch: int                     # 0-based
    loss_sum: torch.Tensor
    correct: torch.Tensor
    bad_step: torch.Tensor         # first step whose loss was not finite (-1: none), read lazily
    steps: int = 0                 # optimizer steps taken (skipped batches included)
    seen: int = 0                  # images counted in the totals
    skipped: int = 0               # batches skipped for a non-finite loss (nan_policy skip-batch)
    lr: float = 0.0                # the lr of the epoch's first step
    seconds: float = 0.0
    rng: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def start(cls, epoch: int, device: torch.device) -> EpochState:
        zero = torch.zeros((), device=device, dtype=torch.long)
        return cls(epoch, zero.float(), zero.clone(), zero - 1)

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], device: torch.device,
                        world: World) -> EpochState:
        """The saved epoch in progress; its totals (over all ranks) go to rank 0 only, so that
        summing over the ranks at the end counts them once, whatever the world size."""
        tensors = {k: saved[k].to(device) for k in ("loss_sum", "correct", "bad_step")}
        state = cls(**{**saved, **tensors})
        if not world.is_main:
            state.loss_sum, state.correct, state.seen = state.loss_sum * 0, state.correct * 0, 0
        return state

    def to_checkpoint(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in values.items()}

    def reduced(self, world: World) -> EpochState:
        """The epoch's totals over all ranks (the longest rank's seconds); itself alone."""
        if not world.distributed:
            return self
        dev = self.loss_sum.device
        totals = world.sum_(torch.stack([self.loss_sum.double(), self.correct.double(),
                                         torch.tensor(float(self.seen), device=dev)]))
        seconds = world.max_(torch.tensor(self.seconds, dtype=torch.float64, device=dev))
        return replace(self, loss_sum=totals[0].float(), correct=totals[1].long(),
                       seen=int(totals[2]), seconds=float(seconds))

    def save_rng(self, device: torch.device, world: World) -> None:
        """Keep the global random state (dropout and the like) of every rank where the epoch
        stopped: rank r's under keys ending in `.r` (r > 0)."""
        mine = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(device)
        self.rng = {k + (f".{r}" if r else ""): v.cpu()
                    for r, states in enumerate(world.gather(mine)) for k, v in states.items()}

    def restore_rng(self, device: torch.device, rank: int) -> None:
        """This rank's saved random state; a rank the interrupted run did not have keeps the
        epoch's seed (its dropout draws then differ from an uninterrupted run's)."""
        suffix = f".{rank}" if rank else ""
        if "cpu" + suffix in self.rng:
            torch.set_rng_state(self.rng["cpu" + suffix])
        if device.type == "cuda" and "cuda" + suffix in self.rng:
            torch.cuda.set_rng_state(self.rng["cuda" + suffix], device)

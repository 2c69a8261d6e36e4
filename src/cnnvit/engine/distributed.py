"""One training on many processes: torch.distributed under `torchrun`.

`torchrun --nproc_per_node=N -m cnnvit train|run ...` starts N copies of the command with
RANK, WORLD_SIZE and LOCAL_RANK set. Each process joins the process group once it knows its
device (nccl on CUDA, gloo on the CPU) and trains its shard of every global batch through
DistributedDataParallel; only rank 0 writes files. Outside torchrun the world is one process
and every helper here is a no-op, so single-process code pays nothing for it.

The output directory must be on a filesystem every process sees (as for any torchrun job that
checkpoints): rank 0 writes the checkpoints, every rank reads them to resume.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cnnvit.errors import CnnvitError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one training (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all ranks, in place (every rank gets the total)."""
        return self._reduce(tensor, dist.ReduceOp.SUM)

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The largest value over all ranks, in place."""
        return self._reduce(tensor, dist.ReduceOp.MAX)

    def min_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The smallest value over all ranks, in place."""
        return self._reduce(tensor, dist.ReduceOp.MIN)

    def _reduce(self, tensor: torch.Tensor, op: Any) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=op)
        return tensor

    def any(self, flags: list[bool], device: torch.device) -> list[bool]:
        """For each flag: whether it is set on any rank (the same answer on every rank)."""
        if not self.distributed:
            return flags
        t = self.max_(torch.tensor([int(f) for f in flags], device=device))
        return [bool(v) for v in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (e.g. batch-norm running statistics) on every rank: each rank
        updated its own from its shard since DDP last synchronised them."""
        if self.distributed:
            for buf in module.buffers():
                dist.broadcast(buf, src=0)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. a download or a cache write), then the others."""
        if self.distributed and not self.is_main:
            self.barrier()
        yield
        if self.distributed and self.is_main:
            self.barrier()


def world_from_env(environ: dict[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK), or one
    process."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    try:
        world = World(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]),
                      int(env.get("LOCAL_RANK", "0")))
    except ValueError:
        world = World(-1, 0)
    if not 0 <= world.rank < world.size:
        raise CnnvitError(f"RANK={env.get('RANK')!r} WORLD_SIZE={env.get('WORLD_SIZE')!r} do "
                          "not describe a process of a torch.distributed job; start cnnvit "
                          "through torchrun, or unset them")
    return world


def device_for(spec: str, world: World) -> str:
    """The device spec of this process: `auto` and `cuda` mean the GPU of its LOCAL_RANK when
    there are several processes."""
    spec = spec.strip().lower()
    if not world.distributed or spec == "cpu":
        return spec
    if spec == "auto":
        return f"cuda:{world.local_rank}" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        return f"cuda:{world.local_rank}"
    raise CnnvitError(f"--device {spec}: under torchrun each process uses the GPU of its "
                      "LOCAL_RANK; use --device auto, cuda or cpu")


def join(device: torch.device) -> World:
    """Join the process group of this torchrun job (once; nccl on CUDA, gloo on the CPU) and
    return this process's world; one process joins nothing."""
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        return world
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    atexit.register(dist.destroy_process_group)
    return world


def backend() -> str | None:
    """The process group's backend (nccl or gloo), or None outside one."""
    return str(dist.get_backend()) if dist.is_initialized() else None

"""Peak memory of training: CUDA's allocator peak, or the growth of this process's RSS."""

from __future__ import annotations

import os
from typing import Any

import torch

from cnnvit.engine.distributed import World


class MemoryPeak:
    """Peak memory while training: CUDA's max allocated, or the growth of this process's RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = self.peak = rss_bytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_bytes())

    def report(self, world: World = World()) -> dict[str, Any]:
        """The peak (of the process that used most, with several) and what it measures."""
        if self.device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(self.device), "cuda_max_allocated"
        else:
            peak, kind = self.peak - self.base, "cpu_rss_growth"
        if world.distributed:
            peak = int(world.max_(torch.tensor(peak, device=self.device)))
            kind += "_max_over_processes"
        return {"peak_memory_bytes": int(peak), "peak_memory_kind": kind}


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0

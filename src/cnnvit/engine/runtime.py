"""Device, precision, seeding and determinism."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from cnnvit.engine.distributed import device_for, world_from_env
from cnnvit.errors import CnnvitError, ConfigError


def resolve_device(spec: str) -> torch.device:
    """`auto` picks CUDA when available; `cuda`/`cuda:N` must exist; `cpu` always works. Under
    torchrun, `auto` and `cuda` are the GPU of the process's LOCAL_RANK."""
    spec = device_for(spec, world_from_env())
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec} asked for a GPU, but CUDA is not available here; "
                              "use --device cpu or auto")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) visible")
        return dev
    raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N; got '{spec}'")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = full fp32). CUDA: `auto` is bf16 where supported, else fp16.
    CPU: fp32 unless `bf16` is asked for (CPU bf16 autocast; see docs/performance.md); fp16
    autocast on the CPU is an error."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "fp16":
            raise CnnvitError(f"--amp fp16 needs a CUDA device (this run is on {device}); on the "
                              "CPU use --amp bf16 (bfloat16 autocast) or --amp off")
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


# `--amp auto` trains in bf16 on a CPU with native bf16 (AMX or AVX512-BF16) when the model's
# forward pass costs at least this much per image: measured (docs/performance.md), bf16 more
# than doubles resnet18-small@28 (0.9 GFLOP) and slows vit-small-input@28 (0.02 GFLOP) 2.4×.
CPU_BF16_MIN_FLOPS = 1e8
CPU_BF16_RULE = (f"--amp auto on a CPU with native bf16 (AMX or AVX512-BF16): bf16 autocast "
                 f"when the forward pass costs ≥ {CPU_BF16_MIN_FLOPS / 1e6:.0f} MFLOP per image, "
                 "else fp32")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16 instructions)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def training_dtype(amp: str, device: torch.device, flops_per_image: float | None
                   ) -> tuple[torch.dtype | None, str]:
    """The autocast dtype of training and why: `amp_dtype`, except that `auto` on a CPU with
    native bf16 follows CPU_BF16_RULE (so the choice is reproducible, not a timing)."""
    if amp != "auto" or device.type != "cpu":
        dtype = amp_dtype(amp, device)
        return dtype, f"--amp {amp} on {device.type}"
    if not cpu_has_native_bf16():
        return None, "--amp auto on a CPU without native bf16: fp32"
    heavy = flops_per_image is not None and flops_per_image >= CPU_BF16_MIN_FLOPS
    return (torch.bfloat16 if heavy else None), CPU_BF16_RULE


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for `dtype`, or a no-op when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Fix python, numpy and torch (CPU and CUDA) seeds."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure(threads: int, deterministic: bool) -> None:
    """Thread count and deterministic algorithms (bit-identical CPU reruns)."""
    if threads > 0:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random draws, derived from (seed, epoch), so a resumed run draws
    exactly what an uninterrupted run would have drawn."""
    return seed * 100_003 + epoch


def epoch_generator(seed: int, epoch: int, device: torch.device, rank: int = 0
                    ) -> torch.Generator:
    """The generator for one epoch's permutation and augmentation on `device`; rank r > 0 of
    a distributed run gets its own stream (`rank_seed`) for its augmentation."""
    gen = torch.Generator(device=device)
    gen.manual_seed(rank_seed(epoch_seed(seed, epoch), rank))
    return gen


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random draws (augmentation, dropout): `seed` itself on
    rank 0, so one process draws what it always drew."""
    return seed + rank * 1_000_000_007

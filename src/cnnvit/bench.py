"""`cnnvit bench`: training throughput, FLOPs and the share of the machine's peak.

For each case (model @ input size) it times, on the same batch size and device:
- model only: forward + loss + backward on one fixed, already normalised batch;
- full step: the real training step (on-device pipeline batch with augmentation, forward,
  backward, optimizer step, loss/accuracy accounting), as `cnnvit train` runs it.
Achieved FLOP/s are compared with a matrix-product peak measured in the same run, in the
precision the case trains in, so the figures are ratios that survive a noisy, shared machine.
With `--amp auto` on a CPU with native bf16, every case is measured in float32 and in bf16,
and the table gives their ratio and the precision `--amp auto` trains that model in.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cnnvit import models
from cnnvit.config import Config
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Split
from cnnvit.document import Table
from cnnvit.engine.flops import flops_per_image
from cnnvit.engine.runtime import (
    amp_dtype,
    autocast,
    configure,
    cpu_has_native_bf16,
    resolve_device,
    training_dtype,
)
from cnnvit.engine.train import train_step
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_text

DEFAULT_CASES = ("resnet18-small@28", "vit-small-input@28", "resnet18@224",
                 "vit_base_patch16_224@224")


@dataclass
class BenchResult:
    case: str
    device: str
    precision: str
    batch_size: int
    full_images_per_s: float
    model_only_images_per_s: float
    full_over_model_only: float
    outside_model_share: float
    train_gflop_per_image: float
    forward_gflop_per_image: float
    achieved_gflop_per_s: float
    peak_gflop_per_s: float
    share_of_peak: float


def matmul_peak(device: torch.device, reps: int = 10, dtype: torch.dtype | None = None) -> float:
    """Best measured FLOP/s of a square matrix product: fp32 2048² on CPU, bf16 8192² on CUDA
    (`dtype` overrides the CPU's fp32, e.g. bf16 when the benchmark trains in bf16)."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if device.type == "cuda" else dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 2):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch_size(size: int, device: torch.device) -> int:
    if device.type == "cuda":
        return 256 if size <= 64 else 128
    return 128 if size <= 64 else 8


def _time_pair(fn_a, fn_b, steps: int, device: torch.device) -> tuple[float, float]:
    """Median seconds per call of two functions, timed alternately (A, B, A, B, ...) after two
    warm-up calls each, so a load that comes and goes on a shared machine hits both alike."""
    for _ in range(2):
        fn_a()
        fn_b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps):
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t0)
    return float(np.median(times[0])), float(np.median(times[1]))


def parse_case(case: str) -> tuple[str, int]:
    """`model@size` (size 28 when omitted) → (model name, input side in pixels)."""
    name, at, size_text = case.strip().partition("@")
    try:
        size = int(size_text) if at else 28
    except ValueError:
        size = 0
    if not name or size < 1:
        raise CnnvitError(f"--models takes model@size items such as resnet18-small@28; got "
                          f"{case!r}")
    return name, size


def bench_case(case: str, device: torch.device, steps: int, peak: float,
               amp: str = "auto") -> BenchResult:
    """Time one `model@size` case (see the module docstring)."""
    name, size = parse_case(case)
    bs = _batch_size(size, device)
    classes = 10
    model = models.build(name, classes, in_chans=3, image_size=size).to(device)
    is_cnn = models.family(name) == "cnn"
    if is_cnn:
        model = model.to(memory_format=torch.channels_last)
    train_flops = flops_per_image(model, 3, size, backward=True)
    forward_flops = flops_per_image(model, 3, size)
    dtype = amp_dtype(amp, device)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    model.train()

    native = 28 if size <= 64 else min(size, 64)
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (bs * 4, native, native, 3), dtype=np.uint8),
                  rng.integers(0, classes, bs * 4))
    pipe = BatchPipeline(split, device=device, image_size=size, mean=[0.5] * 3, std=[0.25] * 3,
                         augment=Config(hflip=True, crop_padding=max(size // 8, 1)),
                         channels_last=is_cnn)
    gen = torch.Generator(device=device).manual_seed(0)
    x_fixed, y_fixed = next(pipe.batches(bs, gen, drop_last=True))

    def model_only() -> None:
        with autocast(device, dtype):
            loss = criterion(model(x_fixed).float(), y_fixed)
        loss.backward()
        model.zero_grad(set_to_none=True)

    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())

    def full_step() -> None:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(pipe.batches(bs, gen, drop_last=True))
            x, y = next(batches)
        logits, loss, _ = train_step(model, x, y, optimizer, criterion, scaler, dtype)
        _ = (loss * len(y), (logits.argmax(1) == y).sum())  # the loop's accounting

    t_model, t_full = _time_pair(model_only, full_step, steps, device)
    achieved = train_flops * bs / t_full
    return BenchResult(case=case, device=str(device), batch_size=bs,
                       precision=str(dtype or torch.float32).removeprefix("torch."),
                       full_images_per_s=round(bs / t_full, 1),
                       model_only_images_per_s=round(bs / t_model, 1),
                       full_over_model_only=round(t_model / t_full, 3),
                       outside_model_share=round(max(0.0, 1 - t_model / t_full), 3),
                       train_gflop_per_image=round(train_flops / 1e9, 3),
                       forward_gflop_per_image=round(forward_flops / 1e9, 4),
                       achieved_gflop_per_s=round(achieved / 1e9, 1),
                       peak_gflop_per_s=round(peak / 1e9, 1),
                       share_of_peak=round(achieved / peak, 3))


def markdown_table(results: list[BenchResult]) -> str:
    """The results as a Markdown table (the form docs/performance.md records)."""
    header = ["case", "device", "precision", "batch", "train img/s", "model-only img/s",
              "full/model-only", "outside-model share", "GFLOP/img (fwd+bwd)",
              "achieved GFLOP/s", "peak GFLOP/s", "share of peak"]
    rows = [[r.case, r.device, r.precision, str(r.batch_size), str(r.full_images_per_s),
             str(r.model_only_images_per_s), f"{r.full_over_model_only:.1%}",
             f"{r.outside_model_share:.1%}", str(r.train_gflop_per_image),
             str(r.achieved_gflop_per_s), str(r.peak_gflop_per_s), f"{r.share_of_peak:.1%}"]
            for r in results]
    return "\n".join(Table(header, rows, text_columns=3).lines())


def start_bench(models: str | None, device: str, steps: int, threads: int,
                default_cases: tuple[str, ...]) -> tuple[torch.device, list[str]]:
    """Check the arguments and set the threads: (device, cases)."""
    if steps < 1:
        raise CnnvitError("--steps must be at least 1")
    configure(threads, deterministic=False)
    dev = resolve_device(device)
    cases = [c.strip() for c in models.split(",")] if models is not None else list(default_cases)
    for case in cases:
        parse_case(case)  # every spec is checked before anything is measured
    return dev, cases


def header(device: torch.device, peaks: dict[str, float]) -> str:
    """The first line: device, torch, threads and the matmul peak of each precision."""
    measured = ", ".join(f"{name} {peak / 1e9:.1f} GFLOP/s" for name, peak in peaks.items())
    return (f"device {device} ({device_name(device)}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; matmul peak {measured}")


def precisions(amp: str, device: torch.device) -> list[str]:
    """The `--amp` values to measure: float32 and bf16 both for `auto` on a CPU with native
    bf16 (the choice `--amp auto` makes there per model), else `amp` alone."""
    if amp == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return ["off", "bf16"]
    return [amp]


def _precision_name(amp: str, device: torch.device) -> str:
    return str(amp_dtype(amp, device) or torch.float32).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (its architecture where the processor has no name)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def write_json(out: str | None, device: torch.device, peaks: dict[str, float],
               results: list) -> None:
    """The results (dataclasses) as JSON in `out`, with the device, torch, threads and the
    matmul peak (FLOP/s) of each precision measured."""
    if out:
        payload = {"device": str(device), "device_name": device_name(device),
                   "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "peak_flop_per_s": peaks, "results": [asdict(r) for r in results]}
        atomic_write_text(Path(out), json.dumps(payload, indent=2))


def run_bench(models: str | None = None, device: str = "auto", steps: int = 5,
              out: str | None = None, threads: int = 0, amp: str = "auto") -> list[BenchResult]:
    """Run the benchmark cases in each precision (`precisions`), print Markdown tables (and
    the bf16/float32 ratios when both are measured), optionally write JSON to `out`."""
    dev, cases = start_bench(models, device, steps, threads, DEFAULT_CASES)
    amps = precisions(amp, dev)
    peaks = {_precision_name(a, dev): matmul_peak(dev, dtype=amp_dtype(a, dev)) for a in amps}
    print(header(dev, peaks))
    results = []
    for case in cases:
        for a in amps:
            name = _precision_name(a, dev)
            results.append(bench_case(case, dev, steps, peaks[name], a))
            # re-measured between cases; the best one stands
            peaks[name] = max(peaks[name], matmul_peak(dev, dtype=amp_dtype(a, dev)))
            r = results[-1]
            print(f"  {case} {name}: {r.full_images_per_s} img/s full, "
                  f"{r.model_only_images_per_s} img/s model only "
                  f"({r.full_over_model_only:.1%}), {r.share_of_peak:.1%} of peak", flush=True)
    for r in results:  # every share against the final (best) peak of its precision
        peak = peaks[r.precision]
        r.peak_gflop_per_s = round(peak / 1e9, 1)
        r.share_of_peak = round(r.achieved_gflop_per_s * 1e9 / peak, 3)
    print(markdown_table(results))
    if len(amps) == 2:
        print(precision_table(results, dev))
    write_json(out, dev, peaks, results)
    return results


def precision_table(results: list[BenchResult], device: torch.device) -> str:
    """Per case: float32 and bf16 training img/s, their ratio, and what `--amp auto` picks."""
    by_case: dict[str, dict[str, BenchResult]] = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.precision] = r
    rows = []
    for case, pair in by_case.items():
        fp32, bf16 = pair["float32"], pair["bfloat16"]
        dtype, _ = training_dtype("auto", device, fp32.forward_gflop_per_image * 1e9)
        rows.append([case, str(fp32.forward_gflop_per_image), str(fp32.full_images_per_s),
                     str(bf16.full_images_per_s),
                     f"{bf16.full_images_per_s / fp32.full_images_per_s:.2f}×",
                     "bf16" if dtype == torch.bfloat16 else "float32"])
    header = ["case", "GFLOP/img (fwd)", "float32 img/s", "bf16 img/s", "bf16 / float32",
              "--amp auto trains in"]
    return "\n".join(Table(header, rows, text_columns=1).lines())

"""`cnnvit bench --reference`: cnnvit's pipeline against the one users would write instead.

Per case (model @ input size), in one process, the same model, batch size, optimizer (AdamW as
`cnnvit train` builds it), precision and `train_step` are fed by
- reference: a `Dataset` turning in-memory uint8 images into PIL images through torchvision's
  `Compose([Resize, RandomHorizontalFlip, ToTensor, Normalize])`, batched by a `DataLoader` with
  workers (persistent, pinned memory on CUDA, shuffled, last batch dropped);
- cnnvit: `BatchPipeline` (uint8 data on the device, resized once, batched flip and
  normalisation).
The source images are held at a native size (28 px, or 64 px upsampled for larger inputs, as
MedMNIST's are). One timed block is one pass over a dataset of `steps` batches, so the
DataLoader's workers start and end each block idle: no prefetching spills into the other side's
block. Blocks alternate (reference, cnnvit, cnnvit, reference, ...) so a load that comes and goes
hits both alike; a first block per side, untimed, warms up (worker start-up included) and
measures the side's peak memory (CUDA: max allocated; CPU: growth of this process's RSS, the
DataLoader's worker processes not included).
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from cnnvit import models
from cnnvit.bench import header, matmul_peak, parse_case, start_bench, sync, write_json
from cnnvit.config import Config
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Split
from cnnvit.document import Table
from cnnvit.engine.flops import flops_per_image
from cnnvit.engine.memory import MemoryPeak
from cnnvit.engine.optim import build_optimizer
from cnnvit.engine.runtime import amp_dtype
from cnnvit.engine.train import train_step

REFERENCE_CASES = ("resnet18-small@28", "resnet18@224", "vit_base_patch16_224@224")
MEAN, STD = [0.5] * 3, [0.25] * 3
ROUNDS = 3  # timed blocks per side (ref, cnnvit, cnnvit, ref, ref, cnnvit): a median of 3
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ReferenceResult:
    case: str
    device: str
    precision: str
    batch_size: int
    reference_workers: int
    reference_images_per_s: float
    cnnvit_images_per_s: float
    ratio: float                   # cnnvit / reference images per second
    train_gflop_per_image: float
    reference_share_of_peak: float
    cnnvit_share_of_peak: float
    peak_gflop_per_s: float
    reference_peak_memory_mb: float
    cnnvit_peak_memory_mb: float
    memory_kind: str               # cuda_max_allocated or cpu_rss_growth


class PilDataset(torch.utils.data.Dataset):
    """uint8 H×W×3 images in memory, each item made a PIL image and passed through `transform`
    (as MedMNIST's `as_rgb` datasets are used)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray,
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_loader(split: Split, size: int, batch_size: int, device: torch.device
                     ) -> torch.utils.data.DataLoader:
    """The usual torchvision pipeline over `split`: PIL transforms in DataLoader workers."""
    transform = transforms.Compose([transforms.Resize(size), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    workers = min(4, os.cpu_count() or 1)
    return torch.utils.data.DataLoader(
        PilDataset(split.images, split.labels, transform), batch_size=batch_size, shuffle=True,
        drop_last=True, num_workers=workers, persistent_workers=True,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))


def cnnvit_pipeline(split: Split, size: int, device: torch.device, channels_last: bool
                    ) -> BatchPipeline:
    """cnnvit's pipeline over `split` with the reference's augmentation (a random flip)."""
    return BatchPipeline(split, device=device, image_size=size, mean=MEAN, std=STD,
                         augment=Config(hflip=True), channels_last=channels_last)


def reference_batch_size(size: int, train_flops: float, device: torch.device) -> int:
    """As `cnnvit bench` on CUDA; on the CPU small enough for a case to take about a minute:
    32 up to 64 px, 4 above, 2 for models of more than 50 GFLOP per image (fwd+bwd)."""
    if device.type == "cuda":
        return 256 if size <= 64 else 128
    if size <= 64:
        return 32
    return 2 if train_flops > 50e9 else 4


def source_split(size: int, n: int, classes: int = 10) -> Split:
    """`n` random uint8 RGB images at a native size: the input size up to 28 px, 28 px up to
    64, else 64 px (upsampled to the input size, as MedMNIST's 64 px images would be)."""
    native = size if size <= 28 else 28 if size <= 64 else 64
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, native, native, 3), dtype=np.uint8),
                 rng.integers(0, classes, n))


class _Side:
    """One side of a case: its model, optimizer and source of batches."""

    def __init__(self, name: str, size: int, device: torch.device, make_batches: Callable[[],
                 Batches], channels_last: bool) -> None:
        torch.manual_seed(0)  # both sides start from the same weights
        self.model = models.build(name, 10, in_chans=3, image_size=size).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.optimizer = build_optimizer(self.model, Config())
        self.make_batches = make_batches

    def run_block(self, device: torch.device, dtype: torch.dtype | None,
                  after_step: Callable[[], None] | None = None) -> float:
        """One pass over the side's batches (train_step and the loop's accounting); seconds."""
        criterion = torch.nn.CrossEntropyLoss()
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        sync(device)
        t0 = time.perf_counter()
        for x, y in self.make_batches():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits, loss, _ = train_step(self.model, x, y, self.optimizer, criterion, scaler,
                                         dtype)
            _ = (loss * len(y), (logits.argmax(1) == y).sum())
            if after_step is not None:
                after_step()
        sync(device)
        return time.perf_counter() - t0


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS growth starts from a clean base."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _warm_process(name: str, size: int, bs: int, device: torch.device,
                  dtype: torch.dtype | None, channels_last: bool) -> None:
    """One step on a throwaway model, so one-time costs (kernel libraries, allocator pools) fall
    on neither side's memory."""
    batch = (torch.randn(bs, 3, size, size, device=device),
             torch.zeros(bs, dtype=torch.long, device=device))
    _Side(name, size, device, lambda: [batch], channels_last).run_block(device, dtype)


def _build_and_warm(make: Callable[[], _Side], device: torch.device, dtype: torch.dtype | None
                    ) -> tuple[_Side, float, str]:
    """Build one side and run its untimed warm-up block: (side, peak memory MiB, its kind)."""
    _trim_heap()
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    memory = MemoryPeak(device)
    side = make()
    side.run_block(device, dtype, memory.sample)
    report = memory.report()
    megabytes = round((report["peak_memory_bytes"] - base) / 2**20, 1)
    return side, megabytes, report["peak_memory_kind"]


def bench_reference_case(case: str, device: torch.device, steps: int,
                         amp: str = "auto") -> ReferenceResult:
    """Time one `model@size` case on both pipelines (see the module docstring); the shares of
    peak are left at 0 for `with_peak`."""
    name, size = parse_case(case)
    is_cnn = models.family(name) == "cnn"
    train_flops = flops_per_image(models.build(name, 10, in_chans=3, image_size=size), 3, size,
                                  backward=True)
    bs = reference_batch_size(size, train_flops, device)
    dtype = amp_dtype(amp, device)
    split = source_split(size, bs * steps)
    loader = reference_loader(split, size, bs, device)
    gen = torch.Generator(device=device).manual_seed(0)

    def make_cnnvit() -> _Side:
        pipe = cnnvit_pipeline(split, size, device, is_cnn)
        return _Side(name, size, device, lambda: pipe.batches(bs, gen, drop_last=True), is_cnn)

    _warm_process(name, size, bs, device, dtype, is_cnn)
    ref, ref_mem, kind = _build_and_warm(
        lambda: _Side(name, size, device, lambda: loader, is_cnn), device, dtype)
    ours, our_mem, _ = _build_and_warm(make_cnnvit, device, dtype)
    times: dict[str, list[float]] = {"ref": [], "ours": []}
    for r in range(ROUNDS):
        order = (("ref", ref), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("ref", ref))
        for key, side in order:
            times[key].append(side.run_block(device, dtype))
    ref_ips = bs * steps / float(np.median(times["ref"]))
    our_ips = bs * steps / float(np.median(times["ours"]))
    return ReferenceResult(
        case=case, device=str(device), batch_size=bs, reference_workers=loader.num_workers,
        precision=str(dtype or torch.float32).removeprefix("torch."),
        reference_images_per_s=round(ref_ips, 2), cnnvit_images_per_s=round(our_ips, 2),
        ratio=round(our_ips / ref_ips, 3), train_gflop_per_image=round(train_flops / 1e9, 6),
        reference_share_of_peak=0.0, cnnvit_share_of_peak=0.0, peak_gflop_per_s=0.0,
        reference_peak_memory_mb=ref_mem, cnnvit_peak_memory_mb=our_mem, memory_kind=kind)


def with_peak(r: ReferenceResult, peak: float) -> None:
    """Set the result's peak and both sides' achieved FLOP/s as a share of it."""
    r.peak_gflop_per_s = round(peak / 1e9, 1)
    per_image = r.train_gflop_per_image * 1e9 / peak
    r.reference_share_of_peak = round(per_image * r.reference_images_per_s, 4)
    r.cnnvit_share_of_peak = round(per_image * r.cnnvit_images_per_s, 4)


def reference_table(results: list[ReferenceResult]) -> str:
    """The results as a Markdown table."""
    header = ["case", "device", "precision", "batch", "reference img/s", "cnnvit img/s",
              "cnnvit / reference", "reference share of peak", "cnnvit share of peak",
              "reference peak memory MiB", "cnnvit peak memory MiB"]
    rows = [[r.case, r.device, r.precision, str(r.batch_size), str(r.reference_images_per_s),
             str(r.cnnvit_images_per_s), f"{r.ratio:.2f}", f"{r.reference_share_of_peak:.1%}",
             f"{r.cnnvit_share_of_peak:.1%}", str(r.reference_peak_memory_mb),
             str(r.cnnvit_peak_memory_mb)] for r in results]
    return "\n".join(Table(header, rows, text_columns=3).lines())


def run_reference_bench(models: str | None = None, device: str = "auto", steps: int = 5,
                        out: str | None = None, threads: int = 0,
                        amp: str = "auto") -> list[ReferenceResult]:
    """Run the cases on both pipelines, print a Markdown table, optionally write JSON to `out`
    (shares of peak against the best matmul peak measured before and after every case)."""
    dev, cases = start_bench(models, device, steps, threads, REFERENCE_CASES)
    precision = str(amp_dtype(amp, dev) or torch.float32).removeprefix("torch.")
    peak = matmul_peak(dev, dtype=amp_dtype(amp, dev))
    print(header(dev, {precision: peak}))
    results = []
    for case in cases:
        results.append(bench_reference_case(case, dev, steps, amp))
        peak = max(peak, matmul_peak(dev, dtype=amp_dtype(amp, dev)))
        r = results[-1]
        print(f"  {case}: reference {r.reference_images_per_s} img/s, cnnvit "
              f"{r.cnnvit_images_per_s} img/s (×{r.ratio:.2f})", flush=True)
    for r in results:  # against the best peak measured
        with_peak(r, peak)
    print(reference_table(results))
    write_json(out, dev, {precision: peak}, results)
    return results

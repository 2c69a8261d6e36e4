"""The on-device batch pipeline: no DataLoader, no per-image Python work.

A split is held as one uint8 tensor on the training device. It is resized to the model's input
size once (and cached in uint8 when it fits the memory budget). Batches come from a seeded
permutation; augmentation (random crop with padding, flips, AutoAugment/RandAugment, random
erasing) and normalisation run on whole batches on the device, as in airbench.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from cnnvit.config import Config
from cnnvit.data.types import Split
from cnnvit.errors import CnnvitError

_POLICY_CHUNK = 16  # AutoAugment/RandAugment draw one op per chunk of this many images


def is_augmenting(aug: Config) -> bool:
    """Whether the augmentation keys of `aug` change any image."""
    return (aug.hflip or aug.vflip or aug.crop_padding > 0 or aug.autoaugment != "none"
            or aug.randaugment_n > 0 or aug.random_erasing > 0)


def channel_stats(images: torch.Tensor | Split,
                  chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 N×H×W×C images (for normalisation)."""
    if isinstance(images, Split):
        images = torch.from_numpy(images.images)
    n, c = images.shape[0], images.shape[-1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, n, chunk):
        x = images[i:i + chunk].to(torch.float64).reshape(-1, c) / 255.0
        total += x.sum(0)
        total_sq += (x * x).sum(0)
    count = n * images.shape[1] * images.shape[2]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(max(float(v), 1e-3), 6) for v in std]


def resize_uint8(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize a uint8 N×C×H×W batch to size×size; `pad` zero-pads (centred) instead."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if mode == "pad":
        if h > size or w > size:
            raise CnnvitError(f"resize_mode pad cannot fit {h}×{w} images into {size}×{size}: "
                              "use --image-size of at least the image size, or a resize mode "
                              "(--set resize_mode=bilinear)")
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(x, (left, size - w - left, top, size - h - top))
    y = x.float()
    if mode == "nearest":
        y = F.interpolate(y, size=(size, size), mode="nearest")
    else:
        y = F.interpolate(y, size=(size, size), mode=mode, align_corners=False,
                          antialias=size < max(h, w))
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch (random translation by up to `pad` px)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[idx_n, idx_c, rows, cols]


def _random_flip(x: torch.Tensor, dim: int, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(x.shape[0], generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(dim), x)


def _policy(x: torch.Tensor, aug: Config, seed: int) -> torch.Tensor:
    """AutoAugment / RandAugment from torchvision, one random op draw per chunk of images,
    drawn from `seed`."""
    from torchvision.transforms import v2

    if aug.autoaugment != "none":
        op = v2.AutoAugment(v2.AutoAugmentPolicy(aug.autoaugment))
    else:
        op = v2.RandAugment(num_ops=aug.randaugment_n, magnitude=aug.randaugment_m)
    # torchvision draws its random choices from torch's global CPU generator: seed it from
    # ours so the whole pipeline stays reproducible from the run's seed.
    with torch.random.fork_rng(devices=[]):  # the CPU generator only, restored afterwards
        torch.random.default_generator.manual_seed(seed)
        chunks = [op(c) for c in x.split(_POLICY_CHUNK)]
    return torch.cat(chunks)


def policy_seed(generator_seed: int, step: int) -> int:
    """The seed of one batch's AutoAugment/RandAugment draws: distinct for each batch of an
    epoch (and each rank's generator), known on the host without a device read."""
    return (generator_seed * 1_000_003 + step) % 2**63


def _random_erasing(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Per-image random erasing (Zhong et al.) on a normalised float batch: area 2–33 %,
    aspect ratio 0.3–3.3, erased pixels set to 0 (the dataset mean), as torchvision does."""
    n, _, h, w = x.shape
    dev = gen.device
    area = torch.empty(n, device=dev).uniform_(0.02, 0.33, generator=gen) * h * w
    log_r = torch.empty(n, device=dev).uniform_(-1.204, 1.194, generator=gen)  # log(0.3), log(3.3)
    ratio = log_r.exp()
    eh = (area * ratio).sqrt().round().clamp(1, h)
    ew = (area / ratio).sqrt().round().clamp(1, w)
    top = (torch.rand(n, generator=gen, device=dev) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=gen, device=dev) * (w - ew + 1)).floor()
    apply = torch.rand(n, generator=gen, device=dev) < p
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]).to(x.device)
    return x.masked_fill(mask[:, None], 0.0)


class BatchPipeline:
    """Batches of one split, prepared on `device`.

    `batches()` yields (float images N×C×S×S normalised, int64 labels). With `augment`, each
    batch is augmented on the device from `generator`, so a run is reproducible from its seed.
    """

    def __init__(self, split: Split, *, device: torch.device, image_size: int,
                 mean: list[float], std: list[float], resize_mode: str = "bilinear",
                 augment: Config | None = None, channels_last: bool = False,
                 cache_bytes: int = 2**32) -> None:
        self.device = device
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.augment = augment if augment is not None and is_augmenting(augment) else None
        self.channels_last = channels_last
        images = torch.from_numpy(split.images).permute(0, 3, 1, 2)  # N×C×H×W view, uint8
        self.labels = torch.from_numpy(split.labels).to(device)
        resized_bytes = images.shape[0] * images.shape[1] * image_size * image_size
        self.cached = resized_bytes <= cache_bytes
        if self.cached:  # resize once per run, in chunks, and keep uint8 on the device
            self.images = torch.cat([resize_uint8(c.to(device), image_size, resize_mode)
                                     for c in images.split(1024)])
        else:  # too big to cache at the target size: keep native size, resize per batch
            self.images = images.contiguous().to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def prepare(self, x: torch.Tensor, gen: torch.Generator | None = None,
                step: int = 0) -> torch.Tensor:
        """uint8 batch → augmented (if training), normalised float batch on the device.
        `step` (the batch's number in the epoch) and the generator's seed choose the
        AutoAugment/RandAugment ops on the host: no read from the device."""
        if not self.cached:
            x = resize_uint8(x, self.image_size, self.resize_mode)
        aug = self.augment
        if aug is not None and gen is not None:  # augment only with a generator
            if aug.crop_padding > 0:
                x = _random_crop(x, aug.crop_padding, gen)
            if aug.hflip:
                x = _random_flip(x, 3, gen)
            if aug.vflip:
                x = _random_flip(x, 2, gen)
            if aug.autoaugment != "none" or aug.randaugment_n > 0:
                x = _policy(x, aug, policy_seed(gen.initial_seed(), step))
        y = (x.float().div_(255.0) - self.mean) / self.std
        if aug is not None and gen is not None and aug.random_erasing > 0:
            y = _random_erasing(y, aug.random_erasing, gen)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return y

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                drop_last: bool = False, *, shard: tuple[int, int] = (0, 1),
                augment_generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches; with a generator the order is a seeded permutation and the batch is
        augmented, without one the split is read in order with no augmentation.

        `shard` (rank, world size) splits the work among processes: with a generator, each
        batch of `batch_size` (the global batch) is drawn from the same permutation on every
        rank, which keeps its `rank`-th equal part; without one, the rank reads its contiguous
        part of the split (every image once over all ranks) in batches of `batch_size`.
        `augment_generator` draws the augmentation instead of `generator` (each rank its own).
        """
        rank, world = shard
        n = len(self)
        if generator is None:
            lo, hi = n * rank // world, n * (rank + 1) // world
            for start in range(lo, hi, batch_size):
                sl = slice(start, min(start + batch_size, hi))
                yield self.prepare(self.images[sl]), self.labels[sl]
            return
        order = torch.randperm(n, generator=generator, device=generator.device).to(self.device)
        for b in range(self.num_batches(batch_size, drop_last)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            if world > 1:
                idx = idx.tensor_split(world)[rank]
            yield (self.prepare(self.images[idx], augment_generator or generator, b),
                   self.labels[idx])

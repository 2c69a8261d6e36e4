"""The CIFAR-10-C / ImageNet-C corruptions (Hendrycks & Dietterich 2019) as batched torch ops.

Nine of the fifteen common corruptions: noise (Gaussian, shot, impulse), blur (defocus,
motion) and digital (contrast, brightness, pixelate, JPEG). Each follows the definition of the
reference package `imagecorruptions` 1.1.2 (the ImageNet-C code), batched over uint8 N×C×H×W
tensors of any size on the images' device; grey images (C = 1) go through the same
definitions channel by channel. As in the reference (`np.uint8` of a float image) results are
truncated to grey levels, not rounded.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cnnvit.robustness import pillow

NAMES: tuple[str, ...] = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                          "motion_blur", "contrast", "brightness", "pixelate", "jpeg_compression")
FAMILY: dict[str, str] = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
    "defocus_blur": "blur", "motion_blur": "blur",
    "contrast": "digital", "brightness": "digital", "pixelate": "digital",
    "jpeg_compression": "digital",
}

# Images of at most this many pixels a side get CIFAR-10-C's parameters, larger ones ImageNet-C's.
CIFAR_MAX_SIZE = 64
# CIFAR-10-C: the `c` lists of hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py (the
# script that made CIFAR-10-C). Its motion blur is ImageMagick's (radius, sigma), here applied
# with imagecorruptions' re-implementation of that filter; severities 3 and 4 differ only in
# the radius (6, 8 px), which at sigma 2 changes no grey level (the taps past 6 px weigh < 1e-8).
# Its pixelate enlarges with Pillow's BOX filter, which picks the same pixels as NEAREST.
_CIFAR: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std (of [0, 1] values)
    "shot_noise": (500, 250, 100, 75, 50),  # photons at full intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # share of values set to 0 or 255
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor around the mean
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # HSV value shift
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downscaling factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # quality
}
# ImageNet-C: the `c` lists of imagecorruptions 1.1.2 (corruptions.py), i.e. of make_imagenet_c.py.
_IMAGENET: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
}


def parameters(name: str, image_size: int) -> tuple:
    """The five severities' parameters of corruption `name` for images of `image_size` px:
    CIFAR-10-C's up to `CIFAR_MAX_SIZE`, ImageNet-C's above."""
    if name not in FAMILY:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(NAMES)}")
    return (_CIFAR if image_size <= CIFAR_MAX_SIZE else _IMAGENET)[name]


def corrupt(images: torch.Tensor, name: str, severity: int, generator: torch.Generator,
            *, params: tuple | None = None) -> torch.Tensor:
    """`images` (uint8 N×C×H×W, C 1 or 3) under corruption `name` at `severity` (0 = clean,
    1–5), with randomness drawn from `generator` only. `params` replaces the five severities'
    parameters of `parameters(name, H)` (e.g. ImageNet-C's for small images)."""
    table = parameters(name, images.shape[-2])  # checks the name
    table = table if params is None else params
    try:
        level = -1 if isinstance(severity, bool) else operator.index(severity)
    except TypeError:
        level = -1
    if level not in range(6):
        raise ValueError(f"severity must be an integer 0 to 5, not {severity!r}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 N×C×H×W images with C 1 or 3, got {images.dtype} "
                         f"{tuple(images.shape)}")
    if level == 0 or images.shape[0] == 0:
        return images.clone()
    return _APPLY[name](images, table[level - 1], generator)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Grey levels (floats in 0–255) to uint8, truncated as `np.uint8` does; the small offset
    keeps values that are whole numbers up to float32 rounding where they are."""
    return torch.floor(x.clamp(0, 255) + 1e-3).to(torch.uint8)


def _draw(kind: str, shape: tuple[int, ...], generator: torch.Generator,
          device: torch.device) -> torch.Tensor:
    """Standard normal (`randn`) or uniform [0, 1) (`rand`) draws, made on the generator's
    device and moved to `device` (no copy when they match)."""
    make = torch.randn if kind == "randn" else torch.rand
    return make(shape, generator=generator, device=generator.device).to(device)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise of std `std` (of the [0, 1] range), independent per value."""
    noise = _draw("randn", tuple(x.shape), generator, x.device)
    return _quantize(x.float() + noise * (255.0 * std))


def shot_noise(x: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson counts of `photons` × intensity. `torch.poisson` samples on its input's device,
    so a generator on another device than the images costs a copy each way."""
    rate = (x.float() * (photons / 255.0)).to(generator.device)
    counts = torch.poisson(rate, generator=generator).to(x.device)
    return _quantize(counts * (255.0 / photons))


def impulse_noise(x: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper (scikit-image's `s&p`): each value becomes 255 or 0 (equally likely)
    with probability `amount`, independently per channel."""
    flipped = _draw("rand", tuple(x.shape), generator, x.device) < amount
    salted = _draw("rand", tuple(x.shape), generator, x.device) < 0.5
    salt_or_pepper = salted.to(torch.uint8) * 255
    return torch.where(flipped, salt_or_pepper, x)


def _reflect_index(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of a reflect-101 padded axis (OpenCV's default border, `dcb|abcd|cba`), for pads
    of any width (reflected again where they exceed the axis)."""
    i = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i >= size, period - i, i)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Float N×C×H×W correlated channel by channel with an odd square `kernel` (OpenCV's
    `filter2D` with its reflect-101 border)."""
    n, c, h, w = x.shape
    pad = kernel.shape[-1] // 2
    padded = x.index_select(2, _reflect_index(h, pad, x.device))
    padded = padded.index_select(3, _reflect_index(w, pad, x.device))
    out = F.conv2d(padded.reshape(n * c, 1, h + 2 * pad, w + 2 * pad),
                   kernel.to(x.device, x.dtype)[None, None])
    return out.reshape(n, c, h, w)


def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel: a normalised disk on a 17×17 grid (wider for radii above 8),
    anti-aliased by a 3×3 (5×5) Gaussian of std `alias_blur` with a reflect-101 border."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2).to(torch.float64)
    disk /= disk.sum()
    taps = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    gauss = torch.exp(-(taps ** 2) / (2 * alias_blur ** 2))
    gauss /= gauss.sum()
    return _filter(disk[None, None], gauss[:, None] * gauss[None, :])[0, 0]


def _defocus_blur(x: torch.Tensor, c: tuple[float, float], _: torch.Generator) -> torch.Tensor:
    """Convolution with the anti-aliased disk of radius `c[0]` (alias blur `c[1]`)."""
    kernel = _disk(*c).to(x.device, torch.float32)
    return _quantize(_filter(x.float(), kernel))


def motion_blur(images: torch.Tensor, radius: int, sigma: float,
                angles: torch.Tensor) -> torch.Tensor:
    """ImageNet-C's motion blur (imagecorruptions' version of ImageMagick's) of uint8 N×C×H×W
    `images` along `angles` (N, degrees): a one-sided Gaussian (std `sigma`) of 2·`radius`+1
    copies shifted by whole pixels along the angle, edges repeated. As in the reference, taps
    from the first one shifted past the image on are dropped (not renormalised)."""
    n, _, h, w = images.shape
    width = 2 * radius + 1
    taps = torch.arange(width, dtype=torch.float64, device=images.device)
    weights = torch.exp(-(taps ** 2) / (2 * sigma ** 2))
    weights /= weights.sum()
    rad = torch.deg2rad(angles.to(images.device, torch.float64))[:, None]
    along_y, along_x = width * torch.sin(rad), width * torch.cos(rad)
    hypot = torch.hypot(along_y, along_x)
    dy = -torch.ceil(taps * along_y / hypot - 0.5).long()  # (N, width)
    dx = -torch.ceil(taps * along_x / hypot - 0.5).long()
    inside = (dy.abs() < h) & (dx.abs() < w)
    kept = torch.cumprod(inside.long(), dim=1).to(torch.float32) * weights.float()
    x = images.float()
    rows0 = torch.arange(h, device=images.device)
    cols0 = torch.arange(w, device=images.device)
    out = torch.zeros_like(x)
    for i in range(width):
        rows = (rows0[None, :] - dy[:, i, None]).clamp(0, h - 1)  # (N, H)
        cols = (cols0[None, :] - dx[:, i, None]).clamp(0, w - 1)  # (N, W)
        shifted = x.gather(2, rows[:, None, :, None].expand_as(x))
        shifted = shifted.gather(3, cols[:, None, None, :].expand_as(x))
        out += kept[:, i, None, None, None] * shifted
    return _quantize(out)


def _motion_blur(x: torch.Tensor, c: tuple[int, float], generator: torch.Generator
                 ) -> torch.Tensor:
    """Motion blur along an angle drawn uniformly in [-45°, 45°) per image."""
    angles = _draw("rand", (x.shape[0],), generator, x.device) * 90.0 - 45.0
    return motion_blur(x, c[0], c[1], angles)


def _contrast(x: torch.Tensor, factor: float, _: torch.Generator) -> torch.Tensor:
    """Each channel scaled by `factor` around its mean over the image (as the reference)."""
    y = x.float()
    mean = y.mean(dim=(2, 3), keepdim=True)
    return _quantize((y - mean) * factor + mean)


def _brightness(x: torch.Tensor, shift: float, _: torch.Generator) -> torch.Tensor:
    """HSV value (the channels' maximum) raised by `shift` (of 1), hue and saturation kept:
    equal to the reference's RGB→HSV→RGB round trip, as RGB is linear in V at fixed H and S.
    For grey images the value is the intensity itself."""
    y = x.float() / 255.0
    value = y.amax(dim=1, keepdim=True)
    raised = (value + shift).clamp(max=1.0)
    scaled = y * (raised / value.clamp(min=1e-12))
    return _quantize(torch.where(value > 0, scaled, raised) * 255.0)


def _pixelate(x: torch.Tensor, factor: float, _: torch.Generator) -> torch.Tensor:
    """`pillow.pixelate` by `factor`."""
    return pillow.pixelate(x, factor)


def _jpeg_compression(x: torch.Tensor, quality: int, _: torch.Generator) -> torch.Tensor:
    """JPEG round trip at `quality` (`pillow.jpeg`)."""
    return pillow.jpeg(x, quality)


_APPLY: dict[str, Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise,
    "impulse_noise": impulse_noise, "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur, "contrast": _contrast, "brightness": _brightness,
    "pixelate": _pixelate, "jpeg_compression": _jpeg_compression,
}

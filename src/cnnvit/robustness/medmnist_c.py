"""MedMNIST-C corruptions (Di Salvo et al. 2024) as batched torch ops.

The definitions, severities and per-dataset sets are those of the `medmnistc` package
(0.1.0), re-implemented on uint8 N×C×H×W tensors on the images' device. The package itself
cannot serve here: it works image by image on the CPU, its motion blur fails under numpy 2
and its stain deposit and bubble fail on 28-px images.

Sizes: the definitions are made for 224-px images (MedMNIST+'s largest), and their
parameters (blur radii, bubble radii, pixelation) are in 224-px units. MedMNIST's small images
are themselves downsampled from larger originals, so what a small-image model meets is a
corruption at the microscope or scanner followed by the dataset's downsampling. Images of any
other size are therefore resized to 224 px (bilinear), corrupted, and resized back by area
averaging (antialiased). At 28 px the round trip alone smooths a little (by 1/8, 3/4, 1/8 per
axis), and corruptions finer than the image vanish in it: most sets' pixelation (to 56 px or
more) and OCTMNIST's sub-pixel defocus.

Grey datasets are corrupted as the package does: converted to RGB, corrupted, converted back
with PIL's ITU-R 601-2 luma.

Left out: stain_deposit (bloodmnist, pathmnist) draws ink masks shipped as package data,
which cnnvit does not copy. DermaMNIST is not in `SETS`: its `characters` corruption renders
OpenCV's Hershey font text (and its zoom_blur and black_corner are not implemented).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from numbers import Integral
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from cnnvit.robustness import imagenet_c, pillow

REFERENCE_SIZE = 224  # the image size the package's definitions are made for

# The five severities' parameters, transcribed from medmnistc 0.1.0,
# medmnistc/corruptions/registry.py (CORRUPTIONS_DS). Where the registry lists six values
# (retinamnist defocus_blur, chestmnist/pneumoniamnist gaussian_blur) the sixth is never used
# (the package's DatasetManager makes severities 1-5), and is left out here.
_COLOUR_BLOOD = {
    "brightness_up": (1.1, 1.2, 1.3, 1.35, 1.4),
    "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
    "contrast_up": (1.1, 1.15, 1.2, 1.25, 1.3),
    "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.5),
}
_XRAY: dict[str, tuple] = {  # chestmnist and pneumoniamnist share all but four rows
    "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
    "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
    "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
    "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
    "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
}
_ORGAN: dict[str, tuple] = {  # organamnist, organcmnist and organsmnist are identical
    "pixelate": (0.7, 0.6, 0.5, 0.40, 0.35),
    "jpeg_compression": (50, 30, 15, 10, 7),
    "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
    "speckle_noise": (0.05, 0.10, 0.20, 0.30, 0.40),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.08),
    "shot_noise": (200, 100, 50, 25, 15),
    "gaussian_blur": (11, 13, 15, 17, 21),
    "brightness_up": (1.2, 1.3, 1.4, 1.5, 1.6),
    "brightness_down": (0.8, 0.75, 0.7, 0.65, 0.60),
    "contrast_up": (1.3, 1.4, 1.6, 1.7, 1.8),
    "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
    "gamma_corr_up": (1.3, 1.4, 1.6, 1.8, 2.0),
    "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
}
SETS: dict[str, dict[str, tuple]] = {
    "bloodmnist": {
        "pixelate": (0.6, 0.5, 0.40, 0.30, 0.25),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "defocus_blur": ((2, 0.01), (3, 0.1), (4, 0.1), (5, 0.1), (6, 0.1)),
        "motion_blur": ((3, 3), (5, 5), (10, 5), (10, 7), (10, 9)),
        **_COLOUR_BLOOD,
        "saturate": (0.05, 0.10, 0.15, 0.17, 0.20),
        "bubble": ((5, 10), (7, 10), (10, 10), (12, 12), (15, 12)),
    },
    "pathmnist": {
        "pixelate": (0.8, 0.6, 0.40, 0.30, 0.25),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "defocus_blur": ((3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2), (7, 0.3)),
        "motion_blur": ((5, 5), (10, 5), (15, 5), (15, 8), (15, 12)),
        "brightness_up": (1.1, 1.15, 1.2, 1.22, 1.25),
        "brightness_down": (0.85, 0.80, 0.75, 0.72, 0.70),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
        "saturate": (0.05, 0.10, 0.15, 0.20, 0.25),
        "bubble": ((7, 15), (10, 15), (12, 15), (15, 20), (17, 25)),
    },
    "retinamnist": {
        "pixelate": (0.8, 0.60, 0.50, 0.40, 0.35),
        "jpeg_compression": (30, 25, 20, 10, 5),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "defocus_blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        "motion_blur": ((8, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "tissuemnist": {
        "pixelate": (0.40, 0.30, 0.20, 0.15, 0.10),
        "jpeg_compression": (25, 20, 15, 10, 7),
        "impulse_noise": (0.01, 0.015, 0.02, 0.025, 0.03),
        "gaussian_blur": (13, 15, 17, 21, 25),
        "brightness_up": (1.3, 1.4, 1.5, 1.6, 1.7),
        "brightness_down": (0.8, 0.7, 0.6, 0.5, 0.4),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "octmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (30, 15, 10, 7, 5),
        "speckle_noise": (0.15, 0.30, 0.40, 0.50, 0.60),
        "defocus_blur": ((0.5, 0.6), (1, 0.5), (1.5, 0.1), (2.0, 0.5), (2.5, 0.1)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "contrast_down": (0.6, 0.4, 0.3, 0.2, 0.15),
    },
    "breastmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "motion_blur": ((5, 5), (9, 7), (9, 10), (13, 10), (17, 12)),
        "brightness_up": (1.4, 1.5, 1.6, 1.8, 2.0),
        "brightness_down": (0.55, 0.5, 0.45, 0.4, 0.3),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "chestmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
        "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
        "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
        "shot_noise": (60, 25, 18, 10, 5),
        "gaussian_blur": (3, 5, 7, 9, 11),
        **_XRAY,
    },
    "pneumoniamnist": {
        "pixelate": (0.8, 0.7, 0.6, 0.5, 0.40),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.05, 0.06, 0.07, 0.08),
        "speckle_noise": (0.05, 0.07, 0.10, 0.15, 0.20),
        "impulse_noise": (0.005, 0.01, 0.013, 0.017, 0.02),
        "shot_noise": (300, 200, 150, 100, 80),
        "gaussian_blur": (3, 5, 7, 9, 11),
        **_XRAY,
    },
    "organamnist": dict(_ORGAN),
    "organcmnist": dict(_ORGAN),
    "organsmnist": dict(_ORGAN),
}
# The package's folds (registry.py, CORRUPTIONS_DS_FOLDS); its "task-specific" fold, which
# also holds the X-ray/CT gamma corrections, is "artefact" here.
FAMILY: dict[str, str] = {
    "pixelate": "digital", "jpeg_compression": "digital",
    "defocus_blur": "blur", "motion_blur": "blur", "gaussian_blur": "blur",
    "brightness_up": "colour", "brightness_down": "colour", "contrast_up": "colour",
    "contrast_down": "colour", "saturate": "colour",
    "gaussian_noise": "noise", "speckle_noise": "noise", "impulse_noise": "noise",
    "shot_noise": "noise",
    "bubble": "artefact", "gamma_corr_up": "artefact", "gamma_corr_down": "artefact",
}
_RGB_DATASETS = frozenset({"bloodmnist", "pathmnist", "retinamnist"})  # registry DATASET_RGB


def corrupt(images: torch.Tensor, dataset: str, name: str, severity: int,
            generator: torch.Generator) -> torch.Tensor:
    """`images` (uint8 N×C×H×W, C 1 or 3, H = W) under MedMNIST-C corruption `name` of
    `dataset` at `severity` (0 = unchanged, k = the k-th parameters of `SETS[dataset][name]`);
    randomness only from `generator`. Returns uint8 of the same shape on the same device."""
    if dataset not in SETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(SETS)}")
    if name not in SETS[dataset]:
        raise ValueError(f"{dataset} has no corruption {name!r}; it has: "
                         f"{', '.join(SETS[dataset])}")
    if isinstance(severity, bool) or not isinstance(severity, Integral) or severity not in range(6):
        raise ValueError(f"severity must be an integer 0 to 5, not {severity!r}")
    if (images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3)
            or images.shape[2] != images.shape[3]):
        raise ValueError(f"expected uint8 N×C×H×W images with C 1 or 3 and H = W, got "
                         f"{images.dtype} {tuple(images.shape)}")
    if severity == 0 or images.shape[0] == 0:
        return images.clone()
    size, channels = images.shape[-1], images.shape[1]
    x = _resize(images.expand(-1, 3, -1, -1), REFERENCE_SIZE)
    x = _APPLY[name](x, SETS[dataset][name][severity - 1], generator)
    if channels == 1 or dataset not in _RGB_DATASETS:
        x = _luma(x).expand(-1, channels, -1, -1)
    return _resize(x, size).contiguous()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images to `size` px a side, rounded: bilinear when enlarging, area averages when
    shrinking."""
    if x.shape[-1] == size:
        return x
    if size > x.shape[-1]:
        y = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
    else:
        y = F.interpolate(x.float(), size=(size, size), mode="area")
    return _round(y)


def _round(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5).clamp(0, 255).to(torch.uint8)


def _truncate(x: torch.Tensor) -> torch.Tensor:
    """Floats in 0-255 to uint8 as numpy's `astype(np.uint8)` after clipping does."""
    return torch.floor(x.clamp(0, 255)).to(torch.uint8)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """N×3×H×W uint8 to N×1×H×W as PIL's `convert("L")` (fixed-point ITU-R 601-2)."""
    r, g, b = x.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8).unsqueeze(1)


def _real(device: torch.device) -> torch.dtype:
    """float64 (numpy's precision, which the package computes in) where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def _uniform(shape: tuple[int, ...], generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) draws (float64 where the generator's device has it), on `device`."""
    dtype = torch.float32 if generator.device.type == "mps" else torch.float64
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _randint(low: torch.Tensor | int, high: torch.Tensor | int, shape: tuple[int, ...],
             generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Integers uniform in [low, high] (both inclusive, per element), like `random.randint`."""
    u = _uniform(shape, generator, device)
    span = torch.as_tensor(high, device=device) - low + 1
    return (low + torch.floor(u * span).long()).minimum(torch.as_tensor(high, device=device))


# --- digital -----------------------------------------------------------------------------

def _pixelate(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """`pillow.pixelate` by `factor` (the package's PIL BOX down and up)."""
    return pillow.pixelate(x, factor)


def _jpeg(x: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG at `quality` (`pillow.jpeg`, as the package's)."""
    return pillow.jpeg(x, quality)


# --- blur --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The package's defocus kernel (float32, as its OpenCV calls make it): a disk of
    `radius` on a grid of at least 17×17, normalised, then smoothed by a 3×3 Gaussian of
    sigma `alias_blur` (5×5 for radii above 8) with reflect-101 borders, not renormalised."""
    if radius <= 8:
        coords, taps = torch.arange(-8, 9, dtype=torch.float32), 3
    else:
        coords, taps = torch.arange(-radius, radius + 1, dtype=torch.float32), 5
    disk = ((coords[None, :] ** 2 + coords[:, None] ** 2) <= radius**2).float()
    disk = disk / disk.sum()
    t = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    g = torch.exp(-0.5 / alias_blur**2 * t**2).float()
    g = (g.double() * (1.0 / g.double().sum())).float()
    half = taps // 2
    k = F.pad(disk[None, None], (half, half, half, half), mode="reflect")
    k = F.conv2d(k, g.view(1, 1, 1, taps))
    k = F.conv2d(k, g.view(1, 1, taps, 1))
    return k[0, 0]


def _defocus_blur(x: torch.Tensor, param: tuple[float, float],
                  generator: torch.Generator) -> torch.Tensor:
    """Correlation with the disk kernel, reflect-101 borders, on [0, 1] values, truncated.
    Through the FFT, as OpenCV's `filter2D` does for kernels this large."""
    dtype = _real(x.device)
    k = _disk_kernel(float(param[0]), float(param[1])).to(x.device, dtype)
    m, side = k.shape[-1], x.shape[-1]
    half = m // 2
    y = F.pad(x.to(dtype) / 255.0, (half, half, half, half), mode="reflect")
    full = y.shape[-1]
    spectrum = torch.fft.rfft2(y) * torch.fft.rfft2(k.flip(0, 1), s=(full, full))
    y = torch.fft.irfft2(spectrum, s=(full, full))[..., m - 1:m - 1 + side, m - 1:m - 1 + side]
    return _truncate(y.clamp(0, 1) * 255)


def _motion_blur(x: torch.Tensor, param: tuple[float, float],
                 generator: torch.Generator) -> torch.Tensor:
    """ImageMagick's `-motion-blur radius x sigma` at an angle uniform in [-45, 45] degrees,
    drawn per image."""
    angle = _uniform((x.shape[0],), generator, x.device) * 90.0 - 45.0
    return motion_blur_at(x, param[0], param[1], angle)


def motion_blur_at(x: torch.Tensor, radius: float, sigma: float,
                   angle: torch.Tensor) -> torch.Tensor:
    """ImageMagick 6's MotionBlurImage (effect.c) of N×C×H×W uint8 at `angle` (N degrees): a
    one-sided line of `2 ceil(radius) + 1` taps weighted exp(-i²/2sigma²) (normalised), tap i
    at pixel offset (ceil(i cos a - 0.5), ceil(i sin a - 0.5)), edge pixels repeated past the
    border; summed on the Q16 scale (8-bit values × 257), rounded to Q16 and truncated back
    to 8 bits (as the package's PNG round trip through ImageMagick 6.9 Q16 does). The sum is
    in float32: its error (< 0.01 of 65535) moves a result only within 0.01 of a multiple of
    257, a few pixels in 10^5."""
    n, c, h, w = x.shape
    width = int(2 * math.ceil(radius) + 1)
    taps = torch.arange(width, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-(taps**2) / (2.0 * sigma**2))
    kernel = (kernel / kernel.sum() * 257.0).float()
    rad = torch.deg2rad(angle.to(x.device, torch.float64))[:, None]
    dx = torch.ceil(taps * torch.cos(rad) - 0.5).long()  # N×width
    dy = torch.ceil(taps * torch.sin(rad) - 0.5).long()
    pad = width - 1
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate").to(torch.uint8)
    row = padded.shape[-1]
    flat = padded.reshape(n, c, -1)
    rows = torch.arange(h, device=x.device)[:, None] + pad
    cols = torch.arange(w, device=x.device)[None, :] + pad
    base = (rows * row + cols).reshape(1, 1, h * w)
    acc = torch.zeros(n, c, h * w, device=x.device)
    for i in range(width):
        index = (base + (dy[:, i] * row + dx[:, i])[:, None, None]).expand(n, c, h * w)
        acc += kernel[i] * flat.gather(2, index)
    q16 = torch.floor(acc + 0.5).clamp(0, 65535)
    return torch.div(q16, 257, rounding_mode="floor").to(torch.uint8).reshape(n, c, h, w)


def _gaussian_blur(x: torch.Tensor, kernel_size: int,
                   generator: torch.Generator) -> torch.Tensor:
    """torchvision's `gaussian_blur` (sigma 0.15 k + 0.35, reflect borders), as the package."""
    return TF.gaussian_blur(x, kernel_size=[kernel_size, kernel_size])


# --- colour ------------------------------------------------------------------------------

def _blend(base: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL `Image.blend(base, x, factor)` on uint8: base + factor (x - base) in float32,
    clipped and truncated (Pillow's Blend.c)."""
    alpha = torch.tensor(factor, dtype=torch.float32, device=x.device)
    diff = (x.int() - base.int()).float()
    return _truncate(base.float() + alpha * diff)


def _brightness(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """PIL `ImageEnhance.Brightness`: blend with black."""
    return _blend(torch.zeros_like(x), x, factor)


def _contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """PIL `ImageEnhance.Contrast`: blend with the grey of the image's mean luma, rounded."""
    luma = _luma(x).long()
    total, count = luma.sum((1, 2, 3), keepdim=True), luma[0].numel()
    mean = torch.div(2 * total + count, 2 * count, rounding_mode="floor")
    return _blend(mean.expand_as(x), x, factor)


def _saturate(x: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation + `shift`, clipped to [0, 1] (scikit-image's rgb2hsv/hsv2rgb, including
    their hue 0 for greys, which the shift turns reddish); truncated."""
    rgb = x.to(_real(x.device)) / 255.0
    r, g, b = rgb.unbind(1)
    value, delta = rgb.amax(1), rgb.amax(1) - rgb.amin(1)
    grey = delta == 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    hue = torch.where(b == value, 4.0 + (r - g) / safe,
                      torch.where(g == value, 2.0 + (b - r) / safe, (g - b) / safe))
    hue = torch.where(grey, torch.zeros_like(hue), torch.remainder(hue / 6.0, 1.0))
    sat = torch.where(grey, torch.zeros_like(delta), delta / torch.where(grey, safe, value))
    sat = (sat + shift).clamp(0, 1)
    sector = torch.floor(hue * 6)
    f = hue * 6 - sector
    p, q = value * (1 - sat), value * (1 - f * sat)
    t = value * (1 - (1 - f) * sat)
    choices = torch.stack([torch.stack(c, 1) for c in (
        (value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value),
        (value, p, q))])  # 6×N×3×H×W
    sector = sector.long().remainder(6)[None, :, None].expand(1, -1, 3, -1, -1)
    out = choices.gather(0, sector)[0]
    return _truncate(out.clamp(0, 1) * 255)


@functools.lru_cache(maxsize=32)
def _gamma_table(gamma: float) -> torch.Tensor:
    """torchvision's PIL gamma map: int(255.999 (v / 255) ** gamma) for v in 0..255."""
    return torch.tensor([int((255 + 1 - 1e-3) * pow(v / 255.0, gamma)) for v in range(256)],
                        dtype=torch.uint8)


def _gamma(x: torch.Tensor, gamma: float, generator: torch.Generator) -> torch.Tensor:
    """torchvision's `adjust_gamma(pil_image, gamma)`, a lookup table, as the package."""
    return _gamma_table(float(gamma)).to(x.device)[x.long()]


# --- noise (Gaussian, shot and impulse noise are ImageNet-C's: `imagenet_c`) -------------

def _normal(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    dtype = torch.float32 if generator.device.type == "mps" else torch.float64
    z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=dtype)
    return z.to(x.device, _real(x.device))


def _speckle_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative noise x + x N(0, std²) on [0, 1] values, clipped; truncated."""
    y = x.to(_real(x.device)) / 255.0
    return _truncate((y + y * std * _normal(x, generator)).clamp(0, 1) * 255)


# --- artefact ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _disc_rows(radius: int) -> tuple[int, ...]:
    """Half-widths, for row offsets 0..radius, of the disc PIL's `ImageDraw.ellipse` fills
    for a (2 radius + 1)-px box: Pillow (Draw.c) walks the quarter circle on a half-pixel
    grid (radius 2r) from (2r, 0) to (0, 2r), each step up, diagonal or left (preferred in
    that order on ties) to the point nearest the circle in |x² + y² - (2r)²|; a row reaches
    the first x the walk visits on it."""
    a2 = (2 * radius) ** 2
    x, y = 2 * radius, 0
    reach = {0: x}
    while y < 2 * radius or x > 0:
        steps = [(x, y + 2)] + ([(x - 2, y + 2), (x - 2, y)] if x > 1 else [])
        x, y = min(steps, key=lambda p: abs(p[0] ** 2 + p[1] ** 2 - a2))
        reach.setdefault(y, x)
    return tuple(reach[2 * k] // 2 for k in range(radius + 1))


def _disc_table(max_radius: int, device: torch.device) -> torch.Tensor:
    """(max_radius + 1)×(max_radius + 2) half-widths by radius and row offset; -1 outside."""
    table = torch.full((max_radius + 1, max_radius + 2), -1, dtype=torch.long)
    for r in range(max_radius + 1):
        table[r, : r + 1] = torch.tensor(_disc_rows(r))
    return table.to(device)


def _bubble(x: torch.Tensor, param: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """White bubbles as the package draws and paints them."""
    bubbles = draw_bubbles(x.shape[0], x.shape[-1], param, generator, x.device)
    return paint_bubbles(x, *bubbles, max_radius=param[0])


def draw_bubbles(n: int, side: int, param: tuple[int, int], generator: torch.Generator,
                 device: torch.device | str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The package's bubble draws for `n` images of `side` px, `param` = (max_radius, most):
    radius, cx, cy (N×most; randint(3, max_radius), randint(r, side - r) each way) and how
    many of them are drawn, count (N×1; randint(7, most)); all bounds inclusive."""
    max_radius, most = param
    device = torch.device(device)
    count = _randint(7, most, (n, 1), generator, device)
    radius = _randint(3, max_radius, (n, most), generator, device)
    cx = _randint(radius, side - radius, (n, most), generator, device)
    cy = _randint(radius, side - radius, (n, most), generator, device)
    return radius, cx, cy, count


def paint_bubbles(x: torch.Tensor, radius: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                  count: torch.Tensor, max_radius: int) -> torch.Tensor:
    """The first `count` (N×1) of the N×B bubbles (radii up to `max_radius`) pasted on `x` as
    the package does with PIL:
    per bubble, in order, a white disc of alpha 130 and radius r + 2 (PIL `ellipse`, drawn
    over earlier bubbles), then one of alpha 100 and radius r; the layer composited with PIL's
    `paste(layer, mask=layer)`: (x (255 - a) + 255 a) / 255 in its rounding."""
    n, _, h, w = x.shape
    dev = x.device
    table = _disc_table(max_radius + 2, dev)
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    alpha = torch.zeros(n, h, w, dtype=torch.long, device=dev)
    for b in range(radius.shape[1]):
        dy = (rows[None, :] - cy[:, b:b + 1]).abs().clamp(max=table.shape[1] - 1)  # N×H
        dx = (cols[None, :] - cx[:, b:b + 1]).abs()[:, None, :]  # N×1×W
        outer = dx <= table[radius[:, b:b + 1] + 2, dy][:, :, None]
        inner = dx <= table[radius[:, b:b + 1], dy][:, :, None]
        drawn = outer & (b < count)[:, :, None]
        alpha = torch.where(drawn, torch.where(inner, 100, 130), alpha)
    a = alpha[:, None]
    blended = x.long() * (255 - a) + 255 * a + 128
    return ((blended + (blended >> 8)) >> 8).to(torch.uint8)


_APPLY: dict[str, Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]] = {
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "gaussian_blur": _gaussian_blur,
    "brightness_up": _brightness,
    "brightness_down": _brightness,
    "contrast_up": _contrast,
    "contrast_down": _contrast,
    "saturate": _saturate,
    "gamma_corr_up": _gamma,
    "gamma_corr_down": _gamma,
    "gaussian_noise": imagenet_c.gaussian_noise,
    "speckle_noise": _speckle_noise,
    "shot_noise": imagenet_c.shot_noise,
    "impulse_noise": imagenet_c.impulse_noise,
    "bubble": _bubble,
}

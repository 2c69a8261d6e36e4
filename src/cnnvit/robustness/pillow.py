"""Pillow's JPEG round trip and BOX resampling, which both reference packages use (for JPEG
compression and pixelation): the JPEG through Pillow itself, the resampling re-implemented
batched in its exact fixed-point arithmetic."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

_FIXED_BITS = 22  # Pillow's fixed-point precision of 8-bit resampling coefficients


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 N×C×H×W images (C 1 or 3) saved as JPEG at `quality` and decoded (Pillow's
    libjpeg, its default 4:2:0 chroma subsampling; grey images as 1-channel JPEGs), image by
    image on the CPU; returned on the images' device."""
    host = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(host)
    for i, pixels in enumerate(host):
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
            buffer, "JPEG", quality=quality)
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer)).reshape(pixels.shape)
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device)


def _box_coefficients(size_in: int, size_out: int) -> torch.Tensor:
    """Pillow's BOX resampling of one axis (`size_out`×`size_in`), in its 8-bit fixed point:
    an output pixel averages the input pixels whose centres fall in its box; when enlarging,
    that is the nearest pixel (as Pillow's NEAREST)."""
    scale = size_in / size_out
    support = 0.5 * max(scale, 1.0)
    centre = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
    first = torch.floor(centre - support + 0.5).clamp(min=0)[:, None]
    stop = torch.floor(centre + support + 0.5).clamp(max=size_in)[:, None]
    pos = torch.arange(size_in, dtype=torch.float64)[None, :]
    arg = (pos - centre[:, None] + 0.5) * (1.0 / max(scale, 1.0))
    weight = ((pos >= first) & (pos < stop) & (arg > -0.5) & (arg <= 0.5)).to(torch.float64)
    weight /= weight.sum(dim=1, keepdim=True)
    return torch.floor(0.5 + weight * 2 ** _FIXED_BITS)


def box_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 N×C×H×W resized as Pillow's `resize(..., BOX)` does it: horizontal pass, rounded
    to uint8, then vertical pass (fixed-point coefficients, exact in float64; float32 on
    Apple's MPS, which has no float64)."""
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    half = 2.0 ** (_FIXED_BITS - 1)
    cols = _box_coefficients(x.shape[3], width).to(x.device, dtype)
    rows = _box_coefficients(x.shape[2], height).to(x.device, dtype)
    y = torch.floor((x.to(dtype) @ cols.T + half) / 2 ** _FIXED_BITS).clamp(0, 255)
    y = torch.floor((rows @ y + half) / 2 ** _FIXED_BITS).clamp(0, 255)
    return y.to(torch.uint8)


def pixelate(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Box-downscaled by `factor` (sizes truncated), then enlarged back (Pillow's BOX, which
    picks the nearest pixel when enlarging): `img.resize(..., BOX)` twice, as both packages."""
    h, w = x.shape[2:]
    return box_resize(box_resize(x, int(h * factor), int(w * factor)), h, w)

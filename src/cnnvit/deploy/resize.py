"""The model's input preprocessing in numpy, for a machine without torch (ONNX Runtime).

A port of `cnnvit.data.pipeline.resize_uint8` (torch's `F.interpolate` on a float copy of the
uint8 image, `align_corners=False`, antialiased when shrinking, then rounded half to even and
clamped to 0..255) and of `BatchPipeline.prepare`'s normalisation. The weights follow torch's
CPU kernels (`UpSampleKernel.cpp`), computed in float32 as torch does; the result equals
torch's except, rarely, a pixel whose exact value lies within float32 rounding of a .5 tie
(tests/test_predict.py bounds this: at most 1 grey level, on a tiny share of pixels).
The PyTorch path of `cnnvit predict` calls `resize_uint8` itself; this copy serves ONNX only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cnnvit.errors import CnnvitError

F32 = np.float32


def _scale(in_size: int, out_size: int) -> np.float32:
    """torch's `area_pixel_compute_scale` for align_corners=False: in / out, in float32."""
    return F32(in_size) / F32(out_size)


def _triangle(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _keys(a: float) -> Callable[[float], float]:
    """The cubic convolution kernel with parameter `a` (Keys 1981)."""
    def kernel(x: float) -> float:
        x = abs(x)
        if x < 1.0:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2.0:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return 0.0
    return kernel


def _antialias_weights(in_size: int, out_size: int, taps: int,
                       kernel: Callable[[float], float]) -> np.ndarray:
    """out×in weights of torch's antialiased (separable, PIL-style) interpolation."""
    scale = _scale(in_size, out_size)
    support = F32(taps * 0.5) * scale if scale >= 1.0 else F32(taps * 0.5)
    invscale = F32(1.0) / scale if scale >= 1.0 else F32(1.0)
    weights = np.zeros((out_size, in_size), dtype=F32)
    for i in range(out_size):
        center = F32(float(scale) * (i + 0.5))
        lo = max(int(float(center - support) + 0.5), 0)
        hi = min(int(float(center + support) + 0.5), in_size)
        w = np.array([kernel(F32(float(F32(j - center)) + 0.5) * invscale)
                      for j in range(lo, hi)], dtype=F32)
        total = w.sum(dtype=F32)
        weights[i, lo:hi] = w / total if total != 0 else w
    return weights


def _linear_weights(in_size: int, out_size: int) -> np.ndarray:
    """out×in weights of torch's bilinear interpolation (no antialias)."""
    scale = _scale(in_size, out_size)
    weights = np.zeros((out_size, in_size), dtype=F32)
    for i in range(out_size):
        src = max(scale * F32(i + 0.5) - F32(0.5), F32(0.0))
        i0 = min(int(np.floor(src)), in_size - 1)
        lam = min(max(src - F32(i0), F32(0.0)), F32(1.0))
        i1 = i0 + (1 if i0 < in_size - 1 else 0)
        weights[i, i0] += F32(1.0) - lam
        weights[i, i1] += lam
    return weights


def _cubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """out×in weights of torch's bicubic interpolation (a = -0.75, edge indices clamped)."""
    scale = _scale(in_size, out_size)
    kernel = _keys(-0.75)
    weights = np.zeros((out_size, in_size), dtype=F32)
    for i in range(out_size):
        src = scale * F32(i + 0.5) - F32(0.5)
        i0 = min(int(np.floor(src)), in_size - 1)
        t = float(min(max(src - F32(i0), F32(0.0)), F32(1.0)))
        for k, dist in enumerate((t + 1.0, t, 1.0 - t, 2.0 - t)):
            weights[i, min(max(i0 - 1 + k, 0), in_size - 1)] += F32(kernel(dist))
    return weights


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output pixel, as torch's legacy "nearest" picks it."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = _scale(in_size, out_size)
    src = np.floor(np.arange(out_size, dtype=F32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def _pad(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad N×H×W×C images to size×size, centred (resize_mode "pad")."""
    n, h, w, c = images.shape
    if h > size or w > size:
        raise CnnvitError(f"this model pads its inputs to {size}×{size} px (resize_mode pad), "
                          f"so it cannot take a {w}×{h} px image: crop or shrink the image "
                          f"to at most {size}×{size} px")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, size, size, c), dtype=np.uint8)
    out[:, top:top + h, left:left + w] = images
    return out


def resize(images: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resize uint8 N×H×W×C images to N×size×size×C as `resize_uint8` does in torch."""
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    if mode == "pad":
        return _pad(images, size)
    if mode == "nearest":
        return images[:, _nearest_index(h, size)][:, :, _nearest_index(w, size)]
    x = images.astype(F32)
    if size < max(h, w):  # antialiased: width first, then height; an unchanged side is kept
        taps, kernel = (2, _triangle) if mode == "bilinear" else (4, _keys(-0.5))
        if w != size:
            x = np.einsum("nhwc,ow->nhoc", x, _antialias_weights(w, size, taps, kernel))
        if h != size:
            x = np.einsum("nhwc,oh->nowc", x, _antialias_weights(h, size, taps, kernel))
    else:
        weights = _linear_weights if mode == "bilinear" else _cubic_weights
        x = np.einsum("nhwc,ow->nhoc", x, weights(w, size))
        x = np.einsum("nhwc,oh->nowc", x, weights(h, size))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 N×H×W×C → float32 N×C×H×W, (x / 255 − mean) / std as `BatchPipeline.prepare`."""
    x = images.astype(F32).transpose(0, 3, 1, 2) / F32(255.0)
    m = np.asarray(mean, dtype=F32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=F32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - m) / s)

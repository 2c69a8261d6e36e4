"""The JPEG round trip both corruption sets use, with Pillow as the reference packages do."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


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

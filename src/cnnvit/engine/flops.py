"""FLOPs per image with `torch.utils.flop_counter` (counts matmuls and convolutions)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def flops_per_image(model: torch.nn.Module, in_chans: int, image_size: int,
                    backward: bool = False) -> int:
    """Forward (or forward + backward) FLOPs of one image.

    Counted in eval mode, so batch-norm running statistics are left untouched.
    """
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, image_size, image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            if backward:
                model(x).sum().backward()
            else:
                with torch.no_grad():
                    model(x)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return int(counter.get_total_flops())

"""Mixed precision: what `--amp` means on the CPU, and that CPU bf16 autocast trains."""

import pytest
import torch

from cnnvit.engine.runtime import amp_dtype, autocast
from cnnvit.errors import CnnvitError
from cnnvit.models import build

CPU = torch.device("cpu")


def test_amp_modes_on_the_cpu():
    assert amp_dtype("auto", CPU) is None and amp_dtype("off", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(CnnvitError, match="--amp fp16 needs a CUDA device.*--amp bf16"):
        amp_dtype("fp16", CPU)


def test_cpu_bf16_autocast_runs_the_models_in_bf16(one_thread):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    for name in ("resnet18-small", "vit-small-input"):
        model = build(name, 5, image_size=16)
        with autocast(CPU, amp_dtype("bf16", CPU)):
            logits = model(x)
        assert logits.dtype == torch.bfloat16  # autocast really ran in bf16
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.arange(4))
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and p.grad.dtype == torch.float32
                   for p in model.parameters() if p.requires_grad)

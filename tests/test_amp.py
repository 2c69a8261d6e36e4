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


def test_auto_on_the_cpu_follows_the_stated_rule(monkeypatch):
    from cnnvit.engine import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.training_dtype("auto", CPU, 9.2e8)[0] is torch.bfloat16  # resnet18-small@28
    assert runtime.training_dtype("auto", CPU, 2.0e7)[0] is None          # vit-small-input@28
    assert runtime.training_dtype("off", CPU, 9.2e8)[0] is None
    assert runtime.training_dtype("bf16", CPU, 2.0e7)[0] is torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    dtype, why = runtime.training_dtype("auto", CPU, 9.2e8)
    assert dtype is None and "without native bf16" in why


def test_the_training_precision_is_recorded_and_kept_on_resume(tmp_path, monkeypatch):
    import yaml

    from cnnvit import config
    from cnnvit.engine import runtime
    from cnnvit.engine.train import fit

    monkeypatch.setattr(runtime, "CPU_BF16_MIN_FLOPS", 0.0)  # every model counts as heavy
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    cfg = config.load(None, {"dataset": "digits", "model": "vit-small-input", "epochs": 1,
                             "model_kwargs": {"width": 32, "depth": 1, "heads": 2},
                             "threads": 1, "out": str(tmp_path / "m")})
    out = fit(cfg, quiet=True)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["resolved"]["train_precision"]["dtype"] == "bfloat16"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)  # another machine
    fit(cfg.replace(epochs=2), resume=True, quiet=True)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["resolved"]["train_precision"]["dtype"] == "bfloat16"  # kept, not re-decided

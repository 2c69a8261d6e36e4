import math

import pytest
import torch

from cnnvit.config import Config
from cnnvit.engine.optim import build_optimizer, lr_at


def test_cosine_with_warmup():
    cfg = Config(epochs=10, lr=1.0, warmup_epochs=2, scheduler="cosine")
    assert lr_at(cfg, 1.0) == pytest.approx(0.5)
    assert lr_at(cfg, 0.0, step=0.1) == pytest.approx(0.05)  # the first step already learns
    assert lr_at(cfg, 2.0) == pytest.approx(1.0)
    assert lr_at(cfg, 6.0) == pytest.approx(0.5)
    assert lr_at(cfg, 10.0) == pytest.approx(0.0, abs=1e-12)


def test_step_and_multistep():
    cfg = Config(epochs=100, lr=1.0, warmup_epochs=0, scheduler="multistep",
                 milestones=[0.5, 0.75], gamma=0.1)
    assert lr_at(cfg, 49.9) == 1.0
    assert lr_at(cfg, 50.0) == pytest.approx(0.1)
    assert lr_at(cfg, 80.0) == pytest.approx(0.01)
    cfg = Config(epochs=10, lr=1.0, warmup_epochs=0, scheduler="step", step_size=3, gamma=0.5)
    assert lr_at(cfg, 6.5) == pytest.approx(0.25)
    assert lr_at(Config(scheduler="none", warmup_epochs=0, lr=0.3), 5) == 0.3


def test_extension_phase_restarts_schedule_without_warmup():
    cfg = Config(epochs=60, lr=1e-4, warmup_epochs=5, scheduler="cosine")
    assert lr_at(cfg, 40.0, start_epoch=40) == pytest.approx(1e-4)
    assert lr_at(cfg, 50.0, start_epoch=40) == pytest.approx(0.5e-4)
    assert math.isclose(lr_at(cfg, 60.0, start_epoch=40), 0.0, abs_tol=1e-15)


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("sgd", torch.optim.SGD)])
def test_optimizers_exclude_1d_params_from_decay(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, Config(optimizer=name, weight_decay=0.1, nesterov=True))
    assert isinstance(opt, cls)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.ndim for p in decay["params"]] == [2]
    assert len(no_decay["params"]) == 3

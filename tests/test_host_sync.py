"""Host synchronisations of the training loop, counted on the CPU.

A read of a tensor's value on the host (`.item()`, `bool()`, `int()`, `float()`: aten's
`_local_scalar_dense`; `.tolist()`, `.numpy()`, `.cpu()`) makes the host wait for the device on
CUDA. The loop (`engine.train._train_epoch`) is meant to make none, except its non-finite-loss
check every `CHECK_EVERY` optimizer steps and once at the end of the epoch.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cnnvit.config import Config
from cnnvit.engine import train
from cnnvit.rundir import ModelDir

pytestmark = pytest.mark.usefixtures("one_thread")


class HostReads(TorchDispatchMode):
    """Counts host reads of tensor values per training step (`step`: `_train_batch` calls so far;
    the next batch is drawn before its `_train_batch`, so its reads count at the step before)."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.per_step: collections.Counter[int] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.per_step[self.step] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostReads]:
    """HostReads, also counting the reads that bypass the dispatcher on CPU tensors."""
    reads = HostReads()
    for name in ("tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *a: Any, _original: Any = original, **k: Any) -> Any:
            reads.per_step[reads.step] += 1
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    train_batch = train._train_batch

    def counting_step(*a: Any, **k: Any) -> None:
        reads.step += 1
        train_batch(*a, **k)
    monkeypatch.setattr(train, "_train_batch", counting_step)
    yield reads


def _epoch(tmp_path: Any, reads: HostReads, **keys: Any) -> train.EpochState:
    """One epoch of the real loop (a one-block ViT on digits, 32 images a batch) under `reads`."""
    cfg = Config(dataset="digits", model="vit-small-input", batch_size=32, epochs=1,
                 out=str(tmp_path / "m"), model_kwargs={"width": 32, "depth": 1, "heads": 2},
                 **keys)
    run = train._open(cfg, ModelDir(cfg.out), None, True, None, train.StopRequest())
    with reads:
        state, ended = train._train_epoch(run, run.model, 0, 0, None, True, None)
    assert ended is None
    return state


def test_loop_reads_the_host_only_at_the_periodic_check(tmp_path, count_reads):
    # augmentation on the device, gradient clipping, nan_policy stop: no read per step
    state = _epoch(tmp_path, count_reads, hflip=True, crop_padding=2, random_erasing=0.25,
                   grad_clip=1.0)
    assert state.steps > 2 * train.CHECK_EVERY
    checks = set(range(train.CHECK_EVERY, state.steps + 1, train.CHECK_EVERY)) | {state.steps}
    assert dict(count_reads.per_step) == dict.fromkeys(checks, 1)


def test_skip_batch_reads_the_loss_once_a_step(tmp_path, count_reads):
    # the counter sees `bool(tensor)`: nan_policy skip-batch must read each loss to skip a
    # step, once (plus the periodic check)
    state = _epoch(tmp_path, count_reads, nan_policy="skip-batch")
    checks = set(range(train.CHECK_EVERY, state.steps + 1, train.CHECK_EVERY)) | {state.steps}
    assert dict(count_reads.per_step) == {s: 1 + (s in checks) for s in range(1, state.steps + 1)}

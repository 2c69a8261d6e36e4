"""Training on several processes: `torchrun -m cnnvit train` (gloo on the CPU) against one
process, kills and resumes across world sizes, and the pieces that make it exact.

Tolerance of the 2-process run against 1 process: with the same global batch, equal shards
and no batch norm (a ViT), DistributedDataParallel's gradient (the mean of the ranks' mean
gradients) is the one process's mean gradient, up to float32 summation order; measured here,
the test probabilities differ by 8.3e-7. The tests allow 1e-3 in any probability and the same
predicted class for every test sample: room for rounding to grow over epochs, far below what a
wrong shard, a double-counted sample or an unsynchronised step would give.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cnnvit.config import Config
from cnnvit.data.pipeline import BatchPipeline
from cnnvit.data.types import Split
from cnnvit.engine import distributed
from cnnvit.engine.distributed import World, world_from_env
from cnnvit.errors import CnnvitError

TOLERANCE = 1e-3
# a two-block ViT that reaches about 95 % test accuracy on digits in 8 epochs of about 0.3 s
TRAIN = ["train", "--dataset", "digits", "--model", "vit-small-input", "--epochs", "8",
         "--batch-size", "32", "--lr", "1e-3", "--device", "cpu", "--threads", "1", "--quiet",
         "--set", "weight_decay=0", "--set", "warmup_epochs=0", "--set",
         'model_kwargs={"width": 64, "depth": 2, "heads": 4, "patch_size": 4}']
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _command(processes: int, out: Path) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "cnnvit", *TRAIN, "--out", str(out)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "cnnvit", *TRAIN, "--out", str(out)]


def _train(processes: int, out: Path) -> None:
    res = subprocess.run(_command(processes, out), env=ENV, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]


def _kill_after_first_epoch(processes: int, out: Path, sig: int) -> None:
    """Start training, send `sig` to the whole process group once an epoch is saved."""
    proc = subprocess.Popen(_command(processes, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    history, deadline = out / "history.csv", time.monotonic() + 240
    while not (history.is_file() and len(pd.read_csv(history)) >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended early"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=120) != 0
    assert not (out / "summary.json").exists(), "the kill came after training finished"


def _probs(out: Path) -> np.ndarray:
    frame = pd.read_csv(out / "predictions_test.csv")
    assert frame["index"].tolist() == list(range(len(frame)))  # each test sample once, in order
    return frame.filter(like="prob_").to_numpy()


def _assert_close(a: Path, b: Path, tolerance: float = TOLERANCE) -> None:
    pa, pb = _probs(a), _probs(b)
    assert pa.shape == pb.shape
    assert np.abs(pa - pb).max() <= tolerance
    assert (pa.argmax(1) == pb.argmax(1)).all()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training on 2 processes and on 1."""
    root = tmp_path_factory.mktemp("ddp")
    _train(2, root / "two")
    _train(1, root / "one")
    return root


@pytest.mark.slow
def test_two_processes_give_the_one_process_result_and_rank_0_writes(runs):
    two, one = runs / "two", runs / "one"
    _assert_close(two, one)
    test_two, test_one = (json.loads((d / "metrics_test.json").read_text()) for d in (two, one))
    assert test_two["accuracy"] == test_one["accuracy"]
    assert abs(test_two["loss"] - test_one["loss"]) <= TOLERANCE
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["peak_memory_bytes"] > 0
    assert summary["peak_memory_kind"].endswith("_max_over_processes")
    assert "world_size: 2" in (two / "config.yaml").read_text()
    # the training totals are summed over both processes: 39 batches of 32 a epoch
    history, alone = pd.read_csv(two / "history.csv"), pd.read_csv(one / "history.csv")
    assert history["train_accuracy"].tolist() == pytest.approx(
        alone["train_accuracy"].tolist(), abs=1.5 / 1248)
    assert history["train_loss"].tolist() == pytest.approx(alone["train_loss"].tolist(),
                                                           abs=TOLERANCE)
    log = (two / "train.log").read_text()
    assert log.count("evaluating the best checkpoint") == 1  # one writer


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_on_two_and_on_one_process(runs, tmp_path):
    killed = tmp_path / "killed"
    _kill_after_first_epoch(2, killed, signal.SIGTERM)  # torchrun passes it to the workers
    shutil.copytree(killed, tmp_path / "on_one")
    _train(2, killed)
    _assert_close(killed, runs / "two", tolerance=1e-6)  # the same processes: exact
    _train(1, tmp_path / "on_one")
    _assert_close(tmp_path / "on_one", runs / "two")


@pytest.mark.slow
def test_a_killed_one_process_run_resumes_on_two_processes(runs, tmp_path):
    killed = tmp_path / "killed"
    _kill_after_first_epoch(1, killed, signal.SIGKILL)
    _train(2, killed)
    _assert_close(killed, runs / "one")
    assert json.loads((killed / "summary.json").read_text())["world_size"] == 2


def _split(n: int) -> Split:
    images = (np.arange(n * 4 * 4) % 251).astype(np.uint8).reshape(n, 4, 4, 1)
    return Split(images=images, labels=np.arange(n) % 3)


def _pipe(n: int) -> BatchPipeline:
    return BatchPipeline(_split(n), device=torch.device("cpu"), image_size=4, mean=[0.5],
                         std=[0.25])


@pytest.mark.parametrize("n, world", [(10, 3), (7, 2), (2, 4), (359, 2)])
def test_evaluation_shards_cover_every_sample_once_in_order(n, world):
    pipe = _pipe(n)
    full = torch.cat([x for x, _ in pipe.batches(3)])
    parts = [torch.cat([x for x, _ in pipe.batches(3, shard=(r, world))] or [full[:0]])
             for r in range(world)]
    assert torch.equal(torch.cat(parts), full)


def test_training_shards_split_each_global_batch_of_the_same_permutation():
    pipe = _pipe(50)

    def labels(rank: int, world: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(7)
        return [y for _, y in pipe.batches(8, gen, drop_last=True, shard=(rank, world))]

    one, halves = labels(0, 1), [labels(r, 2) for r in range(2)]
    assert len(one) == 6 and all(len(y) == 4 for y in halves[0] + halves[1])
    for b, batch in enumerate(one):
        assert torch.equal(torch.cat([halves[0][b], halves[1][b]]), batch)


def test_the_world_comes_from_torchruns_environment():
    assert world_from_env({}) == World()
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.is_main) == (3, 4, 1, False)
    with pytest.raises(CnnvitError, match="do not describe a process"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(CnnvitError, match="do not describe a process"):
        world_from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_each_process_takes_the_gpu_of_its_local_rank():
    world = World(rank=3, size=4, local_rank=1)
    assert distributed.device_for("cuda", world) == "cuda:1"
    assert distributed.device_for("cpu", world) == "cpu"
    assert distributed.device_for("cuda:0", World()) == "cuda:0"
    with pytest.raises(CnnvitError, match="GPU of its LOCAL_RANK"):
        distributed.device_for("cuda:0", world)


def test_the_global_batch_must_split_equally(tmp_path, monkeypatch):
    from cnnvit.engine import train

    monkeypatch.setattr(train, "join", lambda device: World(rank=0, size=4))
    cfg = Config(dataset="digits", model="vit-small-input", batch_size=30, out=str(tmp_path))
    with pytest.raises(CnnvitError, match="use a multiple of 4"):
        train._open(cfg, train.ModelDir(tmp_path), None, True, None, train.StopRequest())
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.slow
def test_a_study_under_torchrun_trains_on_every_rank_and_reports_once(tmp_path):
    out = tmp_path / "study"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "cnnvit", "run", "--preset", "quickstart", "--epochs", "1", "--threads", "1",
         "--device", "cpu", "--no-explain", "--quiet", "--out", str(out)],
        env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["world_size"], manifest["distributed_backend"]) == (2, "gloo")
    assert list(manifest["stages"]) == ["data", "train", "evaluate", "robustness", "compare",
                                        "figures", "report"]
    assert len(list((out / "logs").glob("run_*.log"))) == 1  # rank 0 alone writes the log
    for model_dir in (out / "models").iterdir():
        assert json.loads((model_dir / "summary.json").read_text())["world_size"] == 2
    assert "each model trained by 2 processes (torchrun, gloo" in (
        out / "report" / "report.md").read_text()

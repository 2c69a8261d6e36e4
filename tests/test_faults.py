"""Faults: signals mid-epoch (SIGTERM, SIGINT, SIGKILL) and the same command again, a
non-finite loss, a full disk, a checkpoint that carries code, a bad --out, deleted checkpoints
and an unexpected exception. Tiny ViTs on digits, one thread, deterministic."""

import errno
import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from cnnvit import io as cnnvit_io
from cnnvit.checkpoint import load_checkpoint
from cnnvit.cli import main
from cnnvit.engine import train as train_mod
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write_json
from cnnvit.rundir import ModelDir

STEPS = 1258 // 64  # optimizer steps per epoch: digits' training split at batch size 64
TRAIN = ["train", "--dataset", "digits", "--model", "vit-small-input", "--set",
         "model_kwargs=width=32,depth=1,heads=2,drop_rate=0.1", "--set", "crop_padding=1",
         "--set", "hflip=true", "--epochs", "3", "--batch-size", "64", "--deterministic",
         "--threads", "1", "--quiet"]
RUN = ["run", "--preset", "quickstart", "--models", "vit-small-input", "--epochs", "3",
       "--deterministic", "--threads", "1", "--quiet", "--no-explain", "--set",
       "vit-small-input.model_kwargs=width=32,depth=1,heads=2"]
RUN_STEPS = 1258 // 32  # the quickstart ViT's batch size is 32
TIMING = {"eval_images_per_s"}
# a process that runs the CLI and sends itself signal SIG during global optimizer step STEP
DRIVER = """
import itertools, os, sys
from cnnvit.cli import main
from cnnvit.engine import train
real, calls = train._criterion, itertools.count(1)
def criterion(cfg):
    inner = real(cfg)
    def loss(logits, y):
        if next(calls) == {step}:
            os.kill(os.getpid(), {sig})
        return inner(logits, y)
    return loss
train._criterion = criterion
raise SystemExit(main(sys.argv[1:]))
"""


def _at_step(monkeypatch, step, action):
    """Make the training loss of global optimizer step `step` (1-based) `action(loss)`."""
    real, calls = train_mod._criterion, itertools.count(1)

    def criterion(cfg):
        inner = real(cfg)
        return lambda logits, y: (action(inner(logits, y)) if next(calls) == step
                                  else inner(logits, y))

    monkeypatch.setattr(train_mod, "_criterion", criterion)
    return real


def _send(sig):
    def action(loss):
        os.kill(os.getpid(), sig)
        return loss
    return action


def _drive(args, step, sig, cwd):
    code = DRIVER.format(step=step, sig=int(sig))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=300)


def _results(model_dir):
    """Everything a run's numbers are: metrics without timings, history without timings, and
    the last weights."""
    metrics = {s: {k: v for k, v in json.loads((model_dir / f"metrics_{s}.json").read_text())
                   .items() if k not in TIMING} for s in ("val", "test")}
    history = pd.read_csv(model_dir / "history.csv").drop(
        columns=["seconds", "train_images_per_s"])
    weights = load_checkpoint(model_dir / "checkpoints" / "last.pt")["model"]
    return metrics, history, weights


def _assert_same(a, b):
    (ma, ha, wa), (mb, hb, wb) = _results(a), _results(b)
    assert ma == mb
    pd.testing.assert_frame_equal(ha, hb)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must end up equal to."""
    out = tmp_path_factory.mktemp("ref") / "m"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_epoch_saves_it_and_the_same_command_resumes_exactly(
        sig, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    real = _at_step(monkeypatch, STEPS + 5, _send(sig))
    assert main([*TRAIN, "--out", str(out)]) == 128 + sig  # 143 for SIGTERM, 130 for SIGINT
    name, last = signal.Signals(sig).name, out / "checkpoints" / "last.pt"
    message = (f"interrupted at epoch 2 step 5 by {name}; {last} holds the training so far: "
               "run the same command again to resume")
    assert capsys.readouterr().err.splitlines() == [f"cnnvit: {message}"]
    assert message in (out / "train.log").read_text()
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored
    saved = load_checkpoint(last)
    assert saved["epoch"] == 1 and saved["partial"]["steps"] == 5
    assert len(pd.read_csv(out / "history.csv")) == 1 and not (out / "summary.json").exists()
    monkeypatch.setattr(train_mod, "_criterion", real)
    assert main([*TRAIN, "--out", str(out)]) == 0  # the same command: no --resume needed
    assert "resuming at epoch 2/3 after step 5" in (out / "train.log").read_text()
    _assert_same(out, reference)


def test_sigkill_mid_epoch_then_the_same_command_resumes_from_the_last_epoch(
        reference, tmp_path):
    out = tmp_path / "m"
    proc = _drive([*TRAIN, "--out", str(out)], STEPS + 5, signal.SIGKILL, tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    saved = load_checkpoint(out / "checkpoints" / "last.pt")
    assert saved["epoch"] == 1 and "partial" not in saved
    assert main([*TRAIN, "--out", str(out)]) == 0
    _assert_same(out, reference)


def test_run_records_a_sigterm_in_training_and_in_a_later_stage(tmp_path, monkeypatch):
    out = tmp_path / "run"
    proc = _drive([*RUN, "--out", str(out)], RUN_STEPS + 5, signal.SIGTERM, tmp_path)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "cnnvit: interrupted at epoch 2 step 5 by SIGTERM; ")
    log = next((out / "logs").glob("run_*.log")).read_text()
    assert "interrupted at epoch 2 step 5 by SIGTERM" in log  # the model's line
    assert "stage train: failed: interrupted at epoch 2 step 5 by SIGTERM" in log
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["train"]["failed"].startswith("interrupted at epoch 2 step 5")
    import cnnvit.compare

    monkeypatch.setattr(cnnvit.compare, "compare", lambda *a, **k: os.kill(os.getpid(),
                                                                          signal.SIGTERM))
    handler = signal.getsignal(signal.SIGTERM)
    assert main([*RUN, "--out", str(out)]) == 143  # resumes training, stopped in compare
    assert signal.getsignal(signal.SIGTERM) is handler
    manifest = json.loads((out / "manifest.json").read_text())
    assert "seconds" in manifest["stages"]["train"]
    assert manifest["stages"]["compare"]["failed"] == "interrupted by SIGTERM"
    logs = "".join(p.read_text() for p in (out / "logs").glob("run_*.log"))
    assert "stage compare: failed: interrupted by SIGTERM" in logs
    model_dir = out / "models" / "vit-small-input"
    cfg, _ = ModelDir(model_dir).read_config()
    ref = train_mod.fit(cfg.replace(out=str(tmp_path / "ref")), quiet=True)
    _assert_same(model_dir, ref)


def test_run_retrains_deleted_checkpoints_and_names_a_lost_best_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*RUN, "--epochs", "2", "--out", str(out)]
    assert main(args) == 0
    model_dir = out / "models" / "vit-small-input"
    first = _results(model_dir)[0]
    shutil.rmtree(model_dir / "checkpoints")
    capsys.readouterr()
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "already trained" not in stdout and "training from the start" in stdout
    assert _results(model_dir)[0] == first  # retrained, to the same numbers
    best_epoch = json.loads((model_dir / "summary.json").read_text())["best_epoch"]
    (model_dir / "checkpoints" / "best.pt").unlink()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cnnvit: error: {model_dir / 'checkpoints' / 'best.pt'} is missing or "
                   f"unreadable, so the weights of the best epoch ({best_epoch}) are lost; delete "
                   f"{model_dir} and train it again (`cnnvit run --force` does that)")


def test_a_non_finite_loss_stops_with_its_epoch_and_step_and_keeps_the_checkpoints(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "m"
    _at_step(monkeypatch, STEPS + 3, lambda loss: loss * float("nan"))
    assert main([*TRAIN, "--out", str(out)]) == 2
    last = out / "checkpoints" / "last.pt"
    message = (f"the training loss was not finite at epoch 2 step 3/{STEPS}; training stopped "
               f"and the last good state, {last}, is kept. Lower --lr or --set "
               "nan_policy=skip-batch, then run the same command again")
    assert capsys.readouterr().err.splitlines() == [f"cnnvit: error: {message}"]
    assert message in (out / "train.log").read_text()
    saved = load_checkpoint(last)
    assert saved["epoch"] == 1 and "partial" not in saved
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert (out / "checkpoints" / "best.pt").is_file() and not (out / "summary.json").exists()
    assert len(pd.read_csv(out / "history.csv")) == 1


def test_skip_batch_leaves_out_a_non_finite_batch_and_finishes(tmp_path, monkeypatch):
    out = tmp_path / "m"
    _at_step(monkeypatch, STEPS + 3, lambda loss: loss * float("inf"))
    assert main([*TRAIN, "--set", "nan_policy=skip-batch", "--out", str(out)]) == 0
    assert f"epoch 2: skipped 1 of {STEPS} batches" in (out / "train.log").read_text()
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 3 and history["train_loss"].notna().all()
    assert (out / "summary.json").is_file()


def _failing_replace(monkeypatch, fails, real=os.replace):
    """`os.replace` fails with ENOSPC (a full disk) for the destinations `fails` picks."""
    def replace(src, dst):
        if fails(str(dst)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    monkeypatch.setattr(cnnvit_io.os, "replace", replace)


def test_a_full_disk_keeps_the_previous_file_and_names_it(tmp_path, monkeypatch, capsys):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"v": 1})
    _failing_replace(monkeypatch, lambda dst: True)
    with pytest.raises(CnnvitError) as info:
        atomic_write_json(path, {"v": 2})
    assert info.value.message == (f"cannot write {path}: No space left on device (ENOSPC); "
                                  "the previous file is unchanged")
    assert json.loads(path.read_text()) == {"v": 1} and os.listdir(tmp_path) == ["x.json"]
    # training: the second epoch's last.pt cannot be written
    out, lasts = tmp_path / "m", itertools.count(1)
    _failing_replace(monkeypatch, lambda dst: dst.endswith("last.pt") and next(lasts) == 2)
    assert main([*TRAIN, "--out", str(out)]) == 2
    last = out / "checkpoints" / "last.pt"
    assert capsys.readouterr().err.splitlines() == [
        f"cnnvit: error: cannot write {last}: No space left on device (ENOSPC); the previous "
        "file is unchanged"]
    assert load_checkpoint(last)["epoch"] == 1
    assert sorted(os.listdir(last.parent)) == ["best.pt", "last.pt"]  # no temporary files


class _OpensAFile:
    """Unpickling this creates `marker`: a stand-in for a payload that runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_carries_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    zipped, legacy = tmp_path / "evil.pt", tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.ones(1)}, "x": _OpensAFile(marker)}, zipped)
    with open(legacy, "wb") as f:
        pickle.dump({"x": _OpensAFile(marker)}, f, protocol=2)
    for path in (zipped, legacy):
        with pytest.raises(CnnvitError) as info:
            load_checkpoint(path)
        assert info.value.message == (
            f"{path}: contains pickled Python objects that are not plain tensors/numbers "
            "(GLOBAL io.open); cnnvit will not run code from a file. Use a checkpoint "
            "written by cnnvit or a .safetensors file.")
    assert main([*TRAIN, "--weights", str(zipped), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "GLOBAL io.open" in err
    assert "weights_only" not in err
    assert not marker.exists()


def test_an_out_that_cannot_be_created_is_one_line_and_writes_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    for command in (TRAIN, RUN):
        assert main([*command, "--out", str(blocker / "out")]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"cnnvit: error: cannot create {blocker / 'out'}: {blocker} is a file, not a "
            "directory"]
    assert blocker.read_text() == "a file, not a directory"
    assert os.listdir(tmp_path) == ["file"]


def test_an_out_in_a_read_only_directory_is_one_line(tmp_path, capsys, monkeypatch):
    import cnnvit.io

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    real_access = os.access

    def access(path, mode, **kwargs):  # what the kernel answers on a read-only mount, even to
        if Path(path) == locked and mode & os.W_OK:  # root (who may write into 0o555 here)
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(cnnvit.io.os, "access", access)
    assert main([*TRAIN, "--out", str(locked / "m")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert os.listdir(locked) == []


def test_an_unexpected_exception_is_one_line_with_the_traceback_in_a_file(
        tmp_path, monkeypatch, capsys):
    import cnnvit.compare

    def broken(*args, **kwargs):
        raise ValueError("something broke\nsecond line")

    monkeypatch.setattr(cnnvit.compare, "compare", broken)
    assert main(["compare", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    crash = next((tmp_path / "logs").glob("crash-*.log"))
    assert err == [f"cnnvit: internal error: ValueError: something broke (traceback in "
                   f"{crash}; `cnnvit --debug ...` prints it)"]
    assert "Traceback" in crash.read_text() and "in broken" in crash.read_text()
    with pytest.raises(ValueError, match="something broke"):
        main(["--debug", "compare", str(tmp_path)])


def test_an_error_message_is_always_one_line():
    from cnnvit.errors import CnnvitError

    err = CnnvitError("x.csv: cannot read CSV (Error tokenizing data.\nC error: bad line\n); fix")
    assert err.message == "x.csv: cannot read CSV (Error tokenizing data. C error: bad line ); fix"
    assert str(err) == err.message


def test_sigterm_in_any_command_is_one_line_and_exit_143(tmp_path, monkeypatch, capsys):
    import signal

    import cnnvit.compare

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the handler should have stopped the command")

    monkeypatch.setattr(cnnvit.compare, "compare", killed)
    assert main(["compare", str(tmp_path)]) == 143
    assert capsys.readouterr().err == "cnnvit: interrupted by SIGTERM\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was restored

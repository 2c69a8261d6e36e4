"""`cnnvit run`: end to end on the quickstart preset, resume after a kill, the study presets
offline (the clear error) and with local data and weights files past it."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import timm
import torch
import torchvision

from cnnvit import presets
from cnnvit.cli import main
from cnnvit.errors import ConfigError
from tests.fakes import trust, write_fake, write_fake_cifar10

TINY_VIT = "vit-small-input.model_kwargs=width=32,depth=1,heads=2"
QUICK = ["run", "--preset", "quickstart", "--epochs", "2", "--quiet", "--threads", "1",
         "--set", TINY_VIT, "--no-explain"]


def _history(d):
    return pd.read_csv(d / "history.csv").drop(columns=["seconds", "train_images_per_s"])


def test_quickstart_end_to_end_and_rerun_skips_finished_models(tmp_path, capsys):
    out = tmp_path / "q"
    assert main([*QUICK, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for stage in ("data", "train", "evaluate", "compare", "figures", "report"):
        assert f"stage {stage}: start" in stdout and f"stage {stage}: done in" in stdout
    assert "total:" in stdout.splitlines()[-1]
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("cnnvit_version", "versions", "device", "device_name", "cpu_count", "gpu_count",
                "dataset", "data", "seeds", "models", "stages", "mode", "total_seconds"):
        assert key in manifest, key
    assert manifest["mode"] == "full" and manifest["versions"]["torch"]
    assert manifest["data"]["digits (8px)"]["split_sizes"] == {"train": 1258, "val": 180,
                                                               "test": 359}
    assert set(manifest["models"]) == {"models/resnet18-small", "models/vit-small-input"}
    assert manifest["models"]["models/vit-small-input"]["config"]["epochs"] == 2
    logs = list((out / "logs").glob("run_*.log"))
    assert len(logs) == 1 and "stage train: done in" in logs[0].read_text()
    assert logs[0].read_text().count("epoch   2/2") == 2  # each model's epoch lines, too
    assert "epoch   1/2" not in stdout  # --quiet
    for name in ("resnet18-small", "vit-small-input"):
        assert (out / "models" / name / "metrics_test.json").is_file()
    final = pd.read_csv(out / "results" / "final_comparison.csv")
    assert len(final) == 4 and set(final["split"]) == {"val", "test"}
    assert {"parameters", "flops_per_image", "train_seconds", "f1_macro"} <= set(final)
    summary = (out / "results" / "summary.md").read_text()
    assert "resnet18-small" in summary and "vit-small-input" in summary
    assert (out / "results" / "per_class.csv").is_file()
    index = (out / "ARTIFACTS.md").read_text()  # every file of the run, and what it is
    for rel in ("manifest.json", "models/resnet18-small/config.yaml", "results/summary.md",
                "results/statistics.json"):
        assert f"| `{rel}` |" in index
    assert "not a cnnvit artifact" not in index

    mtime = (out / "models" / "resnet18-small" / "history.csv").stat().st_mtime
    assert main([*QUICK, "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("already trained") == 2
    assert (out / "models" / "resnet18-small" / "history.csv").stat().st_mtime == mtime
    assert len(list((out / "logs").glob("run_*.log"))) >= 1


def test_seeds_and_reduced_mode(tmp_path):
    out = tmp_path / "s"
    assert main([*QUICK, "--models", "vit-small-input", "--seeds", "1,2", "--reduced",
                 "--out", str(out)]) == 0
    root = out / "reduced"
    assert (root / "models" / "vit-small-input" / "seed_1" / "metrics_test.json").is_file()
    assert (root / "models" / "vit-small-input" / "seed_2" / "metrics_test.json").is_file()
    seeds = pd.read_csv(root / "results" / "seed_summary.csv")
    assert set(seeds["n_seeds"]) == {2}
    assert "reduced" in (root / "results" / "summary.md").read_text().lower()
    assert json.loads((root / "manifest.json").read_text())["mode"] == "reduced"
    assert not (out / "models").exists()


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = [sys.executable, "-m", "cnnvit", "run", "--preset", "quickstart", "--models",
            "vit-small-input", "--epochs", "12", "--deterministic", "--threads", "1", "--quiet",
            "--no-explain", "--set", TINY_VIT]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*args, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    history = cut / "models" / "vit-small-input" / "history.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 3:  # ≥ 2 epochs done
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    model_dir = cut / "models" / "vit-small-input"
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not (model_dir / "summary.json").exists(), "the run finished before it was killed"
    epochs_done = len(pd.read_csv(history))
    assert 2 <= epochs_done < 12
    subprocess.run([*args, "--out", str(cut)], env=env, check=True, capture_output=True)
    ref = tmp_path / "ref"
    subprocess.run([*args, "--out", str(ref)], env=env, check=True, capture_output=True)
    ref_dir = ref / "models" / "vit-small-input"
    pd.testing.assert_frame_equal(_history(model_dir), _history(ref_dir))
    for split in ("val", "test"):
        a = json.loads((model_dir / f"metrics_{split}.json").read_text())
        b = json.loads((ref_dir / f"metrics_{split}.json").read_text())
        for key in ("accuracy", "f1_macro", "auc_macro", "loss", "ece", "confusion_matrix"):
            assert a[key] == b[key], key
    assert "resuming at epoch" in (model_dir / "train.log").read_text()


def test_presets_validate_and_list():
    assert {"quickstart", "bloodmnist", "bloodmnist-native", "cifar10"} <= set(
        presets.available())
    cifar = presets.load("cifar10")
    assert [m.name for m in cifar.models] == ["resnet18-cifar", "vit-scratch", "vit-s16-transfer"]
    assert cifar.models[1].extend == {"epochs": 60, "lr": 1e-4}
    red = presets.load("bloodmnist", reduced=True)
    assert all(m.overrides["epochs"] == 3 and m.overrides["image_size"] == 128 for m in red.models)
    with pytest.raises(ConfigError, match="unknown preset"):
        presets.load("nope")
    with pytest.raises(ConfigError, match="not a model of this study"):
        presets.load("quickstart", overrides={"vit.epochs": 1})
    with pytest.raises(ConfigError, match="unknown config key"):
        presets.load("quickstart", overrides={"epoch": 1})


def test_bloodmnist_preset_offline_errors_then_runs_with_local_files(tmp_path, monkeypatch,
                                                                     capsys):
    root = tmp_path / "data"
    root.mkdir()
    args = ["run", "--preset", "bloodmnist", "--reduced", "--data-root", str(root), "--quiet",
            "--no-explain", "--out", str(tmp_path / "b"), "--epochs", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bloodmnist.npz" in err and "zenodo" in err and "Traceback" not in err
    log = next((tmp_path / "b" / "reduced" / "logs").glob("run_*.log")).read_text()
    assert "stage data: failed: bloodmnist.npz not found" in log
    trust(monkeypatch, "bloodmnist", write_fake(root, "bloodmnist", n=(16, 8, 8)))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot download pretrained weights" in err and "--weights" in err
    resnet = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), resnet)
    vit = tmp_path / "vit_b16.pth"
    torch.save(timm.create_model("vit_base_patch16_224").state_dict(), vit)
    assert main([*args, "--set", f"resnet18.weights={resnet}",
                 "--set", f"vit_base_patch16_224.weights={vit}"]) == 0
    run = tmp_path / "b" / "reduced"
    final = pd.read_csv(run / "results" / "final_comparison.csv")
    assert set(final["model"]) == {"resnet18", "vit_base_patch16_224"}
    manifest = json.loads((run / "manifest.json").read_text())
    cfg = manifest["models"]["models/resnet18"]
    assert cfg["config"]["image_size"] == 128 and cfg["resolved"]["mean"][0] == 0.485
    assert any("classifier" in line or "head" in line
               for line in cfg["resolved"]["weights_report"])


def test_cifar10_preset_offline_error_then_three_conditions_with_local_files(
        tmp_path, monkeypatch, capsys):
    args = ["run", "--preset", "cifar10", "--reduced", "--data-root", str(tmp_path), "--quiet",
            "--no-explain", "--out", str(tmp_path / "c"), "--epochs", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and "Traceback" not in err
    write_fake_cifar10(tmp_path, monkeypatch, per_batch=20)
    vit_s = tmp_path / "vit_s16.safetensors"
    from safetensors.torch import save_file

    save_file(timm.create_model("vit_small_patch16_224").state_dict(), vit_s)
    assert main([*args, "--set", f"vit-s16-transfer.weights={vit_s}",
                 "--set", "vit-scratch.model_kwargs=patch_size=4,width=32,depth=1,heads=2"]) == 0
    run = tmp_path / "c" / "reduced"
    hist = pd.read_csv(run / "models" / "vit-scratch" / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3, 4]  # 1 epoch, then the extension phase to 4
    assert "extending from epoch 1 to 4" in (run / "models" / "vit-scratch" /
                                             "train.log").read_text()
    acc = pd.read_csv(run / "results" / "per_class_accuracy.csv")
    assert len(acc) == 10 and {"resnet18-cifar", "vit-scratch", "vit-s16-transfer"} <= set(acc)

"""End-to-end tests of `cnnvit train` / `evaluate` on tiny configurations (CPU, offline)."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from cnnvit import config, data
from cnnvit.checkpoint import load_checkpoint, save_checkpoint
from cnnvit.cli import main
from cnnvit.engine import train as train_mod
from cnnvit.engine.evaluate import evaluate_dir
from cnnvit.engine.train import fit
from cnnvit.errors import CnnvitError
from cnnvit.rundir import ModelDir

TINY = {"dataset": "digits", "model": "vit-small-input", "model_kwargs": {"width": 32, "depth": 1,
                                                                          "heads": 2},
        "epochs": 4, "batch_size": 32, "lr": 3e-3, "deterministic": True, "threads": 1}
CONTRACT = ["config.yaml", "history.csv", "checkpoints/best.pt", "checkpoints/last.pt",
            "metrics_val.json", "metrics_test.json", "predictions_val.csv",
            "predictions_test.csv", "train.log", "summary.json"]
METRIC_KEYS = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
               "precision_micro", "recall_micro", "f1_micro", "auc_macro", "auc_micro", "loss",
               "ece", "class_names", "per_class", "confusion_matrix"]


def tiny(tmp_path, name="m", **over):
    return config.load(None, {**TINY, "out": str(tmp_path / name), **over})


def _metrics(d, split="test"):
    return json.loads((d / f"metrics_{split}.json").read_text())


def _history(d):
    return pd.read_csv(d / "history.csv").drop(columns=["seconds", "train_images_per_s"])


def test_train_writes_the_model_directory_contract(tmp_path):
    out = fit(tiny(tmp_path), quiet=True)
    for rel in CONTRACT:
        assert (out / rel).is_file(), rel
    m = _metrics(out)
    assert all(k in m for k in METRIC_KEYS)
    assert m["class_names"] == [str(i) for i in range(10)]
    assert m["accuracy"] > 0.16  # chance is 0.10 (± 0.016 on 359 images): it learned
    preds = pd.read_csv(out / "predictions_test.csv")
    assert list(preds.columns) == ["index", "label", "prediction"] + [f"prob_{k}" for k in
                                                                      range(10)]
    assert len(preds) == m["n"] == 359
    assert np.allclose(preds.filter(like="prob_").sum(axis=1), 1.0)
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3, 4]
    assert {"lr", "train_loss", "val_f1_macro", "seconds", "train_images_per_s"} <= set(hist)
    cfg, resolved = ModelDir(out).read_config()
    assert cfg == tiny(tmp_path)
    assert resolved["image_size"] == 8 and resolved["num_classes"] == 10
    assert len(resolved["mean"]) == 1 and resolved["parameters"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 4 and 1 <= summary["best_epoch"] <= 4
    assert summary["flops_per_image"] > 0
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["epoch"] == summary["best_epoch"] == m["epoch"]


def test_evaluate_reproduces_the_saved_metrics(tmp_path, capsys):
    out = fit(tiny(tmp_path, epochs=2), quiet=True)
    before = _metrics(out)
    again = evaluate_dir(out, ("test",))["test"]
    for key in ("accuracy", "f1_macro", "loss", "auc_macro", "confusion_matrix"):
        assert again[key] == before[key]
    assert main(["evaluate", str(out), "--split", "val"]) == 0
    assert "val: accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "nope")]) == 2


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    ref = fit(tiny(tmp_path, "ref"), quiet=True)
    real_save = train_mod.save_checkpoint

    def crash_after_epoch_2(path, payload):
        real_save(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 2:
            raise KeyboardInterrupt  # the process is stopped right after epoch 2

    monkeypatch.setattr(train_mod, "save_checkpoint", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, "cut"), quiet=True)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert len(pd.read_csv(tmp_path / "cut" / "history.csv")) == 2
    assert not (tmp_path / "cut" / "metrics_test.json").exists()
    cut = fit(tiny(tmp_path, "cut"), resume=True, quiet=True)
    pd.testing.assert_frame_equal(_history(cut), _history(ref))
    for split in ("val", "test"):
        a, b = _metrics(cut, split), _metrics(ref, split)
        for key in METRIC_KEYS:
            assert a[key] == b[key], key
    sa = load_checkpoint(cut / "checkpoints" / "last.pt")["model"]
    sb = load_checkpoint(ref / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_extends_a_finished_run_with_a_new_lr(tmp_path, capsys):
    out = tmp_path / "ext"
    base = ["train", "--dataset", "digits", "--model", "vit-small-input", "--set",
            "model_kwargs=width=32,depth=1,heads=2", "--epochs", "2", "--out", str(out),
            "--quiet", "--threads", "1"]
    assert main(base) == 0
    assert main(base) == 2  # no silent overwrite of a trained model
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--lr", "1e-4",
                 "--quiet"]) == 0
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3]
    # history logs each epoch's first-step lr: the first phase's cosine (after one warm-up
    # epoch) starts epoch 2 at the peak; the extension restarts at the new lr, no warm-up
    assert hist["lr"].iloc[1] == pytest.approx(config.Config().lr)
    assert hist["lr"].iloc[2] == pytest.approx(1e-4)
    cfg, _ = ModelDir(out).read_config()
    assert cfg.epochs == 3 and cfg.lr == 1e-4
    assert "extending from epoch 2 to 3" in (out / "train.log").read_text()
    assert list(hist["phase_start"]) == [0, 0, 2]  # the extension's schedule began after 2
    assert main(["train", "--out", str(out), "--resume", "--set", "optimizer=sgd",
                 "--quiet"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_early_stopping_and_time_budget_still_evaluate(tmp_path):
    out = fit(tiny(tmp_path, "es", epochs=30, patience=1, lr=1e-6), quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] < 30 and "early stop" in summary["stop_reason"]
    assert (out / "metrics_test.json").is_file()
    out = fit(tiny(tmp_path, "tb", epochs=50, max_minutes=1e-4), quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and "time budget" in summary["stop_reason"]
    assert (out / "metrics_test.json").is_file()


def test_transfer_from_a_local_checkpoint_to_another_dataset(tmp_path):
    src = fit(tiny(tmp_path, "src", epochs=2, model="resnet18-small", batch_size=128,
                   model_kwargs={}), quiet=True)
    npz = data.write_synthetic(tmp_path / "s.npz", shape=(8, 8, 3), classes=4,
                               samples=(64, 32, 32), seed=1)
    out = fit(tiny(tmp_path, "dst", dataset=f"synthetic:{npz}", model="resnet18-small",
                   weights=str(src / "checkpoints" / "best.pt"), epochs=1, batch_size=32,
                   model_kwargs={}, lr=1e-4),
              quiet=True)
    cfg, resolved = ModelDir(out).read_config()
    report = " ".join(resolved["weights_report"])
    assert "1 to 3 channels" in report and "4 classes" in report
    assert resolved["num_classes"] == 4 and _metrics(out)["synthetic"] is True
    # the body was initialised from the file: the first block's weights before training were
    # the source's; after one epoch of small-lr training they are still close to them
    src_sd = load_checkpoint(src / "checkpoints" / "best.pt")["model"]
    dst_sd = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    w_src, w_dst = src_sd["layer4.1.conv2.weight"], dst_sd["layer4.1.conv2.weight"]
    fresh = torch.nn.init.kaiming_normal_(torch.empty_like(w_src))
    assert (w_dst - w_src).norm() < 0.5 * (fresh - w_src).norm()


def test_checkpoints_are_atomic_and_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3})
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # fails mid-write
        save_checkpoint(path, {"model": {}, "bad": lambda: 0})
    assert load_checkpoint(path)["epoch"] == 3 and len(list(tmp_path.iterdir())) == 1

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CnnvitError, match=r"evil.pt: contains pickled Python objects .*GLOBAL"):
        load_checkpoint(tmp_path / "evil.pt")


def test_bad_dataset_or_model_is_a_one_line_error_and_leaves_no_files(tmp_path, capsys):
    code = main(["train", "--dataset", f"npz:{tmp_path / 'missing.npz'}", "--out",
                 str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.npz" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert main(["train", "--model", "no_such_model", "--out", str(tmp_path / "y")]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_binary_task_trains_and_reports_the_positive_class_auc(tmp_path):
    from sklearn.metrics import roc_auc_score

    npz = data.write_synthetic(tmp_path / "b.npz", shape=(8, 8, 1), classes=2,
                               samples=(96, 32, 64), seed=2)
    out = fit(tiny(tmp_path, "bin", dataset=f"synthetic:{npz}", epochs=2), quiet=True)
    m = _metrics(out)
    assert m["task"] == "binary-class" and len(m["class_names"]) == 2
    preds = pd.read_csv(out / "predictions_test.csv")
    expected = roc_auc_score(preds["label"], preds["prob_1"])
    assert m["auc_macro"] == pytest.approx(expected) and m["auc_micro"] == pytest.approx(expected)


def test_a_model_that_did_not_learn_says_so_in_its_log(tmp_path):
    out = fit(tiny(tmp_path, epochs=1, lr=1e-9), quiet=True)  # (seeded: the same every run)
    log = (out / "train.log").read_text()
    assert "vit-small-input did not learn: validation accuracy" in log
    assert "majority-class rate 0.1000" in log
    learned = fit(tiny(tmp_path, "ok"), quiet=True)
    assert "did not learn" not in (learned / "train.log").read_text()

"""The robustness stage: every model on the same seeded, cached corrupted test sets; the
tables (a row per model × corruption × severity), the paired tests and the sentences, which
claim a difference only where every seed's Holm-adjusted test supports it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cnnvit.cli import main
from cnnvit.compare import collect, robustness
from cnnvit.data.types import DatasetInfo
from cnnvit.io import read_json
from cnnvit.robustness import corruptions
from cnnvit.rundir import ModelDir, RunDir


def _options(run: Path) -> dict:
    return read_json(run / "robustness" / "options.json")


@pytest.mark.slow
def test_the_table_has_a_row_for_every_model_corruption_and_severity(quick_run: Path) -> None:
    table = pd.read_csv(quick_run / "results" / "robustness.csv")
    options = _options(quick_run)
    models = sorted(e.name for e in RunDir(quick_run).models())
    assert options["reference"].startswith("CIFAR-10-C")  # digits: 8-px natural images
    corrupted = table[table["severity"] > 0]
    expected = {(m, c, s) for m in models for c in options["corruptions"] for s in range(1, 6)}
    assert set(zip(corrupted["model"], corrupted["corruption"], corrupted["severity"],
                   strict=True)) == expected
    assert len(corrupted) == len(expected)
    clean = table[table["severity"] == 0].set_index("model")
    for entry in RunDir(quick_run).models():
        # the clean predictions go through the evaluation pipeline: the test metrics exactly
        test = read_json(entry.dir.metrics("test"))
        assert clean.loc[entry.name, "accuracy"] == pytest.approx(test["accuracy"], abs=1e-12)
        assert clean.loc[entry.name, "f1_macro"] == pytest.approx(test["f1_macro"], abs=1e-12)
        rows = corrupted[corrupted["model"] == entry.name]
        assert np.allclose(rows["drop"], test["accuracy"] - rows["accuracy"])
    summary = pd.read_csv(quick_run / "results" / "robustness_summary.csv").set_index("model")
    for model in models:
        mca = corrupted.loc[corrupted["model"] == model, "accuracy"].mean()
        assert summary.loc[model, "mean_corruption_accuracy"] == pytest.approx(mca)
        assert summary.loc[model, "relative_robustness"] == pytest.approx(
            mca / summary.loc[model, "clean_accuracy"])


@pytest.mark.slow
def test_every_model_meets_the_same_cached_uint8_images(quick_run: Path) -> None:
    options = _options(quick_run)
    cache = quick_run / "robustness" / "cache"
    assert sorted(p.stem for p in cache.glob("*.npz")) == sorted(options["corruptions"])
    n_test = len(pd.read_csv(next(iter(RunDir(quick_run).models())).dir.predictions("test")))
    for path in cache.glob("*.npz"):
        with np.load(path) as f:
            assert f["images"].dtype == np.uint8
            assert f["images"].shape[:2] == (5, n_test)
    labels = []
    for entry in RunDir(quick_run).models():
        with np.load(entry.dir.robustness) as f:
            labels.append(f["labels"])
            assert f["predictions"].shape == (len(options["corruptions"]), 5, n_test)
            assert list(f["corruptions"]) == options["corruptions"]
    assert all(np.array_equal(labels[0], other) for other in labels[1:])


@pytest.mark.slow
def test_the_stage_is_timed_and_the_run_reports_it(quick_run: Path) -> None:
    manifest = read_json(quick_run / "manifest.json")
    assert manifest["stages"]["robustness"]["seconds"] > 0
    stages = list(manifest["stages"])
    assert stages.index("explain") < stages.index("robustness") < stages.index("compare")
    summary = (quick_run / "results" / "summary.md").read_text()
    assert "## Robustness to corruptions (test split)" in summary
    assert "mean corruption accuracy" in summary
    report = (quick_run / "report" / "report.md").read_text()
    assert "## Robustness to corruptions" in report and "robustness.png" in report
    assert (quick_run / "figures" / "robustness.png").stat().st_size > 0
    index = (quick_run / "ARTIFACTS.md").read_text()
    assert "not a cnnvit artifact" not in index


@pytest.mark.slow
def test_running_it_again_costs_nothing_and_force_gives_the_same_predictions(
        quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    files = sorted(run.glob("robustness/cache/*.npz")) + [
        e.dir.robustness for e in RunDir(run).models()]
    before = {p: p.stat().st_mtime_ns for p in files}
    assert main(["robustness", str(run)]) == 0
    assert capsys.readouterr().out.count("robustness predictions up to date") == len(
        RunDir(run).models())
    assert {p: p.stat().st_mtime_ns for p in files} == before
    old = {p: dict(np.load(p)) for p in files}
    assert main(["robustness", str(run), "--force"]) == 0
    for path in files:
        new = np.load(path)
        for key, value in old[path].items():
            assert np.array_equal(new[key], value), (path, key)
    table = pd.read_csv(run / "results" / "robustness.csv")
    assert table.equals(pd.read_csv(quick_run / "results" / "robustness.csv"))


@pytest.mark.slow
def test_a_damaged_predictions_file_is_one_line_and_exit_2(
        quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    damaged = RunDir(run).models()[0].dir.robustness
    damaged.write_bytes(b"not an npz")
    assert main(["compare", str(run)]) == 2
    err = capsys.readouterr().err
    assert "predictions_robustness.npz: unreadable" in err and "--force" in err
    assert err.count("\n") == 1


def _model(root: Path, name: str, seed: int | None, labels: np.ndarray, clean: np.ndarray,
           predictions: np.ndarray, names: list[str]) -> collect.ModelRun:
    """A model directory holding only what the robustness tables read."""
    path = root / name / (f"seed_{seed}" if seed is not None else "")
    path.mkdir(parents=True)
    options = {"reference": "test", "corruptions": names, "severities": [1, 2, 3, 4, 5],
               "families": {n: "noise" for n in names}}
    np.savez(ModelDir(path).robustness, labels=labels, clean=clean, predictions=predictions,
             options=np.array(json.dumps(options)))
    per_class = [{}] * (int(labels.max()) + 1)
    return collect.ModelRun(name, seed, path, {"test": {"per_class": per_class}}, {})


def _preds(labels: np.ndarray, wrong: int, corruptions: int = 2) -> np.ndarray:
    """Predictions right everywhere but the first `wrong` samples, at every severity."""
    out = np.tile(labels, (corruptions, 5, 1))
    out[..., :wrong] = (labels[:wrong] + 1) % 2
    return out


def test_a_difference_is_claimed_only_where_every_seed_supports_it(tmp_path: Path) -> None:
    labels = np.arange(200) % 2
    names = ["noise_a", "noise_b"]
    runs = []
    # seed 1: the CNN is clearly more robust (40 vs 0 errors); seed 2: they tie
    for seed, vit_wrong in ((1, 40), (2, 0)):
        runs.append(_model(tmp_path, "cnn", seed, labels, labels, _preds(labels, 0), names))
        runs.append(_model(tmp_path, "vit", seed, labels, labels, _preds(labels, vit_wrong),
                           names))
    tables = robustness.tables(runs)
    assert tables is not None
    assert len(tables["robustness"]) == 4 * (1 + 2 * 5)
    tests = tables["robustness_tests"]
    assert tests.loc[tests["seed"] == 1, "significant"].all()
    assert not tests.loc[tests["seed"] == 2, "significant"].any()
    assert tests.loc[tests["seed"] == 1, "drop_significant"].all()
    lines = robustness.sentences(tables["robustness_summary"], tests)
    assert lines[-2].startswith("Under corruption, neither cnn nor vit is more accurate than "
                                "the other in any of the 2 corruptions")
    assert lines[-1].startswith("Under corruption, neither cnn nor vit loses more accuracy")
    # with only the first seed, the same data supports both claims
    one = robustness.tables([r for r in runs if r.seed == 1])
    assert one is not None
    claims = robustness.sentences(one["robustness_summary"], one["robustness_tests"])
    assert claims[-2].startswith("cnn is more accurate than vit under noise_a, noise_b (")
    assert claims[-1].startswith("vit loses more accuracy than cnn under noise_a, noise_b (")


def test_a_corruption_without_a_significant_test_is_named_as_not_separating(
        tmp_path: Path) -> None:
    labels = np.arange(300) % 2
    cnn = _preds(labels, 0)
    vit = _preds(labels, 0)
    vit[0, :, :60] = (labels[:60] + 1) % 2  # worse only under the first corruption
    vit[1, :, :2] = (labels[:2] + 1) % 2  # two errors under the second: not significant
    runs = [_model(tmp_path, "cnn", None, labels, labels, cnn, ["a", "b"]),
            _model(tmp_path, "vit", None, labels, labels, vit, ["a", "b"])]
    tables = robustness.tables(runs)
    assert tables is not None
    lines = robustness.sentences(tables["robustness_summary"], tables["robustness_tests"])
    assert lines[-2].startswith("cnn is more accurate than vit under a; they do not separate "
                                "under the other 1")
    assert lines[-1].startswith("vit loses more accuracy than cnn under a; they do not "
                                "separate under the other 1")
    summary = tables["robustness_summary"].set_index("model")
    assert summary.loc["vit", "worst_corruption"] == "a"
    assert summary.loc["cnn", "mean_drop"] == 0


def test_more_accurate_under_corruption_and_hurt_more_are_told_apart(tmp_path: Path) -> None:
    """The CNN stays more accurate under the corruption, yet loses more than the ViT, which
    is as (in)accurate clean as corrupted."""
    labels = np.arange(300) % 2
    vit_clean = labels.copy()
    vit_clean[:100] = (labels[:100] + 1) % 2
    cnn = _preds(labels, 40, corruptions=1)
    vit = np.tile(vit_clean, (1, 5, 1))
    runs = [_model(tmp_path, "cnn", None, labels, labels, cnn, ["blur"]),
            _model(tmp_path, "vit", None, labels, vit_clean, vit, ["blur"])]
    tables = robustness.tables(runs)
    assert tables is not None
    row = tables["robustness_tests"].iloc[0]
    assert row["drop_a"] == pytest.approx(40 / 300) and row["drop_b"] == 0
    assert row["drop_low"] <= row["drop_difference"] <= row["drop_high"]
    lines = robustness.sentences(tables["robustness_summary"], tables["robustness_tests"])
    assert lines[-2].startswith("cnn is more accurate than vit under blur (")
    assert lines[-1].startswith("cnn loses more accuracy than vit under blur (")
    summary = tables["robustness_summary"].set_index("model")
    assert summary.loc["vit", "relative_robustness"] == pytest.approx(1.0)


def test_no_predictions_means_no_tables(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.mkdir()
    assert robustness.tables([collect.ModelRun("m", None, path, {}, {})]) is None


def _info(source: str, name: str, size: int) -> DatasetInfo:
    return DatasetInfo(spec=f"{source}:{name}", name=name, task="multi-class",
                       class_names=["a", "b"], channels=3, image_size=size, source=source)


def test_each_dataset_gets_its_reference_set() -> None:
    blood = corruptions.for_dataset(_info("medmnist", "bloodmnist", 28))
    assert blood.reference.startswith("MedMNIST-C (bloodmnist")
    assert "saturate" in blood.names and "stain_deposit" not in blood.names
    # no MedMNIST-C set here (its `characters` corruption is not implemented): the common ones
    derma = corruptions.for_dataset(_info("medmnist", "dermamnist", 28))
    assert derma.reference.startswith("CIFAR-10-C") and "gaussian_noise" in derma.names
    assert corruptions.for_dataset(_info("folder", "cells", 96)).reference.startswith(
        "ImageNet-C")


def test_the_cache_is_reused_only_for_the_same_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    cset = corruptions.for_dataset(_info("cifar", "cifar10", 32))
    path = tmp_path / "gaussian_noise.npz"
    cpu = torch.device("cpu")
    made = corruptions.cached(path, images, cset, "gaussian_noise", 0, cpu)
    assert made.shape == (5, *images.shape) and made.dtype == np.uint8
    stamp = path.stat().st_mtime_ns
    assert np.array_equal(corruptions.cached(path, images, cset, "gaussian_noise", 0, cpu), made)
    assert path.stat().st_mtime_ns == stamp  # read, not made again
    other = corruptions.cached(path, images, cset, "gaussian_noise", 1, cpu)  # another seed
    assert not np.array_equal(other, made) and path.stat().st_mtime_ns != stamp
    path.write_bytes(b"damaged")
    assert np.array_equal(corruptions.cached(path, images, cset, "gaussian_noise", 1, cpu),
                          other)


@pytest.mark.slow
def test_a_medmnist_run_is_tested_under_its_medmnist_c_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BloodMNIST-format file (28 px RGB): the stage uses MedMNIST-C's bloodmnist set."""
    from tests.fakes import trust, write_fake

    trust(monkeypatch, "bloodmnist", write_fake(tmp_path, "bloodmnist"))
    preset = tmp_path / "p.yaml"
    preset.write_text("dataset: bloodmnist\nseeds: [0]\ncommon: {epochs: 1, threads: 1}\n"
                      "models:\n  cnn: {model: resnet18-small, batch_size: 8}\n")
    run = tmp_path / "run"
    assert main(["run", "--preset", str(preset), "--data-root", str(tmp_path), "--no-explain",
                 "--quiet", "--out", str(run)]) == 0
    options = _options(run)
    assert options["reference"].startswith("MedMNIST-C (bloodmnist")
    assert options["corruptions"] == list(corruptions.medmnist_c.SETS["bloodmnist"])
    table = pd.read_csv(run / "results" / "robustness.csv")
    assert len(table) == 1 + 5 * len(options["corruptions"])
    with np.load(run / "robustness" / "cache" / "bubble.npz") as f:
        assert f["images"].shape == (5, 16, 28, 28, 3)

"""Learning curves: `cnnvit run --train-fractions` trains every model on nested shares of the
training split; the curve's table, tests, figure and sentences; the sentence claims a crossing
only where the paired tests support it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cnnvit.cli import main
from cnnvit.compare.curves import _sentence

PRESET = """
description: two tiny models on digits
dataset: digits
seeds: [42]
common: {epochs: 2, threads: 1, device: cpu}
models:
  cnn: {model: resnet18-small, batch_size: 64}
  vit: {model: vit-small-input, model_kwargs: {width: 32, depth: 1, heads: 2, patch_size: 4}}
"""


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("curve")
    (root / "p.yaml").write_text(PRESET)
    assert main(["run", "--preset", str(root / "p.yaml"), "--train-fractions", "0.25,0.5,1.0",
                 "--no-explain", "--no-robustness", "--quiet", "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.mark.slow
def test_every_model_trains_on_the_same_nested_shares(curve_run):
    points = pd.read_csv(curve_run / "results" / "learning_curve.csv")
    assert sorted(points["fraction"].unique()) == [0.25, 0.5, 1.0]
    sizes = points.pivot(index="fraction", columns="model", values="train_images")
    assert (sizes["cnn"] == sizes["vit"]).all()  # the same images for every model
    assert sizes["cnn"].is_monotonic_increasing and sizes["cnn"].iloc[-1] == 1258
    assert (points["accuracy_low"] <= points["accuracy"]).all()
    assert (points["accuracy"] <= points["accuracy_high"]).all()
    tests = pd.read_csv(curve_run / "results" / "learning_curve_tests.csv")
    assert len(tests) == 3 and (tests["p_holm"] >= tests["p"]).all()
    assert (curve_run / "curves" / "fraction_0.25" / "models" / "vit" / "summary.json").is_file()
    assert (curve_run / "figures" / "learning_curve.png").is_file()
    summary = (curve_run / "results" / "summary.md").read_text()
    assert "## Learning curve" in summary
    report = (curve_run / "report" / "report.md").read_text()
    curve = report[report.index("## Learning curve"):]
    assert "| Training images | cnn | vit |" in curve and "learning_curve.png" in curve
    for sentence in summary[summary.index("## Learning curve"):].splitlines()[2:3]:
        assert sentence in curve  # the report says what the summary says
    manifest = (curve_run / "manifest.json").read_text()
    assert '"curve 0.25"' in manifest and '"train_fractions"' in manifest
    index = (curve_run / "ARTIFACTS.md").read_text()
    assert "not a cnnvit artifact" not in index


@pytest.mark.slow
def test_no_robustness_skips_the_stage_and_its_outputs(curve_run, capsys):
    manifest = json.loads((curve_run / "manifest.json").read_text())
    assert "robustness" not in manifest["stages"] and "compare" in manifest["stages"]
    assert not list(curve_run.glob("results/robustness*"))
    assert not (curve_run / "robustness").exists()
    assert "Robustness" not in (curve_run / "report" / "report.md").read_text()
    assert main(["plot", "robustness", str(curve_run)]) == 2
    assert "the run skipped the robustness stage" in capsys.readouterr().err


SIZES = pd.Series({0.1: 120, 0.25: 300, 0.5: 600, 1.0: 1200})


def test_a_crossing_is_claimed_only_between_significant_opposite_leads():
    # +1: b significantly better, -1: a significantly better, 0: not significant
    assert _sentence("a", "b", {0.1: -1, 0.25: 0, 0.5: 1, 1.0: 1}, SIZES).startswith(
        "b overtakes a between 120 and 600 training images")
    assert _sentence("a", "b", {0.1: 1, 0.25: 1, 0.5: 0, 1.0: -1}, SIZES).startswith(
        "a overtakes b between 300 and 1200")


def test_no_crossing_without_significance():
    text = _sentence("a", "b", {0.1: 0, 0.25: 0, 0.5: 0, 1.0: 0}, SIZES)
    assert "do not separate" in text and "overtakes" not in text
    text = _sentence("a", "b", {0.1: 0, 0.25: 1, 0.5: 0, 1.0: 1}, SIZES)
    assert text.startswith("b is ahead at 300, 1200") and "overtakes" not in text


@pytest.mark.parametrize("value", ["0,0.5", "1.5", "half"])
def test_bad_fractions_exit_2_with_one_line(value, capsys):
    assert main(["run", "--train-fractions", value, "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--train-fractions takes shares of the training split" in err and "\n" not in err


def test_a_preset_names_its_fractions_and_the_schedule_keeps_epochs_or_steps(tmp_path):
    from cnnvit import presets
    from cnnvit.workflow import Study

    (tmp_path / "p.yaml").write_text(PRESET + "train_fractions: [0.25, 0.5]\n")
    preset = presets.load(str(tmp_path / "p.yaml"))
    assert preset.train_fractions == [0.25, 0.5]
    plan = preset.models[0]
    for schedule, epochs in (("epochs", 2), ("steps", 8)):
        study = Study(preset, tmp_path / schedule, curve_schedule=schedule)
        assert study.fractions == [0.25, 0.5]
        _, seed, model_dir = study.model_dirs(0.25)[0]
        cfg = study.config_for(plan, seed, model_dir, 0.25)
        assert (cfg.train_fraction, cfg.epochs) == (0.25, epochs)
        assert "curves/fraction_0.25/models/cnn" in model_dir.path.as_posix()
    assert Study(preset, tmp_path / "none", train_fractions=[]).fractions == []


def test_a_bad_preset_fraction_is_one_line(tmp_path):
    from cnnvit import presets
    from cnnvit.errors import ConfigError

    (tmp_path / "p.yaml").write_text(PRESET + "train_fractions: [0, 2]\n")
    with pytest.raises(ConfigError, match="train_fractions must be a list of shares"):
        presets.load(str(tmp_path / "p.yaml"))

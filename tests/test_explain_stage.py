"""The explain stage on a (short) quickstart run: shared samples, overlays, galleries,
faithfulness against a random map, and the comparison's faithfulness line."""

import numpy as np
import pandas as pd
import pytest
import torch

from cnnvit.cli import main
from cnnvit.engine.evaluate import load_model
from cnnvit.explain import explain
from cnnvit.explain.stage import select_samples

PER_CLASS = 3
RUN = ["run", "--preset", "quickstart", "--quiet", "--threads", "1",
       "--set", "resnet18-small.epochs=3", "--set", "vit-small-input.epochs=4",
       "--set", "vit-small-input.model_kwargs=width=32,depth=2,heads=2",
       "--per-class", str(PER_CLASS), "--include-errors", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "q"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def test_every_model_explains_the_same_selected_samples(run):
    samples = pd.read_csv(run / "explain" / "samples.csv")
    counts = samples[samples["reason"] == "class"]["label"].value_counts()
    assert len(counts) == 10 and (counts == PER_CLASS).all()
    assert samples["index"].is_unique
    for model in ("resnet18-small", "vit-small-input"):
        index = pd.read_csv(run / "explain" / model / "index.csv")
        assert list(index["index"]) == list(samples["index"])
        for row in index.itertuples():
            assert row.file == (f"test_i{row.index:05d}_true{row.label}_pred{row.prediction}"
                                ".png")
            assert (run / "explain" / model / row.file).stat().st_size > 1000
        assert set(index["method"]) == {"gradcam" if model == "resnet18-small" else "relevance"}
    for k in range(10):
        assert (run / "explain" / f"gallery_class_{k}.png").is_file()
    errors = samples[samples["reason"] != "class"]
    assert (run / "explain" / "gallery_errors.png").is_file() == (len(errors) > 0)


def test_maps_have_the_input_shape_and_range(run):
    for model_name in ("resnet18-small", "vit-small-input"):
        setup, model, _ = load_model(run / "models" / model_name)
        x = next(setup.pipeline("test").batches(12))[0]
        maps, _ = explain(model, x)
        assert maps.shape == (12, 8, 8)
        assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
        # not constant: the map says where (Grad-CAM may give an all-zero map when every
        # weighted activation is negative, so allow an odd one)
        assert (maps.flatten(1).std(1) > 0).float().mean() >= 0.8


def test_faithfulness_beats_a_random_map_for_the_trained_cnn(run):
    faith = pd.read_csv(run / "explain" / "faithfulness.csv")
    assert set(faith["method"]) == {"gradcam", "relevance", "random"}
    means = faith.groupby(["model", "method"])[["deletion_auc", "insertion_auc"]].mean()
    cnn = means.loc["resnet18-small"]
    # an honest check: Grad-CAM's most important pixels matter more than random ones
    assert cnn.loc["gradcam", "deletion_auc"] < cnn.loc["random", "deletion_auc"]
    assert cnn.loc["gradcam", "insertion_auc"] > cnn.loc["random", "insertion_auc"]
    sanity = pd.read_csv(run / "explain" / "sanity.csv")
    assert set(sanity["model"]) == {"resnet18-small", "vit-small-input"}
    assert sanity["mean_spearman"].between(-1, 1).all()


def test_the_comparison_names_the_more_faithful_explanation(run):
    summary = (run / "results" / "summary.md").read_text()
    assert "faithful" in summary.lower()
    faith = pd.read_csv(run / "explain" / "faithfulness.csv")
    means = faith.assign(random=faith["method"] == "random").groupby(["model", "random"])[
        ["deletion_auc", "insertion_auc"]].mean()
    gain = {m: (means.loc[(m, True), "deletion_auc"] - means.loc[(m, False), "deletion_auc"])
            + (means.loc[(m, False), "insertion_auc"] - means.loc[(m, True), "insertion_auc"])
            for m in ("resnet18-small", "vit-small-input")}
    # a model whose maps fail the randomisation check is not ranked (its sentence says so)
    failing = {m for m in gain if f"{m}'s" in summary and "are not ranked" in summary
               and f"- {m}'s" in summary}
    ranked = {m: g for m, g in gain.items() if m not in failing}
    if len(ranked) > 1:
        assert f"**{max(ranked, key=ranked.get)}** has the more faithful explanation" in summary
    else:
        assert "has the more faithful explanation" not in summary
        assert failing and "fail the randomisation check" in summary
    assert summary.count("Randomisation check") == 2


def test_selection_is_seeded_and_adds_errors():
    labels = np.repeat(np.arange(4), 20)
    errors = {"a": np.array([0, 1, 2, 3, 40]), "b": np.array([60, 61])}
    s1 = select_samples(labels, 5, errors, 2, seed=3)
    s2 = select_samples(labels, 5, errors, 2, seed=3)
    pd.testing.assert_frame_equal(s1, s2)
    assert (s1["reason"] == "class").sum() == 20
    assert (s1["reason"] == "error:a").sum() == 2 and (s1["reason"] == "error:b").sum() == 2
    assert s1["index"].is_unique


def test_explain_command_on_a_reduced_run_with_road(run, tmp_path, capsys):
    import json
    import shutil

    red = tmp_path / "red"
    shutil.copytree(run, red)
    manifest = json.loads((red / "manifest.json").read_text())
    (red / "manifest.json").write_text(json.dumps({**manifest, "mode": "reduced"}))
    assert main(["explain", str(red), "--models", "resnet18-small", "--per-class", "1",
                 "--include-errors", "0", "--road", "--no-sanity", "--steps", "4"]) == 0
    assert "\r" not in capsys.readouterr().err  # no progress bar when stderr is no terminal
    faith = pd.read_csv(red / "explain" / "faithfulness.csv")
    real = faith[faith["method"] == "gradcam"]
    assert len(real) == 10 and real["road_combined"].notna().all()
    assert set(faith["mode"]) == {"reduced"}
    index = pd.read_csv(red / "explain" / "resnet18-small" / "index.csv")
    assert set(index["mode"]) == {"reduced"}
    assert main(["explain", str(red), "--models", "nope"]) == 2
    assert "nope not in" in capsys.readouterr().err


def test_rerun_keeps_current_explanations(run, capsys):
    faith = run / "explain" / "faithfulness.csv"
    before = faith.stat().st_mtime_ns
    assert main([*RUN, "--out", str(run)]) == 0
    assert "explanations up to date" in capsys.readouterr().out
    assert faith.stat().st_mtime_ns == before
    assert main([*RUN[:-1], "1", "--out", str(run)]) == 0  # other options: recomputed
    assert "explanations up to date" not in capsys.readouterr().out
    assert faith.stat().st_mtime_ns != before

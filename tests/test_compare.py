"""Tests for cnnvit.compare: fake run directories written by hand, every output checked."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnvit.compare import compare
from cnnvit.errors import CnnvitError

CLASSES = ["basophil", "eosinophil", "neutrophil"]
CNN, VIT = "resnet18-small", "vit-small-input"
CNN_TEST = {"accuracy": 0.986, "f1_macro": 0.984, "auc_macro": 0.9991, "loss": 0.052,
            "ece": 0.012}
VIT_TEST = {"accuracy": 0.961, "f1_macro": 0.957, "auc_macro": 0.9962, "loss": 0.121,
            "ece": 0.031}
CNN_COST = {"parameters": 11_170_000, "flops_per_image": 557_000_000, "train_seconds": 420.0}
VIT_COST = {"parameters": 203_000, "flops_per_image": 68_000_000, "train_seconds": 247.0}
SEED_SHIFT = {1: 0.0, 2: -0.004, 3: 0.003}
VIT_SEED_SHIFT = {1: 0.0, 2: 0.002, 3: -0.003}  # so the per-seed differences vary
N_TEST = 1000  # test images: every accuracy above is a whole number of them


def metrics_json(split: str, arch: str, top: dict, synthetic: bool = False) -> dict:
    """A realistic metrics_<split>.json; val scores sit a little above test."""
    up = 0.005 if split == "val" else 0.0
    acc = top["accuracy"] + up
    per_class_acc = [acc - 0.02, acc + 0.01, acc + 0.005]
    return {
        "task": "multi-class", "n": N_TEST, "num_classes": 3, "accuracy": acc,
        "balanced_accuracy": acc - 0.003, "precision_macro": acc - 0.001,
        "recall_macro": acc - 0.002, "f1_macro": top["f1_macro"] + up,
        "precision_micro": acc, "recall_micro": acc, "f1_micro": acc,
        "auc_macro": top["auc_macro"], "auc_micro": None, "loss": top["loss"] - up,
        "ece": top["ece"], "ece_bins": [[0.9, 0.95, 120]], "top2_accuracy": 0.997,
        "mcc": acc - 0.02, "kappa": acc - 0.021, "class_names": CLASSES,
        "per_class": [{"class": c, "index": i, "precision": a - 0.01, "recall": a, "f1": a - 0.005,
                       "support": 100, "accuracy": a, "auc": 0.99}
                      for i, (c, a) in enumerate(zip(CLASSES, per_class_acc, strict=True))],
        "confusion_matrix": [[97, 2, 1], [1, 98, 1], [0, 2, 98]],
        "split": split, "model": arch, "dataset": "bloodmnist", "synthetic": synthetic,
        "eval_images_per_s": 5000.0 if split == "val" else 5100.0, "checkpoint": "best",
        "epoch": 17,
    }


def predictions(accuracy: float, key: str, n: int = N_TEST) -> pd.DataFrame:
    """A predictions_test.csv with exactly `accuracy` × n correct; `key` seeds which are wrong
    (a wrong prediction is the next class, with 0.5–0.8 of the probability)."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    labels = np.arange(n) % len(CLASSES)
    wrong = np.zeros(n, bool)
    wrong[rng.choice(n, n - round(accuracy * n), replace=False)] = True
    pred = np.where(wrong, (labels + 1) % len(CLASSES), labels)
    top = np.where(wrong, rng.uniform(0.5, 0.8, n), rng.uniform(0.55, 1.0, n))
    probs = np.tile(((1 - top) / 2)[:, None], (1, len(CLASSES)))
    probs[np.arange(n), pred] = top
    df = pd.DataFrame({"index": np.arange(n), "label": labels, "prediction": pred})
    return df.join(pd.DataFrame(probs, columns=[f"prob_{j}" for j in range(len(CLASSES))]))


def write_model(path: Path, arch: str, top: dict, cost: dict, synthetic: bool = False) -> None:
    path.mkdir(parents=True)
    predictions(top["accuracy"], f"{arch}/{top['accuracy']}").to_csv(
        path / "predictions_test.csv", index=False)
    for split in ("val", "test"):
        (path / f"metrics_{split}.json").write_text(
            json.dumps(metrics_json(split, arch, top, synthetic)))
    summary = {"model": arch, "architecture": arch, "family": "vit" if arch == VIT else "cnn",
               "dataset": "bloodmnist", "synthetic": synthetic, **cost,
               "image_size": 28, "epochs_run": 20, "best_epoch": 17, "stop_reason": "done",
               "train_images_per_s": 9000.0, "eval_images_per_s": 5100.0,
               "peak_memory_bytes": 1_300_000_000, "peak_memory_kind": "cuda_max_allocated",
               "device": "cuda:0"}
    (path / "summary.json").write_text(json.dumps(summary))


def make_run(root: Path, cnn: dict = CNN_TEST, vit: dict = VIT_TEST, seeds: tuple = (),
             synthetic: bool = False) -> Path:
    """Two models (flat, or one `seed_<n>` dir per seed with shifted scores)."""
    for arch, top, cost, shift in ((CNN, cnn, CNN_COST, SEED_SHIFT),
                                   (VIT, vit, VIT_COST, VIT_SEED_SHIFT)):
        if not seeds:
            write_model(root / "models" / arch, arch, top, cost, synthetic)
        for s in seeds:
            shifted = {**top, "accuracy": top["accuracy"] + shift[s]}
            write_model(root / "models" / arch / f"seed_{s}", arch, shifted,
                        {**cost, "train_seconds": cost["train_seconds"] + s}, synthetic)
    return root


def load(path: Path, split: str = "test", model: str = CNN) -> dict:
    return json.loads((path / "models" / model / f"metrics_{split}.json").read_text())


def stronger(text: str, label: str) -> str | None:
    """The model the summary's primary-metric line for `label` names better (bold), or None
    when that line finds no significant difference."""
    match = re.search(rf"^- {re.escape(label)} \((?:higher|lower) is better\): (.*)$", text, re.M)
    assert match, f"no primary-metric line for {label}"
    bold = re.search(r"\*\*(\S+)\*\*", match.group(1))
    assert bold or "no significant difference" in match.group(1), match.group(1)
    return bold.group(1) if bold else None


def test_final_comparison_rows_columns_values(tmp_path):
    run = make_run(tmp_path)
    paths = compare(run)
    assert set(paths) == {"final_comparison", "per_class", "per_class_accuracy", "statistics_csv",
                          "statistics_json", "summary"}
    assert all(p.is_file() and p.parent == run / "results" for p in paths.values())
    df = pd.read_csv(paths["final_comparison"])
    assert list(df.columns[:5]) == ["model", "seed", "split", "primary", "mode"]
    for col in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_micro", "recall_micro", "f1_micro", "auc_macro", "auc_micro", "loss",
                "ece", "mcc", "kappa", "top2_accuracy", "parameters", "flops_per_image",
                "train_seconds", "epochs_run", "best_epoch", "train_images_per_s",
                "eval_images_per_s", "peak_memory_bytes", "architecture", "family"):
        assert col in df.columns, col
    assert "ece_bins" not in df.columns and "class_names" not in df.columns
    assert len(df) == 4
    assert list(zip(df["model"], df["split"], strict=True)) == [
        (CNN, "val"), (CNN, "test"), (VIT, "val"), (VIT, "test")]
    assert df["seed"].isna().all() and (df["mode"] == "full").all()
    assert df["primary"].tolist() == [False, True, False, True]
    row = df[(df["model"] == CNN) & (df["split"] == "test")].iloc[0]
    m = load(run)
    for key in ("accuracy", "f1_macro", "auc_macro", "loss", "ece", "mcc", "top2_accuracy"):
        assert row[key] == pytest.approx(m[key])
    assert np.isnan(row["auc_micro"])
    assert row["parameters"] == CNN_COST["parameters"]
    assert row["train_seconds"] == CNN_COST["train_seconds"]
    assert df.set_index(["model", "split"]).loc[(CNN, "val"), "eval_images_per_s"] == 5000.0
    assert (row["architecture"], row["family"]) == (CNN, "cnn")
    assert df[df["model"] == VIT]["family"].eq("vit").all()
    raw = paths["final_comparison"].read_text().splitlines()[1].split(",")
    assert raw[1] == ""  # no seed: an empty cell, not "nan"


def test_per_class_tables(tmp_path):
    run = make_run(tmp_path)
    paths = compare(run)
    pc = pd.read_csv(paths["per_class"])
    assert list(pc.columns[:10]) == ["model", "seed", "split", "class_index", "class",
                                     "precision", "recall", "f1", "accuracy", "support"]
    assert len(pc) == 2 * 2 * 3
    m = load(run, "val", VIT)
    got = pc[(pc["model"] == VIT) & (pc["split"] == "val")].reset_index(drop=True)
    for entry, (_, r) in zip(m["per_class"], got.iterrows(), strict=True):
        assert (r["class_index"], r["class"], r["support"]) == (
            entry["index"], entry["class"], entry["support"])
        assert r["f1"] == pytest.approx(entry["f1"])
        assert r["accuracy"] == pytest.approx(entry["accuracy"])
    acc = pd.read_csv(paths["per_class_accuracy"])
    assert list(acc.columns) == ["class", CNN, VIT, "mode"] and set(acc["mode"]) == {"full"}
    assert acc["class"].tolist() == CLASSES
    for model in (CNN, VIT):
        expected = [e["accuracy"] for e in load(run, "test", model)["per_class"]]
        assert acc[model].tolist() == pytest.approx(expected)


def test_seeds_summary_and_means(tmp_path):
    run = make_run(tmp_path, seeds=(1, 2, 3))
    paths = compare(run)
    final = pd.read_csv(paths["final_comparison"])
    assert len(final) == 2 * 3 * 2
    assert sorted(final["seed"].unique()) == [1, 2, 3]
    seeds = pd.read_csv(paths["seed_summary"])
    assert list(seeds.columns) == ["model", "split", "metric", "mean", "std", "n_seeds", "min",
                                   "max", "mode"]
    accs = np.array([CNN_TEST["accuracy"] + SEED_SHIFT[s] for s in (1, 2, 3)])
    row = seeds[(seeds["model"] == CNN) & (seeds["split"] == "test")
                & (seeds["metric"] == "accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(accs.mean())
    assert row["std"] == pytest.approx(accs.std(ddof=1))
    assert (row["n_seeds"], row["min"], row["max"]) == (3, pytest.approx(accs.min()),
                                                        pytest.approx(accs.max()))
    null = seeds[(seeds["metric"] == "auc_micro")]
    assert null["mean"].isna().all() and null["std"].isna().all() and (null["n_seeds"] == 0).all()
    assert {"mcc", "kappa", "top2_accuracy"} <= set(seeds["metric"])
    acc = pd.read_csv(paths["per_class_accuracy"])
    expected = np.mean([a - 0.02 for a in accs])  # first class of each seed
    assert acc.loc[acc["class"] == CLASSES[0], CNN].item() == pytest.approx(expected)
    text = paths["summary"].read_text()
    assert f"{accs.mean():.4f} ± {accs.std(ddof=1):.4f}" in text
    assert "3 seeds per model" in text


def test_stale_seed_summary_removed(tmp_path):
    run = make_run(tmp_path)
    stale = run / "results" / "seed_summary.csv"
    stale.parent.mkdir()
    stale.write_text("old\n")
    assert "seed_summary" not in compare(run)
    assert not stale.exists()


def test_summary_stronger_model_follows_numbers(tmp_path):
    text = compare(make_run(tmp_path / "a"))["summary"].read_text()
    for label in ("Accuracy", "Macro F1"):  # 2.5 pp on 1,000 images: significant
        assert stronger(text, label) == CNN
    assert ("- Accuracy (higher is better): resnet18-small 0.9860 vs vit-small-input 0.9610: "
            "**resnet18-small** is more accurate than vit-small-input (+2.5 pp, 95 % CI [") in text
    assert ("McNemar p < 0.001); resnet18-small has 55× the parameters and 8.2× the FLOPs per "
            "image of vit-small-input.") in text
    assert "⚠ resnet18-small and vit-small-input differ more than 4× in size" in text
    assert ("vit-small-input reaches 0.9610 test accuracy vs 0.9860 for resnet18-small, with "
            "55× fewer parameters, 8.2× fewer FLOPs per image and 1.7× less training time.") in text
    assert "# Comparison summary (full mode)" in text and "SYNTHETIC" not in text
    assert "stronger" not in text.lower()

    swapped = compare(make_run(tmp_path / "b", cnn=VIT_TEST, vit=CNN_TEST))["summary"]
    text = swapped.read_text()
    for label in ("Accuracy", "Macro F1"):
        assert stronger(text, label) == VIT
    assert ("resnet18-small reaches 0.9610 test accuracy vs 0.9860 for vit-small-input, with "
            "55× more parameters, 8.2× more FLOPs per image and 1.7× more training time; "
            "vit-small-input is more accurate at no extra cost.") in text


def test_summary_names_no_winner_without_significance(tmp_path):
    close = {**CNN_TEST, "accuracy": 0.963}  # 0.2 pp apart: McNemar cannot tell them apart
    text = compare(make_run(tmp_path, cnn=close))["summary"].read_text()
    assert stronger(text, "Accuracy") is None
    assert ("- Accuracy (higher is better): resnet18-small 0.9630 vs vit-small-input 0.9610: no "
            "significant difference in accuracy between resnet18-small and vit-small-input "
            "(+0.2 pp, 95 % CI [") in text
    assert "more accurate" not in text
    assert "the accuracy difference is not significant." in text


def test_summary_tables_and_formatting(tmp_path):
    text = compare(make_run(tmp_path))["summary"].read_text()
    assert "| resnet18-small | cnn | 0.9860 |" in text
    assert "| vit-small-input | vit | 0.9610 |" in text
    assert "11.2 M" in text and "557 MFLOPs" in text and "7 min 00 s" in text
    assert "1.21 GiB" in text and "9,000 img/s" in text
    assert "n/a" in text  # auc_micro is null in every metrics json
    assert "Dataset: bloodmnist" in text


def test_mode_label_from_argument_and_manifest(tmp_path):
    run = make_run(tmp_path)
    text = compare(run, mode="reduced")["summary"].read_text()
    assert text.startswith(
        "# Comparison summary (reduced mode — shortened schedule, not the full protocol)")
    (run / "manifest.json").write_text(json.dumps({"mode": "reduced", "seeds": [42]}))
    paths = compare(run)
    assert "reduced mode" in paths["summary"].read_text()
    assert (pd.read_csv(paths["final_comparison"])["mode"] == "reduced").all()
    assert "(full mode)" in compare(run, mode="full")["summary"].read_text()
    with pytest.raises(CnnvitError, match="unknown mode"):
        compare(run, mode="quick")


def test_synthetic_warning(tmp_path):
    text = compare(make_run(tmp_path, synthetic=True))["summary"].read_text()
    assert "SYNTHETIC data" in text


def test_faithfulness_line_only_with_csv(tmp_path):
    run = make_run(tmp_path)
    assert "faithful" not in compare(run)["summary"].read_text()
    rows = [(CNN, "gradcam", 0.10, 0.80), (CNN, "gradcam", 0.14, 0.76),
            (VIT, "rollout", 0.20, 0.70), (VIT, "rollout", 0.22, 0.72),
            (CNN, "random", 0.40, 0.45), (VIT, "random", 0.60, 0.35)]
    (run / "explain").mkdir()
    faith = pd.DataFrame(rows, columns=["model", "method", "deletion_auc", "insertion_auc"])
    faith.to_csv(run / "explain" / "faithfulness.csv", index=False)
    text = compare(run)["summary"].read_text()
    # gains over each model's own random map: CNN (0.40-0.12)+(0.78-0.45) = 0.61,
    # ViT (0.60-0.21)+(0.71-0.35) = 0.75: the ViT's maps are the more faithful
    assert "| resnet18-small | gradcam | 0.1200 | 0.7800 | 0.4000 | 0.4500 | 0.6100 |" in text
    assert ("**vit-small-input** has the more faithful explanation by its gain over a random "
            "map on the same model (deletion and insertion): 0.7500 vs 0.6100 for "
            "resnet18-small.") in text
    faith.loc[faith["model"] == VIT, "deletion_auc"] = [0.5, 0.5, 0.3]  # ViT gain 0.26 now
    faith.to_csv(run / "explain" / "faithfulness.csv", index=False)
    assert "**resnet18-small** has the more faithful" in compare(run)["summary"].read_text()
    faith.loc[faith["model"] == VIT, "insertion_auc"] = [0.3, 0.3, 0.9]  # worse than random
    faith.to_csv(run / "explain" / "faithfulness.csv", index=False)
    assert ("vit-small-input's rollout maps do no better than a random map"
            in compare(run)["summary"].read_text())
    pd.DataFrame({"model": [CNN]}).to_csv(run / "explain" / "faithfulness.csv", index=False)
    assert "lacks column(s) method" in compare(run)["summary"].read_text()


def test_maps_that_fail_the_sanity_check_are_never_called_more_faithful(tmp_path):
    run = make_run(tmp_path)
    (run / "explain").mkdir()
    pd.DataFrame([(CNN, "gradcam", 0.12, 0.78), (VIT, "rollout", 0.21, 0.71),
                  (CNN, "random", 0.40, 0.45), (VIT, "random", 0.60, 0.35)],
                 columns=["model", "method", "deletion_auc", "insertion_auc"]).to_csv(
        run / "explain" / "faithfulness.csv", index=False)
    sanity = pd.DataFrame({"model": [CNN, VIT], "method": ["gradcam", "rollout"],
                           "samples": [16, 16], "mean_spearman": [0.13, 0.70],
                           "flag": [False, True]})
    sanity.to_csv(run / "explain" / "sanity.csv", index=False)
    text = compare(run)["summary"].read_text()
    # the ViT's gain over random is larger (0.75 vs 0.61), but its maps fail the check
    assert "has the more faithful explanation" not in text
    assert "vit-small-input's rollout maps are not ranked: they fail the randomisation" in text
    sanity["flag"] = False
    sanity.to_csv(run / "explain" / "sanity.csv", index=False)
    assert "**vit-small-input** has the more faithful" in compare(run)["summary"].read_text()


def _edit_summaries(run: Path, change) -> None:
    for path in (run / "models").glob("*/summary.json"):
        path.write_text(json.dumps(change(json.loads(path.read_text()))))


def test_family_and_architecture_come_from_the_summary(tmp_path):
    run = make_run(tmp_path)
    _edit_summaries(run, lambda s: {**s, "family": "vit" if s["model"] == CNN else "cnn",
                                    "architecture": "arch-" + s["model"]})
    df = pd.read_csv(compare(run)["final_comparison"], keep_default_na=False)
    assert dict(zip(df["model"], df["family"], strict=True)) == {CNN: "vit", VIT: "cnn"}
    assert set(df["architecture"]) == {f"arch-{CNN}", f"arch-{VIT}"}


def test_family_empty_for_runs_that_did_not_record_it(tmp_path):
    run = make_run(tmp_path)
    _edit_summaries(run, lambda s: {k: v for k, v in s.items() if k != "family"})
    df = pd.read_csv(compare(run)["final_comparison"], keep_default_na=False)
    assert (df["family"] == "").all()


def test_errors_name_the_directory(tmp_path):
    with pytest.raises(CnnvitError, match="run `cnnvit run"):
        compare(tmp_path / "nowhere")
    with pytest.raises(CnnvitError, match=r"models: no model directories.*cnnvit run"):
        compare(tmp_path)
    (tmp_path / "models" / "half").mkdir(parents=True)
    with pytest.raises(CnnvitError, match=r"half: missing metrics_val.json.*not finished"):
        compare(tmp_path)


def test_error_for_seed_without_summary(tmp_path):
    run = make_run(tmp_path, seeds=(1, 2))
    (run / "models" / VIT / "seed_2" / "summary.json").unlink()
    with pytest.raises(CnnvitError, match=r"seed_2: missing summary.json"):
        compare(run)
    (run / "models" / VIT / "seed_2" / "summary.json").write_text("{not json")
    with pytest.raises(CnnvitError, match="cannot read JSON"):
        compare(run)

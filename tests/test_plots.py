"""cnnvit.plots, `cnnvit plot` and the figures stage, on fake run directories written by hand
(metrics from cnnvit.metrics on synthetic probabilities): no training, no torch in the code
under test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from cnnvit import metrics, presets
from cnnvit.cli import main
from cnnvit.explain.faithfulness import mean_curves
from cnnvit.plots import KINDS, style
from cnnvit.plots.confusion import confusion_figure
from cnnvit.plots.render import DRAWINGS, plot
from cnnvit.plots.sources import NotAskedFor, Options, interval, intervals, open_run

CNN, VIT = "resnet18-small", "vit-small-input"
DIGITS = [str(k) for k in range(10)]
PER_MODEL = ["curves_{m}", "confusion_val_{m}", "confusion_val_{m}_normalized",
             "confusion_test_{m}", "confusion_test_{m}_normalized", "roc_test_{m}",
             "reliability_test_{m}"]
COMBINED = ["curves_all", "roc_test_all", "metrics_test", "per_class_f1_test", "cost_test",
            "faithfulness", "robustness"]


def _probs(rng: np.random.Generator, y: np.ndarray, k: int, skill: float) -> np.ndarray:
    logits = rng.normal(size=(len(y), k))
    logits[np.arange(len(y)), y] += skill
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write_model(path: Path, classes: list[str], skill: float, seed: int) -> None:
    """metrics_{val,test}.json, predictions_{val,test}.csv, history.csv (with an extension
    phase from epoch 5) and summary.json, as training writes them."""
    rng, k = np.random.default_rng(seed), len(classes)
    path.mkdir(parents=True)
    for split, n in (("val", max(90, 2 * k)), ("test", max(120, 2 * k))):
        y = np.arange(n) % k
        p = _probs(rng, y, k, skill)
        m = metrics.compute(y, p, classes, "binary-class" if k == 2 else "multi-class")
        (path / f"metrics_{split}.json").write_text(json.dumps({**m, "split": split}))
        pred = pd.DataFrame({"index": np.arange(n), "label": y, "prediction": p.argmax(1),
                             **{f"prob_{j}": p[:, j] for j in range(k)}})
        pred.to_csv(path / f"predictions_{split}.csv", index=False)
    epochs = np.arange(1, 7)
    pd.DataFrame({"epoch": epochs, "lr": 1e-3, "train_loss": 2 / epochs,
                  "train_accuracy": 1 - 0.5 / epochs, "val_loss": 2.2 / epochs,
                  "val_accuracy": 1 - 0.6 / epochs, "val_f1_macro": 1 - 0.65 / epochs,
                  "val_auc_macro": 0.9, "val_ece": 0.05, "seconds": 1.0,
                  "train_images_per_s": 500.0, "best": True,
                  "phase_start": np.where(epochs > 4, 4, 0)}).to_csv(path / "history.csv",
                                                                       index=False)
    cost = {"parameters": 11e6 if skill > 3 else 2e5, "flops_per_image": 7e7 if skill > 3
            else 7e6, "train_seconds": 35.0 + seed}
    (path / "summary.json").write_text(json.dumps({"family": "cnn", **cost}))


def make_run(root: Path, classes: list[str] = DIGITS, seeds: tuple[int, ...] = (),
             explain: bool = True, statistics: bool = True,
             models: tuple[str, ...] = (CNN, VIT)) -> Path:
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"mode": "full"}))
    for i, name in enumerate(models):
        for seed in seeds or (None,):
            where = root / "models" / name / ("" if seed is None else f"seed_{seed}")
            write_model(where, classes, 4.0 - i, (seed or 0) + i)
    fractions = np.linspace(0, 1, 11)
    if explain:
        rows = [{"model": m, "method": meth, "fraction": f, "deletion": d * (1 - f),
                 "insertion": 0.1 + 0.8 * f ** d} for m in models
                for meth, d in (("gradcam" if m == CNN else "rollout", 0.5), ("random", 0.9))
                for f in fractions]
        (root / "explain").mkdir()
        pd.DataFrame(rows).to_csv(root / "explain" / "faithfulness_curves.csv", index=False)
    if statistics:  # bootstrap intervals per model × seed; t-intervals over several seeds
        scores = ("accuracy", "f1_macro", "auc_macro", "ece")
        intervals = [{"model": m, "seed": s, "metric": metric, "value": 0.9, "low": 0.85,
                      "high": 0.95, "n": 120} for m in models for s in seeds or (None,)
                     for metric in scores]
        over_seeds = [{"model": m, "metric": metric, "mean": 0.9, "std": 0.01, "low": 0.8,
                       "high": 0.99, "n_seeds": len(seeds)} for m in models
                      for metric in scores] if seeds else []
        (root / "results").mkdir()
        (root / "results" / "statistics.json").write_text(json.dumps(
            {"settings": {"split": "test"}, "intervals": intervals, "pairs": [],
             "seeds": over_seeds}))
        # the robustness stage: accuracy under two corruptions at severities 0 (clean) to 5
        pd.DataFrame([{"model": m, "seed": s, "corruption": c if sev else "clean",
                       "severity": sev, "accuracy": 0.9 - 0.1 * sev * (i + 1) / 2}
                      for i, m in enumerate(models) for s in seeds or (None,)
                      for c in ("blur", "noise") for sev in range(6)]
                     ).drop_duplicates().to_csv(root / "results" / "robustness.csv",
                                                index=False)
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("plots") / "run")


@pytest.fixture(scope="module")
def drawn(run: Path) -> dict[str, bytes]:
    """Every figure of the run, drawn once."""
    lines: list[str] = []
    paths = plot(run, log=lines.append)
    assert all(p.parent == run / "figures" for p in paths) and not lines
    return snapshot(run / "figures")


def test_every_figure_is_written(drawn: dict[str, bytes]) -> None:
    expected = {f"{n.format(m=m)}.png" for n in PER_MODEL for m in (CNN, VIT)}
    assert set(drawn) == expected | {f"{n}.png" for n in COMBINED}
    for name, data in drawn.items():
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name


def test_plot_all_redraws_the_same_bytes(run: Path, drawn: dict[str, bytes],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "all", str(run)]) == 0
    assert f"{len(drawn)} figures in {run / 'figures'}" in capsys.readouterr().out
    assert snapshot(run / "figures") == drawn  # no stray temporary files either


@pytest.mark.parametrize(("fmt", "magic"), [("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_pdf_and_svg(run: Path, fmt: str, magic: bytes) -> None:
    for kind in ("metrics", "confusion"):
        args = ["plot", kind, str(run), "--format", fmt, "--model", VIT, "--split", "test"]
        assert main(args) == 0
        first = snapshot(run / "figures")
        assert main(args) == 0
        assert snapshot(run / "figures") == first  # byte-identical, no date in the file
    for name in (f"metrics_test_{VIT}", f"confusion_test_{VIT}"):
        data = (run / "figures" / f"{name}.{fmt}").read_bytes()
        assert data.startswith(magic) and b"CreationDate" not in data and b"<dc:date" not in data


def _overlap(boxes: list[Bbox]) -> bool:
    ordered = sorted(boxes, key=lambda b: b.x0)
    return any(a.x1 > b.x0 + 0.5 and a.y1 > b.y0 + 0.5 and b.y1 > a.y0 + 0.5
               for a, b in zip(ordered, ordered[1:], strict=False))


@pytest.mark.parametrize("k", [3, 10, 30, 100])
def test_confusion_labels_stay_apart_up_to_100_classes(k: int) -> None:
    names = [f"class {i} with a long descriptive name" for i in range(k)]
    counts = np.eye(k) * 20 + 1
    with style.context():
        fig = confusion_figure(counts, names, f"{k} classes", normalize=k == 30)
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        ax = fig.axes[0]
        width, height = fig.bbox.width, fig.bbox.height
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [t.get_window_extent(renderer) for t in labels]
            assert len(boxes) == k and not _overlap(boxes)
            assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height
                       for b in boxes)
        assert min(float(t.get_fontsize()) for t in ax.get_xticklabels()) >= 5


def test_100_class_run_draws(tmp_path: Path) -> None:
    classes = [f"category number {i}" for i in range(100)]
    root = make_run(tmp_path / "big", classes=classes, models=(VIT,), explain=False)
    paths = plot(root, "confusion", split="test", normalize=True)
    assert [p.name for p in paths] == [f"confusion_test_{VIT}_normalized.png"]
    assert paths[0].stat().st_size > 20_000


def test_bad_input_is_one_line_and_exit_2(run: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bare = make_run(tmp_path / "bare", explain=False, statistics=False)
    (bare / "models" / CNN / "predictions_val.csv").unlink()
    cases = [(["plot", "all", str(tmp_path / "nope")], "no such run directory"),
             (["plot", "curves", str(run), "--model", "resnet50"], "resnet50 is not a model"),
             (["plot", "faithfulness", str(bare)], "the explain stage did not run"),
             (["plot", "roc", str(bare), "--split", "val"], "predictions_val.csv: missing"),
             (["plot", "nonsense", str(run)], "invalid choice"),
             (["plot", "roc", str(run), "--format", "gif"], "invalid choice")]
    for args, message in cases:
        capsys.readouterr()
        assert _exit_code(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (bare / "figures").exists()  # the failed kinds wrote nothing


def _exit_code(args: list[str]) -> int | str | None:
    try:
        return main(args)
    except SystemExit as e:  # argparse's usage errors
        return e.code


def test_model_colors_are_one_per_model_in_every_figure(run: Path) -> None:
    colors = style.model_colors([VIT, CNN, VIT])
    assert colors == style.model_colors([CNN, VIT]) and colors[CNN] != colors[VIT]
    assert len(set(style.model_colors(f"m{i}" for i in range(20)).values())) == 20
    src = open_run(run, VIT)
    assert src.colors == open_run(run).colors == colors  # --model keeps the run's colours
    opts = Options(None, False, print)
    for kind, drawings in DRAWINGS.items():
        try:
            todo = drawings(src, opts)
        except NotAskedFor:  # this run trained no learning curve (test_learning_curve draws it)
            assert kind == "learning"
            continue
        for drawing in todo:
            with style.context():
                used = _colors(drawing.draw())
            if not drawing.name.startswith("confusion"):
                assert colors[VIT] in used and colors[CNN] not in used, (kind, drawing.name)


def _colors(fig: Figure) -> set[str]:
    from matplotlib.colors import to_hex

    used = set()
    for ax in fig.axes:
        used |= {to_hex(line.get_color()) for line in ax.get_lines()}
        used |= {to_hex(p.get_facecolor()) for p in ax.patches if p.get_fill()}
    return used


def test_unreadable_statistics_mean_no_error_bars(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r", explain=False, statistics=False, models=(CNN,))
    (root / "results").mkdir()
    (root / "results" / "statistics.json").write_text('{"intervals": "garbage"}')
    lines: list[str] = []
    assert plot(root, "metrics", log=lines.append)
    assert len(lines) == 1 and "unreadable intervals" in lines[0]


def test_error_bars_come_from_statistics(run: Path, tmp_path: Path) -> None:
    bare = make_run(tmp_path / "bare", explain=False, statistics=False)
    for root, bars in ((run, True), (bare, False)):
        src = open_run(root)
        for drawing in DRAWINGS["metrics"](src, Options(None, False, print))[:1]:
            with style.context():
                fig = drawing.draw()
            found = any(isinstance(c, LineCollection) for ax in fig.axes for c in ax.collections)
            assert found == bars


def test_seeds_and_extension_phase(tmp_path: Path) -> None:
    root = make_run(tmp_path / "s", seeds=(1, 2), models=(VIT,))
    names = {p.stem for p in plot(root, "curves")}
    assert names == {f"curves_{VIT}_seed1", f"curves_{VIT}_seed2", "curves_all"}
    src = open_run(root)
    with style.context():
        fig = DRAWINGS["curves"](src, Options(None, False, print))[0].draw()
    ax = fig.axes[0]
    assert any(np.array_equal(line.get_xdata(), [4.5, 4.5]) for line in ax.get_lines())
    assert any(t.get_text() == "extension from epoch 5" for t in ax.texts)
    assert plot(root, "metrics", model=VIT)[0].name == f"metrics_test_{VIT}.png"
    table = intervals(src, "test", print)
    assert interval(table, VIT, "accuracy", [1, 2]) == (0.8, 0.99)  # over the seeds
    assert intervals(src, "val", print) is None  # statistics.json is about test


def test_binary_roc_is_the_positive_class(tmp_path: Path) -> None:
    root = make_run(tmp_path / "b", classes=["benign", "malignant"], models=(CNN,))
    src = open_run(root)
    with style.context():
        fig = DRAWINGS["roc"](src, Options("test", False, print))[0].draw()
    legend = fig.axes[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0].startswith("malignant (AUC") and len(labels) == 2  # and chance


def test_figures_stage_without_explain_or_statistics(tmp_path: Path) -> None:
    from cnnvit.workflow import Study

    root = make_run(tmp_path / "w", explain=False, statistics=False, models=(VIT,))
    Study(presets.load("quickstart"), root, quiet=True).stage_figures()
    log = next((root / "logs").glob("run_*.log")).read_text().splitlines()
    # all but faithfulness and robustness (no robustness stage: skipped without a note)
    count = len(PER_MODEL) + len(COMBINED) - 2
    assert log[-1] == f"  figures: {count} files in {root / 'figures'}"
    assert len(list((root / "figures").iterdir())) == count
    assert sum("no statistics.json: no error bars" in line for line in log) == 1
    assert any("faithfulness skipped" in line and "cnnvit explain" in line for line in log)


def test_mean_curves_average_the_samples() -> None:
    result = {"fractions": np.array([0.0, 0.5, 1.0]),
              "deletion_curve": np.array([[1.0, 0.5, 0.0], [0.8, 0.3, 0.2]]),
              "insertion_curve": np.array([[0.0, 0.5, 1.0], [0.2, 0.7, 0.8]])}
    rows = mean_curves(result)
    assert [r["fraction"] for r in rows] == [0.0, 0.5, 1.0]
    assert [r["deletion"] for r in rows] == pytest.approx([0.9, 0.4, 0.1])
    assert [r["insertion"] for r in rows] == pytest.approx([0.1, 0.6, 0.9])


def test_kinds_cover_every_drawing() -> None:
    assert set(DRAWINGS) == set(KINDS) - {"all"}

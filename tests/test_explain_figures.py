"""Overlays and galleries people can read: the image shows through the map, small images are
upscaled by whole factors, wrong predictions are marked per model, the bytes are reproducible,
and the explain stage's progress bars stay out of non-terminal output."""

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from cnnvit.data.types import Split
from cnnvit.explain.figures import (
    CMAP,
    GALLERY_MIN,
    MAX_ALPHA,
    OVERLAY_MIN,
    RIGHT,
    WRONG,
    Column,
    OverlayWriter,
    blend,
    display_image,
    display_size,
    fit,
    gallery,
    prediction_marks,
    wrap,
)
from cnnvit.explain.stage import ModelMaps, Options, _galleries, _progress

CLASSES = ["adipose", "background", "lymphocytes"]


def _images(n, side=28, chans=1, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((side, side, chans)) * 255).astype(np.uint8) for _ in range(n)]


def _gradient_maps(n, side=28):
    ramp = np.linspace(0, 1, side * side).reshape(side, side)
    return [np.roll(ramp, 5 * i, axis=1) for i in range(n)]


def test_display_sizes_are_whole_multiples():
    assert display_size(8, OVERLAY_MIN) == 224 and display_size(28, OVERLAY_MIN) == 224
    assert display_size(32, OVERLAY_MIN) == 224 and display_size(300, OVERLAY_MIN) == 300
    assert display_size(28, GALLERY_MIN) == 140 and display_size(64, GALLERY_MIN) == 128
    image = _images(1, side=8, chans=3)[0]
    shown = display_image(image, 64)
    blocks = shown.reshape(8, 8, 8, 8, 3)  # each source pixel is an 8×8 block
    assert (blocks == blocks[:, :1, :, :1]).all()
    np.testing.assert_allclose(blocks[:, 0, :, 0], image / 255, atol=1e-6)


def test_the_image_shows_through_low_saliency():
    image = _images(1)[0]
    base = display_image(image, 28)
    assert np.array_equal(blend(image, np.zeros((28, 28)), 28), base)
    low = blend(image, np.full((28, 28), 0.05), 28)
    assert np.abs(low - base).max() < 0.05
    high = blend(image, np.ones((28, 28)), 28)
    expected = (1 - MAX_ALPHA) * base + MAX_ALPHA * np.array(colormaps[CMAP](1.0)[:3])
    np.testing.assert_allclose(high, expected, atol=1e-6)
    assert MAX_ALPHA <= 0.6 and CMAP in ("inferno", "magma", "viridis", "cividis")


def test_fit_and_wrap_keep_text_inside():
    assert fit("short", 200) == "short"
    long = fit("a very long class name that cannot fit", 60)
    assert long.endswith("…") and len(long) < 20
    lines = wrap("one two three four five six seven eight nine ten", 80)
    assert len(lines) > 1 and " ".join(lines) == "one two three four five six seven eight nine ten"


def test_marks_name_the_predicted_class():
    marks = prediction_marks([0, 1], [0, 2], [0.9, 0.4], CLASSES)
    assert [m.correct for m in marks] == [True, False]
    assert marks[0].caption == "pred: adipose ✓" and marks[0].colour == RIGHT
    assert marks[1].caption == "pred: lymphocytes ✗" and marks[1].colour == WRONG


def _columns(n):
    maps = _gradient_maps(n)
    return [Column("cnn", "gradcam", maps, prediction_marks([0, 1], [0, 2], [0.9, 0.4], CLASSES)),
            Column("vit", "relevance", maps, prediction_marks([0, 1], [1, 1], [0.6, 0.99],
                                                              CLASSES))]


def test_gallery_frames_exactly_the_wrong_predictions(tmp_path):
    path = tmp_path / "g.png"
    tiles = gallery(path, _images(2), ["true: adipose\n#1", "true: background\n#2"],
                    _columns(2), "test: misclassified samples")
    png = imread(path)[..., :3]
    framed = {(t.row, t.column) for t in tiles if not t.mark.correct}
    assert framed == {(0, "vit"), (1, "cnn")}
    assert [t.caption for t in tiles] == ["pred: adipose ✓", "pred: background ✗",
                                          "pred: lymphocytes ✗", "pred: background ✓"]
    for tile in tiles:
        x0, y0, x1, y1 = tile.box
        assert (x1 - x0, y1 - y0) == (140, 140)
        ring = [png[y0 - 2, (x0 + x1) // 2], png[(y0 + y1) // 2, x1 + 1]]
        colour = to_rgb(WRONG) if not tile.mark.correct else (1.0, 1.0, 1.0)
        for pixel in ring:
            np.testing.assert_allclose(pixel, colour, atol=2 / 255)
        inside = png[y0 + 5, x0 + 5]  # top left: saliency ≈ 0, the image as it is
        assert not np.allclose(inside, to_rgb(WRONG), atol=0.05)


def test_figures_are_byte_identical_and_unstamped(tmp_path):
    images, columns = _images(2), _columns(2)
    for name in ("a.png", "b.png"):
        gallery(tmp_path / name, images, ["x", "y"], columns, "title")
        writer = OverlayWriter("relevance", 28)
        writer.write(tmp_path / f"o{name}", images[0], columns[0].maps[0], "t", "pred", WRONG)
        writer.close()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "oa.png").read_bytes() == (tmp_path / "ob.png").read_bytes()
    for name in ("a.png", "oa.png"):
        assert b"matplotlib" not in (tmp_path / name).read_bytes().lower()
    overlay = imread(tmp_path / "oa.png")
    assert overlay.shape[1] > 2 * 224 and overlay.shape[0] > 224  # two 224 px panels


def _results(n):
    maps = np.stack(_gradient_maps(n))
    return {"cnn": ModelMaps("cnn", "gradcam", maps, np.array([0, 2, 0]),
                             np.array([0.9, 0.4, 0.8]), pd.DataFrame()),
            "vit": ModelMaps("vit", "relevance", maps, np.array([1, 1, 1]),
                             np.array([0.6, 0.9, 0.7]), pd.DataFrame())}


def test_error_gallery_marks_the_model_that_got_it_wrong(tmp_path):
    samples = pd.DataFrame({"index": [10, 11, 12], "reason": ["class", "error:cnn", "error:vit"],
                            "label": [0, 1, 0]})
    subset = Split(np.stack(_images(3)), np.array([0, 1, 0]))
    drawn = _galleries(tmp_path, samples, subset, _results(3), CLASSES, "test", "")
    assert set(drawn) == {"gallery_class_0.png", "gallery_errors.png"}
    assert (tmp_path / "gallery_errors.png").is_file()
    errors = {(t.row, t.column): t for t in drawn["gallery_errors.png"]}
    assert not errors[(0, "cnn")].mark.correct and errors[(0, "vit")].mark.correct
    assert errors[(0, "cnn")].caption == "pred: lymphocytes ✗"
    assert errors[(1, "cnn")].mark.correct and not errors[(1, "vit")].mark.correct
    assert errors[(1, "vit")].caption == "pred: background ✗"


@pytest.mark.parametrize("tty", [False, True])
@pytest.mark.parametrize("progress", [False, True])
def test_progress_bars_only_on_a_terminal(monkeypatch, tty, progress):
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr("sys.stderr", stream)
    opts = Options("test", "auto", None, 4, 0, False, False, "", progress)
    assert list(_progress(range(3), opts, desc="explain models")) == [0, 1, 2]
    assert ("explain models" in stream.getvalue()) == (tty and progress)

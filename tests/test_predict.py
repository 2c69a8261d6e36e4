"""`cnnvit predict`: new images through exactly the training preprocessing.

The key check: a test sample written to a PNG at its stored size and predicted through the
command gives the probabilities of that model directory's predictions_test.csv (the quickstart
run's digits models at their native 8 px, and a colour model trained at 32 px on 20 px images,
so the resize is exercised too). And predict's reading of files (their bytes at once) gives
exactly the training loader's pixels (`imagefiles.decode` of the path), and its reasons for
unreadable files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnvit import data
from cnnvit.cli import main
from cnnvit.data.imagefiles import decode, unreadable_reason
from cnnvit.data.pipeline import resize_uint8
from cnnvit.deploy.images import DECODE_ERRORS, Item, batches, load, read_pixels
from cnnvit.deploy.resize import normalise, resize

TOL = 1e-5


@pytest.fixture(scope="module")
def digits_test() -> data.Split:
    return data.load("digits")["test"]


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny colour ViT trained at 32 px on 20 px synthetic images (its model directory; the
    dataset is `synth.npz` beside it)."""
    root = tmp_path_factory.mktemp("colour")
    npz = data.write_synthetic(root / "synth.npz", shape=(20, 20, 3), classes=4,
                               samples=(32, 16, 16))
    out = root / "vit"
    assert main(["train", "--dataset", f"synthetic:{npz}", "--model", "vit-small-input",
                 "--image-size", "32", "--epochs", "2", "--batch-size", "16", "--lr", "1e-3",
                 "--set", "model_kwargs=width=32,depth=1,heads=2", "--out", str(out),
                 "--quiet"]) == 0
    return out


def _probs(csv: Path, classes: int) -> pd.DataFrame:
    """The full probability vector of each row of a `cnnvit predict` CSV (needs top-k = K)."""
    df = pd.read_csv(csv)
    out = np.zeros((len(df), classes))
    for r in range(1, classes + 1):
        out[np.arange(len(df)), df[f"class_{r}"].to_numpy()] = df[f"prob_{r}"].to_numpy()
    return pd.DataFrame(out, index=df["path"].to_numpy())


def _png(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    return path


@pytest.mark.parametrize("name", ["resnet18-small", "vit-small-input"])
def test_a_test_sample_as_png_gives_its_test_probabilities(quick_run: Path, digits_test,
                                                           name: str, tmp_path: Path) -> None:
    idx = [0, 1, 2, 3, 57, 111, 358]
    files = [_png(digits_test.images[i], tmp_path / f"test_{i}.png") for i in idx]
    csv = tmp_path / "p.csv"
    assert main(["predict", str(quick_run), "--model", name, *map(str, files), "--top-k", "10",
                 "--out", str(csv)]) == 0
    got = _probs(csv, 10).to_numpy()
    ref = pd.read_csv(quick_run / "models" / name / "predictions_test.csv").set_index("index")
    expected = ref.loc[idx, [f"prob_{k}" for k in range(10)]].to_numpy()
    assert np.abs(got - expected).max() <= TOL
    assert (pd.read_csv(csv)["class_1"].to_numpy() == ref.loc[idx, "prediction"]).all()


def test_resized_colour_sample_gives_its_test_probabilities(colour: Path, tmp_path: Path) -> None:
    """20 px images into a 32 px model: the resize is the training pipeline's."""
    test = data.load(f"synthetic:{colour.parent / 'synth.npz'}")["test"]
    files = [_png(test.images[i], tmp_path / f"{i}.png") for i in range(len(test))]
    csv = tmp_path / "p.csv"
    assert main(["predict", str(colour), *map(str, files), "--top-k", "4", "--out",
                 str(csv), "--batch-size", "5"]) == 0
    ref = pd.read_csv(colour / "predictions_test.csv")
    expected = ref[[f"prob_{k}" for k in range(4)]].to_numpy()
    assert np.abs(_probs(csv, 4).to_numpy() - expected).max() <= TOL


def test_npz_input_names_each_image_and_matches_the_test_split(colour: Path,
                                                               tmp_path: Path) -> None:
    npz = colour.parent / "synth.npz"
    csv = tmp_path / "p.csv"
    assert main(["predict", str(colour), str(npz), "--top-k", "4", "--out", str(csv)]) == 0
    probs = _probs(csv, 4)
    assert len(probs) == 32 + 16 + 16
    assert probs.index[0] == f"{npz}:train:0" and probs.index[-1] == f"{npz}:test:15"
    test = probs.loc[[f"{npz}:test:{i}" for i in range(16)]].to_numpy()
    ref = pd.read_csv(colour / "predictions_test.csv")
    assert np.abs(test - ref[[f"prob_{k}" for k in range(4)]].to_numpy()).max() <= TOL


def test_grey_into_colour_and_colour_into_grey(quick_run: Path, colour: Path, digits_test,
                                               tmp_path: Path) -> None:
    """Grey into a colour model = the grey repeated into RGB (as the training loader unifies
    a mixed set); colour into a grey model = PIL's luma, so an RGB copy of a grey test digit
    gives its test probabilities."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    csv = tmp_path / "colour.csv"
    assert main(["predict", str(colour), str(tmp_path / "grey.png"), str(tmp_path / "rgb.png"),
                 "--top-k", "4", "--out", str(csv)]) == 0
    both = _probs(csv, 4).to_numpy()
    assert np.abs(both[0] - both[1]).max() <= TOL

    digit = digits_test.images[5]
    Image.fromarray(np.repeat(digit, 3, axis=2)).save(tmp_path / "digit_rgb.png")
    colourful = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(colourful).save(tmp_path / "colourful.png")
    Image.fromarray(colourful).convert("L").save(tmp_path / "colourful_luma.png")
    csv = tmp_path / "grey.csv"
    assert main(["predict", str(quick_run), "--model", "resnet18-small", "--top-k", "10",
                 *(str(tmp_path / f) for f in ("digit_rgb.png", "colourful.png",
                                               "colourful_luma.png")),
                 "--out", str(csv)]) == 0
    got = _probs(csv, 10).to_numpy()
    ref = pd.read_csv(quick_run / "models" / "resnet18-small" / "predictions_test.csv")
    assert np.abs(got[0] - ref.loc[5, [f"prob_{k}" for k in range(10)]].to_numpy()).max() <= TOL
    assert np.abs(got[1] - got[2]).max() <= TOL


def test_folders_are_searched_recursively(colour: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    root = tmp_path / "in"
    (root / "b" / "c").mkdir(parents=True)
    Image.fromarray(image).save(root / "x.png")
    Image.fromarray(image).save(root / "b" / "c" / "y.jpg", quality=95)
    Image.fromarray(image).save(root / "b" / "z.bmp")
    Image.fromarray(image).resize((40, 30)).save(root / "b" / "w.tiff")
    Image.fromarray(image).save(root / ".hidden.png")
    (root / "notes.txt").write_text("not an image")
    csv = tmp_path / "p.csv"
    assert main(["predict", str(colour), str(root), "--out", str(csv)]) == 0
    paths = pd.read_csv(csv)["path"].tolist()
    assert sorted(paths) == sorted(str(root / p) for p in ("x.png", "b/c/y.jpg", "b/z.bmp",
                                                           "b/w.tiff"))
    err = capsys.readouterr().err
    assert "notes.txt" in err and ".hidden.png" not in err


def test_unreadable_files_are_listed_and_skipped_or_refused(colour: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = np.random.default_rng(2).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(good).save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes((folder / "good.png").read_bytes()[:60])
    csv = tmp_path / "p.csv"
    assert main(["predict", str(colour), str(folder), "--out", str(csv)]) == 0
    assert pd.read_csv(csv)["path"].tolist() == [str(folder / "good.png")]
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "skipped 2 unreadable" in warning[0]
    assert "empty.png (an empty file, 0 bytes)" in warning[0] and "truncated.png" in warning[0]

    strict = tmp_path / "strict.csv"
    assert main(["predict", str(colour), str(folder), "--out", str(strict), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be read as an image" in err
    assert not strict.exists()


def test_user_errors_are_one_line_and_exit_2(quick_run: Path, colour: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    image = _png(np.zeros((8, 8, 1), np.uint8), tmp_path / "a.png")
    fake_onnx = tmp_path / "m.onnx"
    fake_onnx.write_bytes(b"")
    cases = {
        "--top-k 11: the model has 10 classes": [str(quick_run), "--model", "resnet18-small",
                                                 str(image), "--top-k", "11"],
        "--top-k 0": [str(colour), str(image), "--top-k", "0"],
        "no such file or directory; MODEL is": [str(tmp_path / "nowhere"), str(image)],
        "is a run directory: pass --model NAME": [str(quick_run), str(image)],
        "--models: nope not in": [str(quick_run), "--model", "nope", str(image)],
        "is a file, not a model directory": [str(image), str(image)],
        "is neither a model directory": [str(tmp_path), str(image)],
        "--explain needs the model directory": [str(fake_onnx), str(image), "--explain",
                                                str(tmp_path / "o")],
        "no sidecar": [str(fake_onnx), str(image)],
        "no such file or folder": [str(colour), str(tmp_path / "missing.png")],
    }
    for expected, args in cases.items():
        assert main(["predict", *args, "--out", str(tmp_path / "p.csv")]) == 2, expected
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("cnnvit: error: "), err
        assert expected in err, err
    assert not (tmp_path / "p.csv").exists()


def test_explain_writes_one_overlay_per_image(quick_run: Path, digits_test,
                                              tmp_path: Path) -> None:
    files = [_png(digits_test.images[i], tmp_path / f"d{i}.png") for i in range(3)]
    for name in ("resnet18-small", "vit-small-input"):
        out = tmp_path / name
        csv = tmp_path / f"{name}.csv"
        assert main(["predict", str(quick_run), "--model", name, *map(str, files),
                     "--explain", str(out), "--out", str(csv)]) == 0
        overlays = pd.read_csv(csv)["overlay"].tolist()
        assert [Path(o).name for o in overlays] == [f"0000{i}_d{i}.png" for i in range(3)]
        for o in overlays:
            with Image.open(o) as im:
                assert im.format == "PNG" and im.size[0] > 400


CASES = [(8, 8, 32), (32, 32, 28), (40, 20, 32), (100, 73, 32), (13, 17, 64), (300, 500, 224),
         (28, 28, 224), (64, 48, 64), (7, 9, 8), (33, 31, 32)]


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest", "pad"])
def test_numpy_resize_matches_the_training_resize(mode: str) -> None:
    """The ONNX path's numpy resize against `resize_uint8` (torch): nearest and pad exactly;
    bilinear and bicubic at most 1 grey level apart, on at most 0.2 % of the pixels (a value
    within float32 rounding of a .5 tie)."""
    rng = np.random.default_rng(0)
    differ = total = 0
    for h, w, size in CASES:
        if mode == "pad" and max(h, w) > size:
            continue
        images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        images[1] = np.clip(np.cumsum(rng.integers(-3, 4, (h, w, 3)), axis=1) + 128, 0, 255)
        ref = resize_uint8(torch.from_numpy(images).permute(0, 3, 1, 2), size, mode)
        gap = np.abs(resize(images, size, mode).astype(int)
                     - ref.permute(0, 2, 3, 1).numpy().astype(int))
        assert gap.max() <= (0 if mode in ("nearest", "pad") else 1), (h, w, size)
        differ += int((gap > 0).sum())
        total += gap.size
    assert differ <= 0.002 * total


def test_numpy_normalisation_is_the_pipelines() -> None:
    from cnnvit.data.pipeline import BatchPipeline

    images = np.random.default_rng(3).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.2, 0.25, 0.3]
    pipe = BatchPipeline(data.Split(images, np.zeros(4)), device=torch.device("cpu"),
                         image_size=16, mean=mean, std=std)
    x = next(pipe.batches(4))[0]
    assert np.array_equal(normalise(images, mean, std), x.numpy())


# -- reading files ---------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    """Plain 8-bit grey and RGB PNGs of several sizes and encoder settings, and every kind of
    file `decode` converts: palette, 16-bit, 1-bit, alpha, transparent colour, JPEG, TIFF, BMP,
    GIF."""
    from PIL import PngImagePlugin

    rng = np.random.default_rng(7)
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "an ancillary chunk")
    images: dict[str, tuple[Image.Image, dict]] = {}
    for i, (h, w) in enumerate([(1, 1), (8, 8), (28, 28), (17, 33), (160, 224)]):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb[: h // 2] = rgb[0]  # repeated rows: other PNG filters
        options = [{}, {"optimize": True}, {"compress_level": 0}, {"dpi": (72, 72)},
                   {"pnginfo": text}][i]
        images[f"rgb{i}.png"] = (Image.fromarray(rgb), options)
        images[f"grey{i}.png"] = (Image.fromarray(rgb[..., 0]), options)
    rgb, grey = images["rgb2.png"][0], images["grey2.png"][0]
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    images |= {
        "palette.png": (palette, {}),
        "palette_trns.png": (palette, {"transparency": 3}),
        "grey16.png": (Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16)), {}),
        "one_bit.png": (grey.convert("1"), {}),
        "grey_alpha.png": (Image.merge("LA", (grey, grey.point(lambda v: 255 - v))), {}),
        "rgba.png": (Image.merge("RGBA", (*rgb.split(), grey)), {}),
        "grey_trns.png": (grey, {"transparency": int(np.asarray(grey)[0, 0])}),
        "rgb_trns.png": (rgb, {"transparency": tuple(np.asarray(rgb)[0, 0].tolist())}),
        "photo.jpg": (rgb, {"quality": 90}),
        "scan.tiff": (rgb, {}),
        "grey.bmp": (grey, {}),
        "anim.gif": (palette, {}),
    }
    for name, (image, options) in images.items():
        image.save(folder / name, **options)
    return [folder / name for name in images]


def test_files_read_as_the_training_loader_decodes_them(tmp_path: Path) -> None:
    files = _image_files(tmp_path)
    for f in files:
        ref = decode(f).pixels
        got = read_pixels(f)
        assert got.dtype == ref.dtype == np.uint8 and got.shape == ref.shape, f.name
        assert np.array_equal(got, ref), f.name
    # through `batches`, inline or in threads: in order, in the model's channels, writable
    items = [Item(f.name, f) for f in files]
    for channels in (1, 3):
        for workers in (0, 1, 3):
            loaded = [x for chunk in batches(items, 4, channels, workers) for x in chunk]
            assert [x.item for x in loaded] == items
            for x, f in zip(loaded, files, strict=True):
                ref = decode(f).pixels
                ref = ref[..., None] if ref.ndim == 2 else ref
                assert x.pixels is not None and x.pixels.flags.writeable
                assert x.pixels.shape[2] == channels, f.name
                if ref.shape[2] == channels:
                    assert np.array_equal(x.pixels, ref), f.name


def test_unreadable_files_give_pils_reason(tmp_path: Path) -> None:
    """The reason for an unreadable file is the one PIL gives for its path (not for the bytes
    read), as before."""
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    body = good.read_bytes()
    damaged, header = bytearray(body), bytearray(body)
    damaged[body.find(b"IDAT") + 6] ^= 0xFF  # the image data
    header[23] ^= 0xFF  # the height: a CRC error
    files = {"empty.png": b"", "truncated.png": body[:45], "notes.png": b"not an image",
             "damaged.png": bytes(damaged), "header.png": bytes(header)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DECODE_ERRORS) as error:
            decode(tmp_path / name)
        loaded = load(Item(name, tmp_path / name), 1)
        assert loaded.pixels is None, name
        assert loaded.reason == unreadable_reason(error.value, tmp_path / name), name
        assert "BytesIO" not in loaded.reason

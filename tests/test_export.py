"""`cnnvit export`: ONNX and TorchScript for every preset family, each checked against PyTorch
on the val split, and `cnnvit predict` on the exported .onnx file.

The model directories are real `cnnvit train` outputs, made as cheaply as that path allows:
one epoch on a 48-image synthetic colour dataset at 32 px, in float32 (`--amp off`: a CPU with
native bf16 would train the larger ones in bf16, slower here and beside the point), with a
small learning rate so the probabilities stay spread (a saturated softmax would make any parity
check pass).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# the `dev` extra installs both (CI too): a missing one must fail these tests, not skip them
import onnxruntime  # noqa: F401
import onnxscript  # noqa: F401
import pandas as pd
import pytest
from PIL import Image

from cnnvit.cli import main
from cnnvit.data import write_synthetic
from cnnvit.deploy import export as export_mod
from cnnvit.deploy.sidecar import read_sidecar, sidecar_path

MODELS = ["resnet18", "resnet18-small", "vit-small-input", "vit_small_patch16_224",
          "efficientnet_b0"]
SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("export") / "synth.npz",
                           shape=(SIZE, SIZE, 3), classes=3, samples=(24, 12, 12))


@pytest.fixture(scope="module")
def trained(data: Path) -> dict[str, Path]:
    """One finished model directory per model name."""
    out = {}
    for name in MODELS:
        out[name] = data.parent / name
        assert main(["train", "--dataset", f"synthetic:{data}", "--model", name, "--epochs", "1",
                     "--batch-size", "12", "--lr", "1e-5", "--amp", "off", "--out",
                     str(out[name]), "--quiet", "--set", "eval_batch_size=64"]) == 0
    return out


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", MODELS)
def test_export_passes_parity(trained: dict[str, Path], name: str, fmt: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    dynamic = name in ("resnet18-small", "vit-small-input")  # both batch modes are covered
    args = ["export", str(trained[name]), "--format", fmt] + (["--dynamic-batch"] * dynamic)
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "parity on 12 val images" in printed and "identical predictions 100.0%" in printed
    file = trained[name] / "export" / f"{name}{export_mod.SUFFIX[fmt]}"
    info = json.loads(sidecar_path(file).read_text())
    assert info["parity"]["images"] == 12 and info["parity"]["identical_predictions"] == 1.0
    assert 0 <= info["parity"]["max_abs_prob_diff"] <= 1e-4
    assert info["format"] == fmt and info["dynamic_batch"] == dynamic
    assert (info["image_size"], info["channels"], info["resize_mode"]) == (SIZE, 3, "bilinear")
    assert info["class_names"] == ["synthetic_0", "synthetic_1", "synthetic_2"]
    test_metrics = json.loads((trained[name] / "metrics_test.json").read_text())
    assert info["test_metrics"]["accuracy"] == test_metrics["accuracy"]
    assert info["cnnvit_version"] and info["torch_version"]
    if fmt == "onnx":
        import onnx

        onnx.checker.check_model(str(file))
        assert info["opset"] >= 17 and info["onnxruntime_version"]
    else:
        import torch

        loaded = torch.jit.load(str(file))
        logits, probs = loaded(torch.zeros(1, 3, SIZE, SIZE))
        assert probs.shape == (1, 3) and torch.allclose(probs.sum(1), torch.ones(1))
    read_sidecar(file)  # what predict reads
    assert not [p for p in file.parent.iterdir() if p.name.startswith(".")]  # no temporaries


def _images(data: Path, folder: Path) -> Path:
    """Test images as PNGs: at the stored size, resized to other sizes, and one grey."""
    folder.mkdir()
    test = np.load(data)["test_images"]
    for i, image in enumerate(test[:6]):
        Image.fromarray(image).save(folder / f"same_{i}.png")
    Image.fromarray(test[6]).resize((45, 37)).save(folder / "shrink.png")
    Image.fromarray(test[7]).resize((20, 24)).save(folder / "grow.png")
    Image.fromarray(test[8]).convert("L").save(folder / "grey.png")
    return folder


@pytest.mark.parametrize("name", ["resnet18-small", "vit_small_patch16_224"])
def test_predict_with_onnx_matches_the_model_directory(trained: dict[str, Path], data: Path,
                                                       name: str, tmp_path: Path) -> None:
    """Same images, same CSV rows, same probabilities (≤ 1e-4), through ONNX Runtime and the
    numpy preprocessing or through PyTorch and the training pipeline."""
    onnx_file = trained[name] / "export" / f"{name}.onnx"
    if not onnx_file.is_file():
        assert main(["export", str(trained[name]), "--format", "onnx"]) == 0
    images = _images(data, tmp_path / "images")
    for model, out in ((onnx_file, "onnx.csv"), (trained[name], "torch.csv")):
        assert main(["predict", str(model), str(images), str(data), "--top-k", "3",
                     "--out", str(tmp_path / out)]) == 0
    a, b = pd.read_csv(tmp_path / "onnx.csv"), pd.read_csv(tmp_path / "torch.csv")
    assert len(a) == 9 + 48 and a["path"].tolist() == b["path"].tolist()
    assert (a[["class_1", "class_2", "class_3"]].values ==
            b[["class_1", "class_2", "class_3"]].values).all()
    diff = np.abs(a[["prob_1", "prob_2", "prob_3"]].values -
                  b[["prob_1", "prob_2", "prob_3"]].values).max()
    assert diff <= 1e-4, diff


def test_onnx_predict_imports_neither_torch_nor_timm(trained: dict[str, Path], data: Path,
                                                     tmp_path: Path) -> None:
    onnx_file = trained["vit-small-input"] / "export" / "vit-small-input.onnx"
    if not onnx_file.is_file():
        assert main(["export", str(trained["vit-small-input"]), "--format", "onnx"]) == 0
    images = _images(data, tmp_path / "images")
    code = ("import sys; from cnnvit.cli import main; "
            f"code = main(['predict', {str(onnx_file)!r}, {str(images)!r}, '--out', "
            f"{str(tmp_path / 'p.csv')!r}]); "
            "print([m for m in ('torch', 'timm', 'cnnvit.models', 'cnnvit.engine') "
            "if m in sys.modules], code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "[] 0"
    assert len(pd.read_csv(tmp_path / "p.csv")) == 9


def test_failed_parity_exits_2_and_leaves_no_files(trained: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(export_mod, "MAX_DIFF", -1.0)  # no difference can pass
    dest = tmp_path / "new" / "m.onnx"
    assert main(["export", str(trained["vit-small-input"]), "--format", "torchscript",
                 "--out", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "export parity failed" in err
    assert "nothing was written" in err
    assert not dest.parent.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["export", str(trained["vit-small-input"]), "--format", "torchscript",
                 "--out", str(kept / "m.pt")]) == 2
    assert list(kept.iterdir()) == []


def test_missing_onnx_packages_is_one_line(trained: dict[str, Path],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    assert main(["export", str(trained["resnet18"]), "--format", "onnx"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cnnvit: error: cnnvit export --format onnx needs onnx, onnxscript and onnxruntime: "
        "pip install 'cnnvit[export]'")


def test_export_refuses_what_is_not_a_model_directory(trained: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    onnx_file = tmp_path / "x.onnx"
    onnx_file.write_bytes(b"")
    for args in (["export", str(onnx_file)], ["export", str(tmp_path / "missing")],
                 ["export", str(tmp_path)]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("cnnvit: error: "), err

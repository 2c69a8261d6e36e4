"""Bad input through the command line, as a new user would give it: every case exits 2 with
one line that names the problem, no traceback, and nothing half-written in the output folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvit.cli import main

TRAIN = ["train", "--epochs", "1", "--threads", "1", "--quiet"]


def _npz(path: Path, *, train_labels: np.ndarray | None = None, train_n: int = 40,
         images: np.ndarray | None = None, **extra: np.ndarray) -> Path:
    """A MedMNIST-layout npz: 8 classes, 28×28 grey; arguments replace the train arrays."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", train_n), ("val", 16), ("test", 16)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 8).astype(np.uint8)[:, None]
    if train_labels is not None:
        arrays["train_labels"] = train_labels
    if images is not None:
        arrays["train_images"] = images
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _stray(tmp: Path) -> list[str]:
    labels = (np.arange(40) % 8).astype(np.int64)
    labels[17] = 50
    return ["--dataset", f"npz:{_npz(tmp / 'stray.npz', train_labels=labels)}"]


def _negative(tmp: Path) -> list[str]:
    labels = (np.arange(40) % 8).astype(np.int64)
    labels[3] = -1
    return ["--dataset", f"npz:{_npz(tmp / 'neg.npz', train_labels=labels)}"]


def _count(tmp: Path) -> list[str]:
    return ["--dataset", f"npz:{_npz(tmp / 'count.npz', train_labels=np.zeros(30, np.uint8))}"]


def _nan(tmp: Path) -> list[str]:
    images = np.full((40, 28, 28), 0.5, np.float32)
    images[5, 1, 1] = np.nan
    return ["--dataset", f"npz:{_npz(tmp / 'nan.npz', images=images)}"]


def _multilabel(tmp: Path) -> list[str]:
    labels = np.zeros((40, 8), np.uint8)
    return ["--dataset", f"npz:{_npz(tmp / 'ml.npz', train_labels=labels)}"]


def _text_npz(tmp: Path) -> list[str]:
    (tmp / "x.npz").write_text("not an archive\n")
    return ["--dataset", f"npz:{tmp / 'x.npz'}"]


def _pickle_npz(tmp: Path) -> list[str]:
    path = _npz(tmp / "obj.npz", class_names=np.array([{"a": 1}], dtype=object))
    return ["--dataset", f"npz:{path}"]


def _folder(tmp: Path, classes: dict[str, list[tuple[str, str, int]]]) -> Path:
    """classes: name -> [(file name, PIL mode, side)] written as PNGs (mode "" = raw bytes)."""
    root = tmp / "imgs"
    for cls, files in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name, mode, side in files:
            if mode:
                Image.new(mode, (side, side), 128).save(root / cls / name)
            else:
                (root / cls / name).write_bytes(b"" if side == 0 else b"garbage")
    return root


def _one_class(tmp: Path) -> list[str]:
    return ["--dataset", f"folder:{_folder(tmp, {'a': [(f'{i}.png', 'L', 8) for i in range(6)]})}"]


def _strict_mixed(tmp: Path) -> list[str]:
    files = {c: [(f"{i}.png", "L" if i else "RGB", 8) for i in range(6)] for c in "ab"}
    return ["--dataset", f"folder:{_folder(tmp, files)}", "--set", "strict_data=true"]


def _strict_empty_file(tmp: Path) -> list[str]:
    files = {c: [(f"{i}.png", "L", 8) for i in range(6)] + [("zero.png", "", 0)] for c in "ab"}
    return ["--dataset", f"folder:{_folder(tmp, files)}", "--set", "strict_data=true"]


def _strict_non_image(tmp: Path) -> list[str]:
    files = {c: [(f"{i}.png", "L", 8) for i in range(6)] for c in "ab"}
    root = _folder(tmp, files)
    (root / "a" / "notes.txt").write_text("hello")
    return ["--dataset", f"folder:{root}", "--set", "strict_data=true"]


def _only_junk(tmp: Path) -> list[str]:
    root = tmp / "junk"
    for c in "ab":
        (root / c).mkdir(parents=True)
        (root / c / "readme.txt").write_text("x")
    return ["--dataset", f"folder:{root}"]


def _pickled_weights(tmp: Path) -> list[str]:
    marker = tmp / "PWNED"

    class Payload:
        def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
            return (open, (str(marker), "w"))

    path = tmp / "evil.pt"
    torch.save({"model": Payload()}, path)  # torch.save pickles it; loading it would run open()
    return ["--weights", str(path)]


def _yaml_list(tmp: Path) -> list[str]:
    (tmp / "c.yaml").write_text("- epochs: 3\n- lr: 0.1\n")
    return ["--config", str(tmp / "c.yaml")]


def _out_under_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["--out", str(tmp / "afile" / "model")]


def _missing_weights(tmp: Path) -> list[str]:
    return ["--weights", str(tmp / "nope.pt")]


def _missing_folder(tmp: Path) -> list[str]:
    return ["--dataset", f"folder:{tmp / 'nowhere'}"]


# (id, command, extra arguments made in tmp, what the one line must say)
CASES: list[tuple[str, list[str], Callable[[Path], list[str]], str]] = [
    ("stray-label", TRAIN, _stray, "label 50 at index 17"),
    ("negative-label", TRAIN, _negative, "label -1 at index 3"),
    ("count-mismatch", TRAIN, _count, "40 images but 30 labels"),
    ("nan-pixel", TRAIN, _nan, "nan pixel"),
    ("multi-label", TRAIN, _multilabel, "multi-label"),
    ("text-npz", TRAIN, _text_npz, "not a valid .npz archive"),
    ("pickled-npz", TRAIN, _pickle_npz, "pickled Python objects"),
    ("one-class-folder", TRAIN, _one_class, "at least 2"),
    ("strict-mixed-modes", TRAIN, _strict_mixed, "--strict"),
    ("strict-empty-image", TRAIN, _strict_empty_file, "zero.png"),
    ("strict-non-image", TRAIN, _strict_non_image, "notes.txt"),
    ("folder-of-junk", TRAIN, _only_junk, "no image"),
    ("missing-folder", TRAIN, _missing_folder, "nowhere"),
    ("dataset-typo", TRAIN, lambda t: ["--dataset", "bloodmnst"], "did you mean bloodmnist"),
    ("medmnist-typo", TRAIN, lambda t: ["--dataset", "medmnist:bloodmnst"], "bloodmnist"),
    ("model-typo", TRAIN, lambda t: ["--model", "resnet81"], "unknown model 'resnet81'"),
    ("patch-grid", TRAIN, lambda t: ["--model", "vit_small_patch16_224", "--image-size", "30"],
     "not a multiple of the patch size"),
    ("fp16-on-cpu", TRAIN, lambda t: ["--amp", "fp16", "--device", "cpu"], "needs a CUDA device"),
    ("pickled-weights", TRAIN, _pickled_weights, "will not run code"),
    ("missing-weights", TRAIN, _missing_weights, "nope.pt"),
    ("yaml-list", TRAIN, _yaml_list, "c.yaml"),
    ("out-under-a-file", TRAIN, _out_under_file, "afile"),
    ("unknown-key", TRAIN, lambda t: ["--set", "learning_rate=0.1"], "unknown config key"),
    ("bad-float", TRAIN, lambda t: ["--set", "lr=fast"], "lr"),
    ("bad-choice", TRAIN, lambda t: ["--scheduler", "cosinus"], "cosinus"),
    ("bad-int-flag", TRAIN, lambda t: ["--epochs", "x"], "invalid int value"),
    ("missing-preset", ["run"], lambda t: ["--preset", "quickstrat"], "quickstrat"),
    ("run-model-typo", ["run", "--no-explain"], lambda t: ["--models", "resnet81"], "resnet81"),
    ("resume-nothing", TRAIN, lambda t: ["--resume"], "--resume"),
    ("evaluate-empty", ["evaluate"], lambda t: [str(t)], "in"),
    ("explain-missing", ["explain"], lambda t: [str(t / "none")], "none"),
    ("compare-missing", ["compare"], lambda t: [str(t / "none")], "none"),
    ("report-missing", ["report"], lambda t: [str(t / "none")], "none"),
    ("plot-bad-kind", ["plot"], lambda t: ["pie", str(t)], "pie"),
    ("data-info-typo", ["data", "info"], lambda t: ["cifar11"], "did you mean"),
]


@pytest.mark.parametrize(("command", "make", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str], make: Callable[[Path], list[str]], says: str) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    extra = make(inputs)
    out = tmp_path / "out"
    args = [*command, *extra]
    if command[0] in ("train", "run") and "--out" not in extra:
        args += ["--out", str(out)]
    before = set(inputs.rglob("*"))
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and says in lines[-1], err
    assert "allow_pickle" not in err and "weights_only=False" not in err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), \
        sorted(out.rglob("*"))
    assert set(inputs.rglob("*")) == before  # nothing written beside the user's data
    assert not (inputs / "PWNED").exists()  # the pickled payload never ran

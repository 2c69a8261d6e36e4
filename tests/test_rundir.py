"""The run-directory module: model discovery, mode, and the artifact index."""

from pathlib import Path

import pytest

from cnnvit.errors import CnnvitError
from cnnvit.rundir import ModelDir, RunDir, describe_file


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_models_flat_seeded_and_selected(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(CnnvitError, match="no model directories"):
        run.models()
    touch(run.model_dir("cnn").config)
    for seed in (43, 7):
        touch(run.model_dir("vit", seed).config)
    (tmp_path / "models" / ".hidden").mkdir()
    found = [(e.name, e.seed, e.dir.path) for e in run.models()]
    assert found == [("cnn", None, tmp_path / "models" / "cnn"),
                     ("vit", 7, tmp_path / "models" / "vit" / "seed_7"),
                     ("vit", 43, tmp_path / "models" / "vit" / "seed_43")]
    assert [e.name for e in run.models(["vit"])] == ["vit", "vit"]
    with pytest.raises(CnnvitError, match="nope not in .*have cnn, vit"):
        run.models(["nope"])


def test_model_dir_names_and_missing_config(tmp_path):
    md = ModelDir(tmp_path / "m")
    assert md.checkpoint("last") == tmp_path / "m" / "checkpoints" / "last.pt"
    assert md.metrics("val").name == "metrics_val.json"
    assert md.predictions("test").name == "predictions_test.csv"
    assert not md.finished
    with pytest.raises(CnnvitError, match="not a cnnvit model directory"):
        md.read_config()


def test_mode_from_argument_manifest_or_default(tmp_path):
    run = RunDir(tmp_path)
    assert run.mode() == "full"
    run.write_manifest({"mode": "reduced"})
    assert run.mode() == "reduced" and run.mode("full") == "full"
    with pytest.raises(CnnvitError, match="unknown mode"):
        run.mode("half")
    assert RunDir.for_mode(tmp_path, "reduced").root == tmp_path / "reduced"


def test_describe_file_knows_run_and_model_files():
    assert "resolved config" in describe_file("models/cnn/config.yaml")
    assert "resolved config" in describe_file("models/vit/seed_3/config.yaml")
    assert "for resume" in describe_file("models/vit/seed_3/checkpoints/last.pt")
    assert "every metric" in describe_file("results/final_comparison.csv")
    assert "map over the image" in describe_file("explain/cnn/test_i00001_true1_pred2.png")
    assert describe_file("models/cnn/notes.txt") == "not a cnnvit artifact"
    assert describe_file("stray.bin") == "not a cnnvit artifact"


def test_artifact_index_lists_every_file_and_groups_many_alike(tmp_path):
    run = RunDir(tmp_path)
    md = run.model_dir("cnn")
    for path in (md.config, md.history, md.summary, md.checkpoint("best"), md.metrics("test"),
                 run.results / "summary.md", tmp_path / "stray.bin",
                 tmp_path / "models" / "cnn" / ".config.yaml.tmp"):
        touch(path)
    run.write_manifest({"mode": "full"})
    for i in range(6):
        touch(run.explain / "cnn" / f"test_i{i:05d}_true0_pred0.png")
    text = run.write_artifact_index().read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert "| `ARTIFACTS.md` | this index |" in rows
    assert any(r.startswith("| `explain/cnn/*.png` |") and "(6 files)" in r for r in rows)
    assert "| `stray.bin` | not a cnnvit artifact |" in rows
    for path in ("models/cnn/config.yaml", "models/cnn/history.csv", "models/cnn/summary.json",
                 "models/cnn/checkpoints/best.pt", "models/cnn/metrics_test.json",
                 "manifest.json", "results/summary.md"):
        row = next(r for r in rows if r.startswith(f"| `{path}` |"))
        assert "not a cnnvit artifact" not in row
    assert ".tmp" not in text  # hidden files (temporary, checksum caches) are not artifacts
    assert len(rows) == 10

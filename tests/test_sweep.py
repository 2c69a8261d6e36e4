"""`cnnvit sweep`: grid checks, dry runs, local runs that skip done jobs, the Slurm array
(submitit's debug executor and a stand-in sbatch), and `cnnvit compare SWEEP_DIR`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cnnvit import sweep as sweep_mod
from cnnvit.cli import main

MODELS = ["resnet18-small", "vit-small-input"]
TINY = {"epochs": 1, "vit-small-input.model_kwargs": {"width": 32, "depth": 1, "heads": 2}}


def _grid(path: Path, **changes: object) -> Path:
    grid = {"datasets": ["digits"], "models": MODELS, "image_sizes": [8], "seeds": [42, 43],
            "set": TINY, "explain": False, **changes}
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A 2 models × 2 seeds sweep on digits, run locally two jobs at once."""
    root = tmp_path_factory.mktemp("sweep")
    grid = _grid(root / "grid.yaml")
    out = root / "sw"
    lines: list[str] = []
    sweep_mod.sweep(grid, out, parallel=2, say=lines.append)
    return grid, out, "\n".join(lines)


@pytest.mark.parametrize(("changes", "message"), [
    ({"dataset": "digits"}, "unknown key(s) dataset"),
    ({"seeds": []}, "'seeds' must be a non-empty list"),
    ({"image_sizes": [8, "big"]}, "'image_sizes' entry 'big' is not an image size"),
    ({"models": "resnet18-small"}, "'models' must be a non-empty list"),
    ({"set": {"epoch": 1}}, "unknown config key 'epoch'"),
    ({"set": {"vit.epochs": 1}}, "'vit' is not a model of the grid"),
    ({"set": {"lr": []}}, "set 'lr' is an empty list"),
    ({"set": {"seed": 1}}, "chosen by the grid: use 'seeds'"),
    ({"slurm": {"gpu": 1}}, "unknown slurm key 'gpu'"),
    ({"slurm": {"time": "2h"}}, "slurm 'time' must be int"),
    ({"explain": "no"}, "'explain' and 'robustness' true or false"),
    ({"robustness": 1}, "'explain' and 'robustness' true or false"),
])
def test_a_bad_grid_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 changes: dict, message: str) -> None:
    grid = _grid(tmp_path / "grid.yaml", **changes)
    assert main(["sweep", str(grid), "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "sw").exists()


def test_dry_run_lists_each_job_with_a_variant_per_set_list(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture
                                                            ) -> None:
    grid = _grid(tmp_path / "grid.yaml", image_sizes=[8, 16], seeds=[42],
                 set={**TINY, "lr": [1e-3, 2e-3]})
    assert main(["sweep", str(grid), "--out", str(tmp_path / "sw"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-2].removeprefix(str(tmp_path / "sw") + "/") for line in lines] == [
        "digits/8px/lr=0.001/seed_42", "digits/8px/lr=0.002/seed_42",
        "digits/16px/lr=0.001/seed_42", "digits/16px/lr=0.002/seed_42"]
    assert all(line.endswith(" new") and "resnet18-small,vit-small-input" in line
               for line in lines)
    assert not (tmp_path / "sw").exists()  # a dry run writes nothing


def test_every_job_finishes_in_its_own_run_directory(finished: tuple[Path, Path, str]) -> None:
    _grid_file, out, said = finished
    record = json.loads((out / "sweep.json").read_text())
    assert [j["dir"] for j in record["jobs"]] == ["digits/8px/seed_42", "digits/8px/seed_43"]
    assert record["executor"] == "local" and record["grid"]["seeds"] == [42, 43]
    for job in record["jobs"]:
        run = out / job["dir"]
        assert (run / "results" / "final_comparison.csv").is_file()
        assert all((run / "models" / m / "summary.json").is_file() for m in MODELS)
        assert not (run / "explain").exists()  # explain: false
        log = (run / "logs" / "sweep_job.log").read_text()
        assert "'--threads', '1'" in log and "'--no-explain'" in log
    assert "2 jobs, 0 done (skipped), 2 to run" in said


def test_a_second_sweep_skips_done_jobs(finished: tuple[Path, Path, str],
                                        capsys: pytest.CaptureFixture) -> None:
    grid, out, _ = finished
    jobs = [p for p in out.glob("digits/**/*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in jobs}
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    assert "2 jobs, 2 done (skipped), 0 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in jobs} == before
    assert sorted(p for p in out.glob("digits/**/*") if p.is_file()) == sorted(jobs)


def test_dry_run_tells_done_partial_and_new(finished: tuple[Path, Path, str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    _grid_file, out, _ = finished
    grid = _grid(tmp_path / "grid.yaml", seeds=[42, 43, 44, 45])
    (out / "digits" / "8px" / "seed_44").mkdir()
    try:
        assert main(["sweep", str(grid), "--out", str(out), "--dry-run"]) == 0
    finally:
        (out / "digits" / "8px" / "seed_44").rmdir()
    statuses = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert statuses == ["done", "done", "partial", "new"]


def test_compare_aggregates_a_sweep_over_seeds(finished: tuple[Path, Path, str],
                                               capsys: pytest.CaptureFixture) -> None:
    _grid_file, out, _ = finished
    assert main(["compare", str(out)]) == 0
    assert "sweep_summary_csv" in capsys.readouterr().out
    summary = pd.read_csv(out / "results" / "sweep_summary.csv")
    assert len(summary) == len(MODELS) * 5 and set(summary["n_seeds"]) == {2}
    accuracy = []
    for seed in (42, 43):
        df = pd.read_csv(out / "digits" / "8px" / f"seed_{seed}" / "results" /
                         "final_comparison.csv")
        accuracy.append(df.query("split == 'test' and model == 'vit-small-input'")
                        ["accuracy"].item())
    row = summary.query("model == 'vit-small-input' and metric == 'accuracy'").iloc[0]
    assert row["mean"] == pytest.approx(sum(accuracy) / 2)
    assert row["std"] == pytest.approx(abs(accuracy[0] - accuracy[1]) / 2 ** 0.5)
    assert row["image_size"] == 8 and row["dataset"] == "digits"
    md = (out / "results" / "sweep_summary.md").read_text()
    assert "| vit-small-input | 8 px | 2 |" in md and " ± " in md
    figure = out / "figures" / "sweep_accuracy_vs_flops.png"
    first = figure.read_bytes()
    assert main(["compare", str(out)]) == 0
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and figure.read_bytes() == first


def test_slurm_array_tasks_run_the_job_function(finished: tuple[Path, Path, str]) -> None:
    """submitit's debug executor runs the array here: only the unfinished job is submitted."""
    grid, out, _ = finished
    results = out / "digits" / "8px" / "seed_43" / "results" / "final_comparison.csv"
    results.unlink()
    lines: list[str] = []
    sweep_mod.sweep(grid, out, executor="slurm", cluster="debug", say=lines.append)
    assert results.is_file()
    record = json.loads((out / "sweep.json").read_text())
    assert record["executor"] == "slurm"
    assert len(record["submissions"][-1]["ids"]) == 1
    assert "1 done (skipped), 1 to run (slurm)" in lines[0]


def test_slurm_submission_asks_for_the_resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    """A stand-in sbatch keeps the script submitit wrote; flags override the grid's slurm:."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    for name, body in (("srun", "exit 0"),
                       ("sbatch", f'cp "$1" "{script}"; echo "Submitted batch job 4242"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    grid = _grid(tmp_path / "grid.yaml", slurm={"partition": "cpu", "time": 30, "mem": 16})
    out = tmp_path / "sw"
    assert main(["sweep", str(grid), "--out", str(out), "--executor", "slurm", "--jobs", "2",
                 "--partition", "gpu", "--gpus", "1", "--cpus", "4"]) == 0
    text = script.read_text()
    for line in ("--partition=gpu", "--time=30", "--gpus-per-node=1", "--mem=16GB",
                 "--cpus-per-task=4", "--array=0-1%2"):
        assert f"#SBATCH {line}\n" in text
    record = json.loads((out / "sweep.json").read_text())
    assert record["submissions"][-1]["ids"] == ["4242_0", "4242_1"]
    assert "submitted 2 array tasks: 4242_0, 4242_1" in capsys.readouterr().out

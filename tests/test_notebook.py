"""notebooks/results.ipynb: stored clean, and it runs on a real run directory (papermill-style:
`run_dir` injected after the `parameters` cell) with a kernel of this very Python."""

import json
import shutil
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

from cnnvit.rundir import RunDir

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "results.ipynb"
KERNEL = "cnnvit-test-python"  # a kernelspec of its own: whatever `python3` points at elsewhere


def parameters_index(nb) -> int:
    tagged = [i for i, cell in enumerate(nb.cells)
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged `parameters`, found {len(tagged)}"
    return tagged[0]


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs `sys.executable` (the venv with cnnvit), found via JUPYTER_PATH;
    the kernel's IPython and runtime files go to tmp_path, not the home directory."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cnnvit test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return KERNEL


def execute(run_dir: Path, kernel: str, cwd: Path):
    """The notebook executed on `run_dir`, injected as papermill does; raises on a cell error."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    injected = nbformat.v4.new_code_cell(f"run_dir = {str(run_dir)!r}",
                                         metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(parameters_index(nb) + 1, injected)
    nbclient.NotebookClient(nb, kernel_name=kernel, timeout=120, startup_timeout=90,
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def text_of(nb) -> str:
    """Every printed, plain, HTML and Markdown output of the notebook, joined."""
    parts = []
    for out in outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        for mime in ("text/plain", "text/html", "text/markdown"):
            parts.append(out.get("data", {}).get(mime, ""))
    return "\n".join(parts)


def pngs(nb) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def test_stored_notebook_is_clean_and_parameterised() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], "clear the outputs before committing the notebook"
        assert cell.execution_count is None
    index = parameters_index(nb)
    params = nb.cells[index]
    assert params.cell_type == "code"
    namespace: dict = {}
    exec(params.source, namespace)  # the parameters cell only assigns plain values
    assert namespace["run_dir"] == "runs/quickstart"
    # run_dir is read only after the parameters cell, where papermill injects its own
    assert not any("run_dir" in cell.source for cell in nb.cells[:index]
                   if cell.cell_type == "code")
    assert any("run_dir" in cell.source for cell in nb.cells[index + 1:])


@pytest.mark.slow
def test_notebook_runs_on_a_finished_run(quick_run: Path, kernel: str, tmp_path: Path) -> None:
    run = RunDir(quick_run)
    nb = execute(quick_run, kernel, tmp_path)

    assert not [out for out in outputs(nb) if out.output_type == "error"]
    text = text_of(nb)
    assert str(quick_run.resolve()) in text  # the injected run_dir, not the default one
    models = {entry.name for entry in run.models()}
    assert len(models) == 2
    for name in models:
        assert name in text
    assert "quickstart" in text and "digits" in text  # the manifest's essentials
    assert "Comparison summary" in text  # summary.md rendered
    assert "mcnemar-exact" in text  # the pairwise tests of statistics.json
    figures = list(run.figures.glob("*.png"))
    overlays = [p for name in models for p in (run.explain / name).glob("*.png")]
    assert figures and overlays
    # every figure, plus at least a gallery and an overlay per model
    assert pngs(nb) >= len(figures) + 1 + len(models)
    for fallback in ("is missing", "no `figures", "no `explain"):  # no section fell back
        assert fallback not in text


@pytest.mark.slow
def test_notebook_notes_missing_files(quick_run: Path, kernel: str, tmp_path: Path) -> None:
    """A run without explanations, figures or summary (e.g. `--no-explain`): notes, no error."""
    partial = tmp_path / "partial"
    shutil.copytree(quick_run, partial,
                    ignore=shutil.ignore_patterns("checkpoints", "explain", "figures"))
    (partial / "results" / "summary.md").unlink()
    nb = execute(partial, kernel, tmp_path)

    assert pngs(nb) == 0
    text = text_of(nb)
    assert "`results/summary.md` is missing" in text
    assert "no `figures/*.png`" in text
    assert "no `explain/gallery_*.png`" in text
    for entry in RunDir(partial).models():
        assert f"no `explain/{entry.name}/`" in text

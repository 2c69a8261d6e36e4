"""`cnnvit report`: report.md / .html / .pdf from a real run, their claims against
statistics.json, a self-contained and escaped HTML, searchable PDF text, the rules."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader

from cnnvit.cli import main
from cnnvit.compare import compare
from cnnvit.compare.verdicts import WINS, Verdicts
from cnnvit.errors import CnnvitError
from cnnvit.report import facts, recommend, report
from tests.test_compare import CNN, VIT, make_run

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def reported(quick_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's quickstart run, with its report written by the command."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(quick_run, run)
    assert main(["report", str(run)]) == 0
    return run


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_run_ends_with_the_report(quick_run: Path) -> None:
    manifest = json.loads((quick_run / "manifest.json").read_text())
    assert list(manifest["stages"])[-1] == "report"
    for ext in ("md", "html", "pdf"):
        assert (quick_run / "report" / f"report.{ext}").stat().st_size > 1000
    assert "| `report/report.pdf` | the study report |" in (quick_run / "ARTIFACTS.md").read_text()


def test_report_has_every_section_and_its_figures_exist(reported: Path) -> None:
    text = (reported / "report" / "report.md").read_text()
    for title in ("Executive summary", "Methodology", "Data", "Preprocessing", "Optimisation",
                  "Seeds, hardware and software", "Results", "Per-class results", "Statistics",
                  "Interpretability", "Efficiency and operations", "Recommendations",
                  "Artifact checklist"):
        assert re.search(rf"^#+ {re.escape(title)}$", text, re.M), title
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert any("confusion_test" in f for f in figures) and any("gallery" in f for f in figures)
    for rel in figures:
        assert (reported / "report" / rel).resolve().is_file(), rel
    manifest = json.loads((reported / "manifest.json").read_text())
    assert manifest["versions"]["torch"] in text and "1,258" in text  # from the manifest


def test_pdf_text_holds_every_test_accuracy(reported: Path) -> None:
    final = pd.read_csv(reported / "results" / "final_comparison.csv")
    text = pdf_text(reported / "report" / "report.pdf")
    test = final[final["split"] == "test"]
    assert len(test) == 2
    for _, row in test.iterrows():
        assert f"{row['accuracy']:.4f}" in text, row["model"]
        assert row["model"] in text
    reader = PdfReader(reported / "report" / "report.pdf")
    assert len(reader.pages) > 3 and "page 2 of" in reader.pages[1].extract_text()
    assert reader.outline  # the sections are bookmarked


def test_html_is_self_contained(reported: Path) -> None:
    html = (reported / "report" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html and "@import" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_report_verdicts_are_those_of_statistics_json(reported: Path) -> None:
    """Each pair verdict the report states is the sentence statistics.json supports, and no
    sentence names a winner of a pair the file marks not significant."""
    stats = json.loads((reported / "results" / "statistics.json").read_text())
    verdicts = Verdicts(stats)
    text = (reported / "report" / "report.md").read_text()
    assert stats["pairs"]
    for row in stats["pairs"]:
        assert verdicts.sentence(row) in text
        if not row["significant"]:
            for a, b in ((row["a"], row["b"]), (row["b"], row["a"])):
                assert f"**{a}** {WINS[row['metric']]} {b}" not in text


def test_hostile_class_name_is_escaped(reported: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(reported, run)
    for metrics in run.glob("models/*/metrics_*.json"):
        m = json.loads(metrics.read_text())
        m["per_class"][0]["class"] = HOSTILE
        metrics.write_text(json.dumps(m))
    compare(run)
    report(run, ("html", "md"))
    html = (run / "report" / "report.html").read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE in (run / "report" / "report.md").read_text()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    run = make_run(tmp_path / "uncompared")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cnnvit compare" in err and err.count("\n") == 1
    assert not (run / "report").exists()
    assert main(["report", str(run), "--format", "docx"]) == 2
    assert "--format" in capsys.readouterr().err


def test_a_failing_format_leaves_the_previous_report(reported: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(reported, run)
    before = {p.name: p.read_bytes() for p in (run / "report").iterdir()}

    def fail(doc: object) -> bytes:
        raise CnnvitError("no PDF today")

    monkeypatch.setattr("cnnvit.report.pdf.render", fail)
    with pytest.raises(CnnvitError):
        report(run)
    assert {p.name: p.read_bytes() for p in (run / "report").iterdir()} == before


def test_report_without_configs_figures_or_explain(tmp_path: Path) -> None:
    """A run directory with results only still reports, saying what is not recorded."""
    run = make_run(tmp_path / "run")
    compare(run)
    paths = report(run)
    text = paths["md"].read_text()
    assert "The explain stage did not run" in text and "n/a" in text
    assert "0.9860" in pdf_text(paths["pdf"])


def _facts(tmp_path: Path, **kwargs: object) -> facts.Facts:
    run = make_run(tmp_path / "run", **kwargs)  # type: ignore[arg-type]
    compare(run)
    return facts.load(run)


def test_rules_prefer_a_model_only_on_significant_accuracy(tmp_path: Path) -> None:
    clear = recommend.recommendations(_facts(tmp_path / "a"))  # 0.986 vs 0.961 of 1,000
    assert any(f"choose **{CNN}**" in line for line in clear)
    tied = recommend.recommendations(_facts(tmp_path / "b", vit={
        "accuracy": 0.984, "f1_macro": 0.98, "auc_macro": 0.999, "loss": 0.06, "ece": 0.02}))
    assert not any(f"choose **{CNN}**" in line for line in tied)
    assert any(f"**{VIT}** needs the fewest FLOPs" in line for line in tied)


def test_rules_flag_chance_calibration_and_one_seed(tmp_path: Path) -> None:
    lines = recommend.recommendations(_facts(tmp_path, vit={
        "accuracy": 0.34, "f1_macro": 0.3, "auc_macro": 0.5, "loss": 1.1, "ece": 0.2}))
    assert any(f"**{VIT} did not learn**" in line for line in lines)
    assert not any("choose" in line for line in lines)  # a model that did not learn: no ranking
    text = (tmp_path / "run" / "results" / "summary.md").read_text()
    assert f"⚠ **{VIT} did not learn**" in text and "binomial p" in text
    assert f"**{CNN}** is more accurate" not in text and "fewer than two ranked" in text
    assert any(f"{VIT}'s test ECE is 0.2000" in line for line in lines)
    assert any("One training run per model" in line for line in lines)
    seeded = recommend.recommendations(_facts(tmp_path / "s", seeds=(1, 2, 3)))
    assert not any("One training run per model" in line for line in seeded)

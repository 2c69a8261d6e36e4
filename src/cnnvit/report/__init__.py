"""`cnnvit report DIR`: the study report, generated from the run directory's files.

    report(run_dir, formats=("md", "html", "pdf")) -> {"md": Path, "html": Path, "pdf": Path}

Writes `DIR/report/report.{md,html,pdf}` (every file made in memory first and written
atomically: a failure leaves the previous report as it was) and refreshes `DIR/ARTIFACTS.md`.
Reads `DIR/manifest.json`, `DIR/results/` (from the compare stage), the models' config.yaml,
`DIR/explain/` and `DIR/figures/`; needs no model, GPU or network.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import IO

from cnnvit.errors import CnnvitError

FORMATS = ("md", "html", "pdf")
__all__ = ["FORMATS", "report"]


def report(run_dir: str | Path, formats: tuple[str, ...] = FORMATS) -> dict[str, Path]:
    """Write the report in each of `formats`; returns the written paths by format."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise CnnvitError(f"unknown report format(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(FORMATS)}")
    # imported here: `import cnnvit.report` (the command line does) stays light
    from cnnvit.document import markdown
    from cnnvit.io import atomic_write, atomic_write_text
    from cnnvit.report import content, facts, html, pdf

    loaded = facts.load(run_dir)
    doc = content.build(loaded)
    folder = loaded.run.report
    texts: dict[str, str | bytes] = {}
    for fmt in formats:  # everything is made before anything is written
        texts[fmt] = (markdown(doc.title, doc.intro, doc.sections, relative_to=folder)
                      if fmt == "md" else html.render(doc) if fmt == "html" else pdf.render(doc))
    written = {}
    for fmt, data in texts.items():
        path = folder / f"report.{fmt}"
        if isinstance(data, bytes):
            atomic_write(path, partial(_write, data), binary=True)
        else:
            atomic_write_text(path, data)
        written[fmt] = path
    loaded.run.write_artifact_index()
    return written


def _write(data: bytes, f: IO[bytes]) -> None:
    f.write(data)

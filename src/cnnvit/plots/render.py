"""`cnnvit plot` and the figures stage: read every input a kind needs, then draw and write.

Every input is read (and every error raised) before the first figure is written; each figure
is written atomically, so a failure never leaves a half-written file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cnnvit.errors import CnnvitError
from cnnvit.plots import (
    FORMATS,
    KINDS,
    SPLITS,
    bars,
    confusion,
    cost,
    faithfulness,
    learning,
    reliability,
    robustness,
    roc,
    sources,
    style,
    training,
)
from cnnvit.plots.sources import MissingOptional, NotAskedFor, Options, Source

DRAWINGS: dict[str, Callable[[Source, Options], list[style.Drawing]]] = {
    "curves": training.drawings, "confusion": confusion.drawings, "roc": roc.drawings,
    "reliability": reliability.drawings, "cost": cost.drawings,
    "faithfulness": faithfulness.drawings, "metrics": bars.drawings,
    "learning": learning.drawings, "robustness": robustness.drawings,
}


def plot(run_dir: str | Path, kind: str = "all", *, model: str | None = None,
         split: str | None = None, normalize: bool = False, fmt: str = "png",
         log: Callable[[str], None] | None = None) -> list[Path]:
    """Draw the figures of `kind` (or all of them) of the run at `run_dir` into
    DIR/figures/<name>.<fmt>; returns the written paths.

    `model`, `split` and `normalize` narrow what is drawn: one model's figures, one split's,
    only the row-normalised confusion matrices. With kind "all", figures whose optional
    input is missing (the explain stage did not run) are skipped with a line to `log`.
    """
    said: set[str] = set()

    def say(line: str) -> None:  # each note once, however many figures it concerns
        if line not in said:
            said.add(line)
            (log or print)(line)

    for value, allowed, what in ((kind, KINDS, "kind"), (fmt, FORMATS, "--format"),
                                 (split, (None, *SPLITS), "--split")):
        if value not in allowed:
            raise CnnvitError(f"{what} takes {', '.join(a for a in allowed if a)}; "
                              f"got {value}")
    src = sources.open_run(run_dir, model)
    opts = Options(split, normalize, say)
    todo: list[style.Drawing] = []
    for name in [k for k in DRAWINGS if kind in (k, "all")]:
        try:
            todo += DRAWINGS[name](src, opts)
        except MissingOptional as e:
            if kind != "all":
                raise
            if not isinstance(e, NotAskedFor):
                say(f"  figures: {name} skipped: {e.message}")
    with style.context():
        return [style.save(d.draw(), src.folder / f"{d.name}.{fmt}", fmt) for d in todo]

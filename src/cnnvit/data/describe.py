"""Human-readable summary of a loaded dataset, for `cnnvit data info`."""

from __future__ import annotations

import numpy as np

from cnnvit.data.types import SPLITS, Dataset


def describe(ds: Dataset) -> str:
    """Name, source, task, image shape, files and md5, split note, notes (warnings) and a
    per-class count table."""
    info = ds.info
    k = info.num_classes
    _, height, width, channels = ds["train"].images.shape
    title = f"{info.name} ({info.spec})"
    if info.synthetic:
        title += "  SYNTHETIC data, not a real dataset"
    sizes = {s: len(ds[s]) for s in SPLITS}
    lines = [
        title,
        f"  source    {info.source}",
        f"  task      {info.task}, {k} classes",
        f"  images    {height}×{width}, {channels} channel{'s' if channels > 1 else ''} "
        f"({'grey' if channels == 1 else 'RGB'}), uint8",
        f"  files     {', '.join(info.files) or '(bundled with scikit-learn)'}",
        f"  md5       {info.md5 or '-'}",
        f"  splits    {info.split_note}",
        "  sizes     " + ", ".join(f"{s} {n}" for s, n in sizes.items())
        + f" (total {sum(sizes.values())})",
        *(f"  note      {note}" for note in info.notes),
        "",
    ]
    counts = {s: np.bincount(ds[s].labels, minlength=k) for s in SPLITS}
    width_name = max(5, *(len(n) for n in info.class_names))
    lines.append(f"  {'class':<{width_name}}" + "".join(f"{s:>15}" for s in SPLITS))
    for i, name in enumerate(info.class_names):
        cells = "".join(f"{counts[s][i]:>7} ({100 * counts[s][i] / max(sizes[s], 1):4.1f}%)"
                        for s in SPLITS)
        lines.append(f"  {name:<{width_name}}{cells}")
    return "\n".join(lines)

"""Number formatting for summaries: metrics to 4 decimals, costs in human units."""

from __future__ import annotations

import math
from typing import TypeGuard

NA = "n/a"


def _present(x: float | None) -> TypeGuard[float]:
    """Neither None nor a float NaN (narrows `float | None` to `float`)."""
    return not (x is None or (isinstance(x, float) and math.isnan(x)))


def metric(x: float | None, std: float | None = None) -> str:
    """0.9612, or 0.9612 ± 0.0031 when a seed std is given."""
    if not _present(x):
        return NA
    return f"{x:.4f}" if not _present(std) else f"{x:.4f} ± {std:.4f}"


def _sig3(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def si(x: float | None, unit: str = "") -> str:
    """3 significant digits with a k/M/G/T prefix: 11.2 M, 557 MFLOPs."""
    if not _present(x):
        return NA
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale * 0.9995:
            return f"{_sig3(x / scale)} {prefix}{unit}"
    return f"{x:.0f} {unit}".rstrip()


def seconds(x: float | None) -> str:
    """12.3 s, 4 min 05 s, 1 h 18 min."""
    if not _present(x):
        return NA
    if x < 59.95:
        return f"{x:.1f} s"
    total = round(x)
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    minutes = round(x / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def memory(x: float | None) -> str:
    """Binary units: 350 MiB, 1.21 GiB."""
    if not _present(x):
        return NA
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if x >= 1024**power:
            return f"{_sig3(x / 1024**power)} {unit}"
    return f"{x:.0f} B"


def rate(x: float | None) -> str:
    """12,345 img/s."""
    return NA if not _present(x) else f"{x:,.0f} img/s"


def count(x: float | None) -> str:
    """An integer, or a mean over seeds to one decimal."""
    if not _present(x):
        return NA
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def ratio(x: float) -> str:
    """55×, 8.2×."""
    return f"{x:.0f}×" if x >= 9.95 else f"{x:.1f}×"

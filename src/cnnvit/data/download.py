"""Downloads that fail with one clear line and leave no partial file behind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnvit.errors import DataError


@contextmanager
def explained_failure(partial: Path, what_to_do: str) -> Iterator[None]:
    """Run a download: any failure (network, HTTP, disk, checksum) removes `partial` and becomes
    one DataError naming the file, the reason and `what_to_do` instead."""
    try:
        yield
    except Exception as e:  # every cause leaves the user the same choice
        partial.unlink(missing_ok=True)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"download of {partial.name} failed ({reason}); {what_to_do}") from e

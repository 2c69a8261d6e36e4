"""Small file helpers: atomic writes so no reader ever sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from cnnvit.errors import CnnvitError

MODES = ("full", "reduced")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it into place.

    A crash or an exception leaves the previous file (if any) untouched and no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
                       ) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give a new file's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_write(path, lambda f: f.write(text))


def atomic_write_csv(df: pd.DataFrame, path: str | Path, **kwargs: Any) -> None:
    """Write a DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    atomic_write_text(path, df.to_csv(**kwargs))


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object from `path`; a corrupt file is a CnnvitError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnvitError(f"{path}: cannot read JSON ({e}); re-run the stage that wrote it") from e
    if not isinstance(data, dict):
        raise CnnvitError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def run_mode(run_dir: Path, mode: str | None = None) -> str:
    """A run directory's mode: `mode` if given, else its manifest's, else "full"."""
    if mode is None:
        manifest = run_dir / "manifest.json"
        mode = read_json(manifest).get("mode", "full") if manifest.is_file() else "full"
    if mode not in MODES:
        raise CnnvitError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return str(mode)

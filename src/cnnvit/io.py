"""Small file helpers: atomic writes so no reader ever sees a half-written file, and logs."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cnnvit.errors import CnnvitError

if TYPE_CHECKING:
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_reason(exc: OSError) -> str:
    """"No space left on device (ENOSPC)": an OS error's reason, for a one-line message."""
    name = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason} ({name})" if name else reason


def _write_error(path: Path, exc: OSError) -> CnnvitError:
    kept = "the previous file is unchanged" if path.is_file() else "nothing was written"
    return CnnvitError(f"cannot write {path}: {os_reason(exc)}; {kept}")


def cache_dir() -> Path:
    """cnnvit's cache: $CNNVIT_CACHE, else $XDG_CACHE_HOME/cnnvit, else ~/.cache/cnnvit."""
    if os.environ.get("CNNVIT_CACHE"):
        return Path(os.environ["CNNVIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cnnvit"


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object],
                 binary: bool = False) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it into place.

    A crash or an exception leaves the previous file (if any) untouched and no temporary file;
    an OS error (a full disk, a read-only directory) is a CnnvitError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give a new file's usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


def check_creatable(path: str | Path) -> None:
    """A CnnvitError unless directory `path` exists or can be made, and is writable; checks
    only, so that a bad `--out` fails before anything is loaded or written."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CnnvitError(f"cannot create {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CnnvitError(f"cannot write to {path}: {existing} is not writable "
                          "(permission denied or a read-only file system)")


def make_dir(path: str | Path) -> Path:
    """Create directory `path` (and its parents); failing is a CnnvitError saying why."""
    path = Path(path)
    check_creatable(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnvitError(f"cannot create {path}: {os_reason(exc)}") from exc
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_write(path, lambda f: f.write(text))


def atomic_write_csv(df: pd.DataFrame, path: str | Path, **kwargs: Any) -> None:
    """Write a DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    atomic_write_text(path, df.to_csv(**kwargs))


def _plain(obj: Any) -> Any:
    import numpy as np  # only for values json cannot write: keeps `cnnvit --help` light

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented, strict JSON (NaN and infinity are refused) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_plain) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object from `path`; a corrupt file is a CnnvitError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnvitError(f"{path}: cannot read JSON ({e}); re-run the stage that wrote it") from e
    if not isinstance(data, dict):
        raise CnnvitError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def open_log(path: Path, *, console: bool = True, timestamps: bool = False) -> logging.Logger:
    """A logger writing plain lines to `path` (with a time stamp when `timestamps`) and, when
    `console`, to stdout. Calling it again for the same path replaces its handlers."""
    log = logging.getLogger(f"cnnvit.log.{path}")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        make_dir(path.parent)
        file_handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise CnnvitError(f"cannot write the log {path}: {os_reason(exc)}") from exc
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s" if timestamps
                                                else "%(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(stream)
    return log


def silent_log(name: str) -> logging.Logger:
    """A logger that writes nothing (the log of a process that is not the one writing, e.g. a
    torchrun rank other than 0)."""
    log = logging.getLogger(f"cnnvit.silent.{name}")
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = False
    return log

"""MD5 of data files, cached beside each file so large files are not re-hashed every run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def md5(path: Path) -> str:
    """MD5 hex digest of `path`; reuses `.<name>.md5.json` while the file's size and mtime match."""
    path = Path(path)
    stat = path.stat()
    key = {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = path.with_name(f".{path.name}.md5.json")
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in key} == key and isinstance(cached.get("md5"), str):
            return cached["md5"]
    except (OSError, ValueError, AttributeError):
        pass
    from cnnvit.io import atomic_write_text

    digest = file_md5(path)
    try:
        atomic_write_text(cache, json.dumps({**key, "md5": digest}))
    except OSError:  # a read-only data directory: just hash again next time
        pass
    return digest


def file_md5(path: Path, chunk: int = 1 << 22) -> str:
    """MD5 hex digest of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

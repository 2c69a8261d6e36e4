"""MD5 of data files, cached in cnnvit's own cache directory so large files are not re-hashed
every run and nothing is ever written beside the user's data (which may be read-only or shared).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cnnvit.io import cache_dir


def md5(path: Path) -> str:
    """MD5 hex digest of `path`, reused from the cache while the file's absolute path, size and
    mtime match; an unreadable or unwritable cache only means hashing again."""
    path = Path(path).absolute()
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    name = hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    cache = cache_dir() / "md5" / f"{name}.json"
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in key} == key and isinstance(cached.get("md5"), str):
            return cached["md5"]
    except (OSError, ValueError, AttributeError):
        pass
    from cnnvit.errors import CnnvitError
    from cnnvit.io import atomic_write_text

    digest = file_md5(path)
    try:
        atomic_write_text(cache, json.dumps({**key, "md5": digest}))
    except (OSError, CnnvitError):  # a read-only or full cache: just hash again next time
        pass
    return digest


def file_md5(path: Path, chunk: int = 1 << 22) -> str:
    """MD5 hex digest of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

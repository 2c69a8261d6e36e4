"""Dataset specs: parse what the user typed and find the directory its files live in."""

from __future__ import annotations

import os
from pathlib import Path

from cnnvit.data.validate import did_you_mean
from cnnvit.errors import DataError

SPEC_FORMS = ("digits, cifar10, cifar100, medmnist:<flag> (or a bare MedMNIST flag such as "
              "bloodmnist), npz:<path>, synthetic:<path>, folder:<path>")
PATH_KINDS = ("npz", "synthetic", "folder")


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a spec into (kind, argument): ("digits", ""), ("cifar", "cifar10"),
    ("medmnist", "bloodmnist"), ("npz" | "synthetic" | "folder", path)."""
    text = spec.strip()
    lowered = text.lower()
    if lowered == "digits":
        return "digits", ""
    if lowered in ("cifar10", "cifar100"):
        return "cifar", lowered
    kind, sep, arg = text.partition(":")
    kind = kind.lower()
    if sep and arg:
        if kind == "medmnist":
            return "medmnist", arg.lower()
        if kind in PATH_KINDS:
            return kind, str(Path(arg).expanduser())
    if not sep and lowered in _medmnist_flags():
        return "medmnist", lowered
    raise DataError(f"unknown dataset spec {spec!r}: {_suggestion(kind, sep, arg)}"
                    f"use one of {SPEC_FORMS}")


def _suggestion(kind: str, sep: str, arg: str) -> str:
    """'did you mean ...? ' for a mistyped name (`bloodmnst`) or kind (`nzp:x.npz`)."""
    if not sep:
        return did_you_mean(kind, ["digits", "cifar10", "cifar100", *_medmnist_flags()])
    if kind in ("medmnist", *PATH_KINDS):
        return f"{kind}: needs a {'flag' if kind == 'medmnist' else 'path'} after the colon; "
    return did_you_mean(kind, ["medmnist", *PATH_KINDS], tail=f":{arg}")


def _medmnist_flags() -> list[str]:
    from medmnist import INFO

    return list(INFO)


def resolve_root(root: str | None, default: Path) -> Path:
    """The data directory: `root`, else $CNNVIT_DATA, else `default`."""
    chosen = root or os.environ.get("CNNVIT_DATA") or default
    return Path(chosen).expanduser()

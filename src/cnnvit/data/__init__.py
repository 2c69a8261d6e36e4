"""Data sources: every dataset spec ends in a `Dataset` of uint8 N×H×W×C images and int64 labels.

Specs: `digits`, `cifar10`, `cifar100`, `medmnist:<flag>` (or a bare 2D MedMNIST flag such as
`bloodmnist`), `npz:<path>`, `synthetic:<path>`, `folder:<path>`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cnnvit.data import cifar, digits, folder, medmnist_source, npz
from cnnvit.data.describe import describe
from cnnvit.data.spec import parse_spec
from cnnvit.data.synthetic import write_synthetic
from cnnvit.data.types import SPLITS, Dataset, DatasetInfo, Split
from cnnvit.data.validate import safe_name
from cnnvit.errors import DataError

log = logging.getLogger("cnnvit.data")

__all__ = ["SPLITS", "Dataset", "DatasetInfo", "Split", "describe", "fetch", "load",
           "parse_spec", "safe_name", "verify", "write_synthetic"]


def load(spec: str, *, size: int | None = None, root: str | None = None,
         download: bool = False, strict: bool = False) -> Dataset:
    """Load the dataset named by `spec`; its checks are those of `cnnvit.data.validate`.

    size: MedMNIST native file size 28|64|128|224 (None = 28); for folder specs, the side that
    images of differing sizes are resized to (None = their most common size); other sources
    have one native size and ignore it. root: data directory (default $CNNVIT_DATA, else the
    source's default). download: fetch missing MedMNIST/CIFAR files. strict: refuse what would
    otherwise load with a note (a class missing from a split; a folder's skipped files, mixed
    modes or sizes). Each note is logged as a warning on the "cnnvit.data" logger and kept in
    `info.notes`. Carved splits use a fixed seed, never the run's, so every run compares on the
    same data.
    """
    kind, arg = parse_spec(spec)
    if kind == "digits":
        ds = digits.load(spec)
    elif kind == "medmnist":
        ds = medmnist_source.load(spec, arg, size=size, root=root, download=download,
                                  strict=strict)
    elif kind == "cifar":
        ds = cifar.load(spec, arg, root=root, download=download, strict=strict)
    elif kind == "folder":
        ds = folder.load(spec, arg, size=size, strict=strict)
    else:
        ds = npz.load(spec, arg, require_synthetic=kind == "synthetic", strict=strict)
    for note in ds.info.notes:
        log.warning("%s: %s", spec, note)
    return ds


def fetch(spec: str, *, size: int | None = None, root: str | None = None) -> list[Path]:
    """Download (when missing) and check the files of a MedMNIST or CIFAR spec; their paths."""
    kind, arg = parse_spec(spec)
    if kind == "medmnist":
        return medmnist_source.fetch(arg, size, root)
    if kind == "cifar":
        return cifar.fetch(arg, root)
    raise DataError(f"nothing to fetch for {spec}: only medmnist:<flag>, cifar10 and cifar100 "
                    f"download files (digits ships with scikit-learn; npz, synthetic and folder "
                    f"specs are your own files)")


def verify(spec: str, *, size: int | None = None, root: str | None = None,
           strict: bool = False) -> str:
    """Check a spec's files exist and match their published md5; for local specs (digits, npz,
    synthetic, folder), check they load (`strict` as in `load`) and report their md5 and notes.
    Raises DataError on any problem."""
    kind, arg = parse_spec(spec)
    if kind == "medmnist":
        return medmnist_source.verify(arg, size, root)
    if kind == "cifar":
        return cifar.verify(arg, root)
    ds = load(spec, size=size, root=root, strict=strict)
    checked = {"digits": "bundled with scikit-learn", "folder": "a folder, no single file to "
               "checksum"}.get(kind, f"md5 {ds.info.md5}")
    notes = f"; {len(ds.info.notes)} note(s): {' | '.join(ds.info.notes)}" if ds.info.notes else ""
    return (f"ok: {spec} loads ({sum(len(s) for s in ds.splits.values())} images, "
            f"{ds.info.num_classes} classes, {checked}); no published md5 to compare with{notes}")

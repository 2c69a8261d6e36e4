"""Data sources: every dataset spec ends in a `Dataset` of uint8 N×H×W×C images and int64 labels.

Specs: `digits`, `cifar10`, `cifar100`, `medmnist:<flag>` (or a bare 2D MedMNIST flag such as
`bloodmnist`), `npz:<path>`, `synthetic:<path>`, `folder:<path>`.
"""

from __future__ import annotations

from pathlib import Path

from cnnvit.data import cifar, digits, folder, medmnist_source, npz
from cnnvit.data.describe import describe
from cnnvit.data.spec import parse_spec
from cnnvit.data.synthetic import write_synthetic
from cnnvit.data.types import SPLITS, Dataset, DatasetInfo, Split
from cnnvit.errors import DataError

__all__ = ["SPLITS", "Dataset", "DatasetInfo", "Split", "describe", "fetch", "load",
           "parse_spec", "verify", "write_synthetic"]


def load(spec: str, *, size: int | None = None, root: str | None = None,
         download: bool = False) -> Dataset:
    """Load the dataset named by `spec`.

    size: MedMNIST native file size 28|64|128|224 (None = 28); other sources have one native
    size and ignore it. root: data directory (default $CNNVIT_DATA, else the source's default).
    download: fetch missing MedMNIST/CIFAR files. Carved splits use a fixed seed, never the
    run's, so every run compares on the same data.
    """
    kind, arg = parse_spec(spec)
    if kind == "digits":
        return digits.load(spec)
    if kind == "medmnist":
        return medmnist_source.load(spec, arg, size=size, root=root, download=download)
    if kind == "cifar":
        return cifar.load(spec, arg, root=root, download=download)
    if kind == "folder":
        return folder.load(spec, arg)
    return npz.load(spec, arg, require_synthetic=kind == "synthetic")


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


def verify(spec: str, *, size: int | None = None, root: str | None = None) -> str:
    """Check a spec's files exist and match their published md5; for local specs (digits, npz,
    synthetic, folder), check they load and report their md5. Raises DataError on any problem."""
    kind, arg = parse_spec(spec)
    if kind == "medmnist":
        return medmnist_source.verify(arg, size, root)
    if kind == "cifar":
        return cifar.verify(arg, root)
    ds = load(spec, size=size, root=root)
    checked = f"md5 {ds.info.md5}" if ds.info.md5 else "bundled with scikit-learn"
    return (f"ok: {spec} loads ({sum(len(s) for s in ds.splits.values())} images, "
            f"{ds.info.num_classes} classes, {checked}); no published md5 to compare with")

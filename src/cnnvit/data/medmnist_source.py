"""`medmnist:<flag>`: the 2D MedMNIST datasets, read from MedMNIST's native-size .npz files.

The metadata (task, class names, channels, URLs, MD5s) comes from `medmnist.INFO`; nothing is
hard-coded per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnvit.data import checksum, npz
from cnnvit.data.download import explained_failure
from cnnvit.data.spec import resolve_root
from cnnvit.data.types import Dataset, DatasetInfo
from cnnvit.data.validate import build_splits, did_you_mean
from cnnvit.errors import DataError
from cnnvit.metrics import TASKS

SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class Remote:
    """One native MedMNIST file: where it comes from and where it belongs."""

    flag: str
    size: int
    filename: str
    url: str
    md5: str
    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    @property
    def fetch_command(self) -> str:
        extra = "" if self.size == 28 else f" --size {self.size}"
        return f"cnnvit data fetch medmnist:{self.flag}{extra}"

    def missing_message(self) -> str:
        return (f"{self.filename} not found in {self.directory}: download {self.url} "
                f"(md5 {self.md5}) into {self.directory}, or run `{self.fetch_command}` "
                f"(or add --download) to download it")


def flag_info(flag: str) -> dict:
    """`medmnist.INFO[flag]` for a supported 2D single-label flag; clear errors otherwise."""
    import medmnist
    from medmnist.dataset import MedMNIST3D

    flags_2d = [f for f, i in medmnist.INFO.items()
                if not issubclass(getattr(medmnist, i["python_class"]), MedMNIST3D)]
    supported = ", ".join(f for f in flags_2d if medmnist.INFO[f]["task"] in TASKS)
    if flag not in medmnist.INFO:
        raise DataError(f"unknown MedMNIST dataset '{flag}': {did_you_mean(flag, flags_2d)}"
                        f"choose one of {supported}")
    if flag not in flags_2d:
        raise DataError(f"{flag} is a 3D MedMNIST dataset; cnnvit classifies 2D images only: "
                        f"choose one of {supported}")
    info = medmnist.INFO[flag]
    if info["task"] not in TASKS:
        raise DataError(f"{flag} is a {info['task']} dataset, which cnnvit does not support yet "
                        f"(it trains single-label multi-class and binary-class classifiers "
                        f"only): choose one of {supported}")
    return info


def remote(flag: str, size: int | None, root: str | None) -> Remote:
    """The file for `flag` at native `size` (28 when None) under the resolved data root."""
    import medmnist.info

    info = flag_info(flag)
    size = 28 if size is None else size
    if size not in SIZES:
        raise DataError(f"image size {size} is not a native MedMNIST size for {flag}: "
                        f"choose one of {', '.join(map(str, SIZES))}")
    suffix = "" if size == 28 else f"_{size}"
    default = medmnist.info.DEFAULT_ROOT or Path.home() / ".medmnist"
    return Remote(flag=flag, size=size, filename=f"{flag}{suffix}.npz", url=info[f"url{suffix}"],
                  md5=info[f"MD5{suffix}"], directory=resolve_root(root, Path(default)))


def checked(r: Remote) -> str:
    """The file's md5 after refusing a file that does not match MedMNIST's."""
    got = checksum.md5(r.path)
    if got != r.md5:
        raise DataError(f"{r.path} has md5 {got}, but MedMNIST's {r.filename} has md5 {r.md5}: "
                        f"the file is corrupt or another version; delete it and run "
                        f"`{r.fetch_command}`")
    return got


def download_file(r: Remote) -> None:
    """Download the file with torchvision's `download_url` (MedMNIST's own download path)."""
    from torchvision.datasets.utils import download_url

    with explained_failure(r.path, r.missing_message()):
        download_url(r.url, str(r.directory), filename=r.filename, md5=r.md5)


def fetch(flag: str, size: int | None, root: str | None) -> list[Path]:
    """Make sure the file is present and intact, downloading it when missing."""
    r = remote(flag, size, root)
    if not r.path.is_file():
        download_file(r)
    checked(r)
    return [r.path]


def verify(flag: str, size: int | None, root: str | None) -> str:
    """Check the file exists and its md5 matches MedMNIST's."""
    r = remote(flag, size, root)
    if not r.path.is_file():
        raise DataError(r.missing_message())
    return f"ok: {r.path} matches MedMNIST's md5 {checked(r)}"


def load(spec: str, flag: str, *, size: int | None, root: str | None,
         download: bool, strict: bool = False) -> Dataset:
    """Load one native-size MedMNIST file with its official train/val/test splits."""
    r = remote(flag, size, root)
    if not r.path.is_file():
        if not download:
            raise DataError(r.missing_message())
        download_file(r)
    md5 = checked(r)
    info = flag_info(flag)
    names = [info["label"][str(i)] for i in range(len(info["label"]))]
    valid = build_splits(npz.raw_splits(npz.read_arrays(r.path)), str(r.path),
                         class_names=names, metadata=f"medmnist.INFO['{flag}']",
                         strict=strict)
    train = valid.splits["train"].images
    return Dataset(DatasetInfo(spec=spec, name=flag, task=info["task"], class_names=names,
                               channels=train.shape[3], image_size=train.shape[1],
                               source="medmnist", md5=md5, files=[str(r.path)],
                               split_note="official MedMNIST train/val/test splits",
                               notes=valid.notes), valid.splits)

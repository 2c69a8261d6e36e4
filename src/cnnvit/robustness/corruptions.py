"""Which corruptions a dataset is tested under, and the corrupted test sets' cache.

MedMNIST datasets get their MedMNIST-C set (Di Salvo et al. 2024, `medmnist_c`); every other
dataset (CIFAR, user folders and npz files, the offline digits) the CIFAR-10-C / ImageNet-C
corruptions (Hendrycks & Dietterich 2019, `imagenet_c`). Severities run 1 to 5; 0 is the clean
image. Each corruption × severity draws its randomness from its own generator, seeded from
the study's robustness seed and the corruption's name, so every model meets identical images
and a cached set is the same set.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnvit.data.types import DatasetInfo
from cnnvit.io import atomic_write
from cnnvit.robustness import imagenet_c, medmnist_c

SEVERITIES = (1, 2, 3, 4, 5)
# bump when a definition changes: cached sets made before are then made again
DEFINITIONS_VERSION = 1

Apply = Callable[[torch.Tensor, str, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class CorruptionSet:
    """The corruptions of one dataset: their names and families, the reference they follow,
    and the function that applies one (uint8 N×C×H×W, name, severity, generator)."""

    reference: str
    names: tuple[str, ...]
    family: dict[str, str]
    apply: Apply


def for_dataset(info: DatasetInfo) -> CorruptionSet:
    """MedMNIST-C's set for a MedMNIST dataset it defines, else CIFAR-10-C (images up to
    64 px) or ImageNet-C (larger) parameters of the common corruptions."""
    if info.source == "medmnist" and info.name in medmnist_c.SETS:
        name = info.name

        def apply_medmnist(x: torch.Tensor, corruption: str, severity: int,
                           gen: torch.Generator) -> torch.Tensor:
            return medmnist_c.corrupt(x, name, corruption, severity, gen)

        names = tuple(medmnist_c.SETS[name])
        return CorruptionSet(f"MedMNIST-C ({name}; Di Salvo et al. 2024)", names,
                             {n: medmnist_c.FAMILY[n] for n in names}, apply_medmnist)
    table = "CIFAR-10-C" if info.image_size <= imagenet_c.CIFAR_MAX_SIZE else "ImageNet-C"
    return CorruptionSet(f"{table} parameters (Hendrycks & Dietterich 2019)", imagenet_c.NAMES,
                         {n: imagenet_c.FAMILY[n] for n in imagenet_c.NAMES},
                         imagenet_c.corrupt)


def generator(seed: int, name: str, severity: int, device: torch.device) -> torch.Generator:
    """The generator of one corruption × severity: the same for every model and every run
    with this seed."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode()) * 7 + severity) % 2**63)
    return gen


def corrupt_split(images: np.ndarray, corruptions: CorruptionSet, name: str, seed: int,
                  device: torch.device, chunk: int = 1024) -> np.ndarray:
    """The uint8 N×H×W×C `images` under corruption `name` at every severity:
    (len(SEVERITIES), N, H, W, C), corrupted on `device` in chunks of `chunk` images."""
    out = np.empty((len(SEVERITIES), *images.shape), dtype=np.uint8)
    for i, severity in enumerate(SEVERITIES):
        gen = generator(seed, name, severity, device)
        for start in range(0, len(images), chunk):
            x = torch.from_numpy(images[start:start + chunk]).to(device).permute(0, 3, 1, 2)
            y = corruptions.apply(x.contiguous(), name, severity, gen)
            out[i, start:start + chunk] = y.permute(0, 2, 3, 1).cpu().numpy()
    return out


def cache_key(images: np.ndarray, corruptions: CorruptionSet, name: str, seed: int) -> str:
    """What a cached set was made from: the clean images, the set, the corruption, the seed
    and the definitions' version."""
    digest = hashlib.sha256(images.tobytes())
    digest.update(f"{corruptions.reference}|{name}|{seed}|{DEFINITIONS_VERSION}|"
                  f"{images.shape}".encode())
    return digest.hexdigest()


def cached(path: Path, images: np.ndarray, corruptions: CorruptionSet, name: str, seed: int,
           device: torch.device) -> np.ndarray:
    """The corrupted sets of `corrupt_split`, read from `path` (an npz) when it was made from
    the same inputs, else made and written there (uint8, compressed)."""
    key = cache_key(images, corruptions, name, seed)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    return np.asarray(stored["images"])
        except (OSError, ValueError, KeyError):
            pass  # damaged or from another version: made again below
    made = corrupt_split(images, corruptions, name, seed, device)
    atomic_write(path, lambda f: np.savez_compressed(f, images=made, key=np.array(key)),
                 binary=True)
    return made

"""Turn a config into the pieces every stage needs: data, model, normalisation, device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from cnnvit import config, data, models
from cnnvit.config import Config
from cnnvit.data.medmnist_source import SIZES as MEDMNIST_SIZES
from cnnvit.data.pipeline import BatchPipeline, channel_stats
from cnnvit.data.subsets import with_train_fraction
from cnnvit.data.types import Dataset, Split
from cnnvit.engine.runtime import amp_dtype, resolve_device
from cnnvit.errors import CnnvitError


@dataclass
class Setup:
    """A loaded dataset, the resolved input geometry and normalisation, and the device."""

    cfg: Config
    dataset: Dataset
    device: torch.device
    image_size: int
    mean: list[float]
    std: list[float]

    @property
    def info(self):
        return self.dataset.info

    def pipeline(self, split: str | Split, train: bool = False) -> BatchPipeline:
        """The on-device batch pipeline of a split, by name or given (augmented when `train`)."""
        cfg = self.cfg
        images = self.dataset[split] if isinstance(split, str) else split
        return BatchPipeline(images, device=self.device, image_size=self.image_size,
                             mean=self.mean, std=self.std, resize_mode=cfg.resize_mode,
                             augment=cfg if train else None, channels_last=self._channels_last(),
                             cache_bytes=cache_budget(self.device))

    def _channels_last(self) -> bool:
        return self.cfg.channels_last and models.family(self.cfg.model) == "cnn"

    def build_model(self, pretrained: bool | None = None, weights: str | None = "config"
                    ) -> torch.nn.Module:
        """The model for this data, on the device (channels-last for CNNs when enabled)."""
        cfg = self.cfg
        model = models.build(cfg.model, self.info.num_classes, in_chans=self.info.channels,
                             image_size=self.image_size,
                             pretrained=cfg.pretrained if pretrained is None else pretrained,
                             weights=cfg.weights if weights == "config" else weights,
                             **cfg.model_kwargs)
        model = model.to(self.device)
        if self._channels_last():
            model = model.to(memory_format=torch.channels_last)
        return model

    def resolved(self) -> dict:
        """Derived facts recorded beside the config (enough to reproduce and to audit the run)."""
        info = self.info
        return {"image_size": self.image_size, "mean": self.mean, "std": self.std,
                "num_classes": info.num_classes, "in_chans": info.channels,
                "class_names": list(info.class_names), "task": info.task,
                "dataset_name": info.name, "dataset_md5": info.md5,
                "synthetic": info.synthetic, "split_note": info.split_note,
                "split_sizes": {k: len(v) for k, v in self.dataset.splits.items()},
                "native_size": info.image_size, "device": str(self.device),
                "data_notes": list(info.notes)}


def cache_budget(device: torch.device) -> int:
    """Bytes of resized uint8 images a split may keep on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.4)
    try:
        import os

        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 * 2**30
    return int(min(avail * 0.25, 8 * 2**30))


def data_size(cfg: Config) -> int | None:
    """The size the source reads at: MedMNIST's native file (`data_size`, else `image_size` if
    it is a native size); a folder's common size when its images differ (`image_size`)."""
    if cfg.data_size is not None:
        return cfg.data_size
    if cfg.dataset.startswith("folder:"):
        return cfg.image_size
    return cfg.image_size if cfg.image_size in MEDMNIST_SIZES else None


def normalization(cfg: Config, ds: Dataset) -> tuple[list[float], list[float]]:
    """Input mean/std: ImageNet statistics for pretrained weights, else the train split's."""
    mode = cfg.normalize
    with_weights = cfg.pretrained or cfg.weights is not None
    published = models.input_normalization(cfg.model, with_weights) if mode == "auto" else None
    if mode == "dataset" or (mode == "auto" and published is None):
        return channel_stats(ds["train"])
    if published is not None:
        mean, std = published
    elif mode == "half":
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    else:
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return fit_channels(mean, ds.info.channels), fit_channels(std, ds.info.channels)


def fit_channels(values: tuple[float, ...], channels: int) -> list[float]:
    """RGB statistics for `channels` inputs: their mean for grey images (as input convs are
    adapted), repeated cyclically for more channels."""
    values = tuple(float(v) for v in values)
    if channels == 1:
        return [sum(values) / len(values)]
    return [values[i % len(values)] for i in range(channels)]


def load_data(cfg: Config) -> Dataset:
    """The dataset `cfg` names (MedMNIST: the native file `data_size` selects)."""
    return data.load(cfg.dataset, size=data_size(cfg), root=cfg.data_root,
                     download=cfg.download, strict=cfg.strict_data)


def prepare(cfg: Config, dataset: Dataset | None = None) -> Setup:
    """Load the data named by `cfg` (unless given), keep its `train_fraction`, and resolve
    input size, normalisation and device."""
    device = resolve_device(cfg.device)
    ds = with_train_fraction(dataset if dataset is not None else load_data(cfg),
                             cfg.train_fraction, cfg.subset_seed)
    image_size = cfg.image_size or ds.info.image_size
    mean, std = normalization(cfg, ds)
    return Setup(cfg=cfg, dataset=ds, device=device, image_size=image_size, mean=mean, std=std)


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """`config.load` with the model family's default recipe (`config.FAMILY_DEFAULTS`) for the
    keys neither the file nor the overrides set; an unknown model, or a device or AMP mode this
    machine cannot run, fails here, before anything is written."""
    cfg = config.load(path, overrides, family=_family_or_none)
    models.check_name(cfg.model)
    amp_dtype(cfg.amp, resolve_device(cfg.device))
    return cfg


def _family_or_none(name: str) -> str | None:
    try:
        return models.family(name)
    except CnnvitError:  # an unknown model name is reported when the model is built
        return None

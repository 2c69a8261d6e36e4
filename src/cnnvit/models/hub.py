"""Published pretrained weights: taken from the local cache when there, downloaded only when
the network answers, otherwise one clear error that says where to get them.

`HF_HUB_OFFLINE=1` or `CNNVIT_OFFLINE=1` means "never touch the network".
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlparse

import torch

from cnnvit.checkpoint import refuse_pickled_code
from cnnvit.errors import CnnvitError

T = TypeVar("T")

_NETWORK_MODULES = {"huggingface_hub", "httpx", "httpcore", "requests", "urllib3", "urllib"}
_PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
# the file timm's `load_state_dict_from_hf` asks the hub for when the config names none
_HF_WEIGHTS_NAME = "pytorch_model.bin"


def no_network_error(name: str, source: str) -> CnnvitError:
    """The one-line error for weights that cannot be fetched."""
    return CnnvitError(
        f"cannot download pretrained weights for {name} ({source}): no network. Download them "
        "elsewhere and pass --weights PATH (in `cnnvit run`: --set <model>.weights=PATH); a "
        "state dict, .safetensors or cnnvit checkpoint")


def offline_env() -> bool:
    """True when the environment forbids network access (HF_HUB_OFFLINE / CNNVIT_OFFLINE)."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "CNNVIT_OFFLINE"))


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the host of `url` opens within `timeout` seconds.

    Behind a proxy the direct probe proves nothing, so the answer is then True.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def is_download_error(exc: BaseException) -> bool:
    """Errors that mean "the file could not be fetched" (as opposed to a bug or a bad model)."""
    if isinstance(exc, OSError):
        return True
    return type(exc).__module__.split(".")[0] in _NETWORK_MODULES


def download(name: str, source: str, load: Callable[[], T]) -> T:
    """Run `load`, which downloads `source`: a CnnvitError, not a hang, when there is no network.

    Offline (see `offline_env`) or when the host does not answer, `load` is not called; a
    download error raised by `load` becomes the same error.
    """
    if offline_env() or not reachable(source):
        raise no_network_error(name, source)
    try:
        return load()
    except Exception as exc:
        if is_download_error(exc):
            raise no_network_error(name, source) from exc
        raise


def url_cache_path(url: str) -> Path:
    """Where torch.hub (and timm, for URL weights) keeps the file downloaded from `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


class TimmWeights(NamedTuple):
    """A timm model's published weights: where from, and the local copy when there is one."""

    source: str
    cached: Path | None = None
    custom_load: bool = False  # the cached file is in the model's own format (e.g. JAX .npz)

    def overlay(self) -> dict[str, Any]:
        """`pretrained_cfg_overlay` that makes timm.create_model load the cached file."""
        return {"file": str(self.cached), "custom_load": self.custom_load}


def _hf_filenames(filename: str) -> list[str]:
    """The files timm's hub loader tries for `filename`, in its order (safetensors first)."""
    if filename.endswith(".safetensors"):
        return [filename]
    if filename == _HF_WEIGHTS_NAME:
        return ["model.safetensors", filename]
    if filename == "open_clip_pytorch_model.bin":
        return ["open_clip_model.safetensors", filename]
    return [filename.removesuffix(".bin") + ".safetensors", filename]


def timm_weights(model_name: str) -> TimmWeights:
    """The published weights of timm model `model_name` (`arch` or `arch.tag`).

    The local copy is looked up in huggingface_hub's cache (the hub files timm would fetch),
    then in torch.hub's checkpoint directory (URL weights). Raises CnnvitError when timm
    publishes no weights for the model.
    """
    import timm.models
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=False)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise CnnvitError(f"timm publishes no pretrained weights for {model_name}; "
                          "drop --pretrained or pass --weights PATH")
    if cfg.file:
        return TimmWeights(str(cfg.file), Path(cfg.file), bool(cfg.custom_load))
    url = cfg.url[0] if isinstance(cfg.url, tuple) else cfg.url
    source = str(url)
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        source = f"{str(constants.ENDPOINT).rstrip('/')}/{repo}"
        for filename in _hf_filenames(cfg.hf_hub_filename or _HF_WEIGHTS_NAME):
            path = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(path, str):
                return TimmWeights(source, Path(path), cfg.custom_load == "hf")
    if url and url_cache_path(url).is_file():
        return TimmWeights(url, url_cache_path(url), bool(cfg.custom_load))
    return TimmWeights(source)


def torchvision_state_dict(name: str, url: str) -> dict[str, Any]:
    """The state dict published at `url` (torchvision weights), via torch.hub's cache."""
    def load() -> dict[str, Any]:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                  check_hash=True, weights_only=True)
    try:
        return load() if url_cache_path(url).is_file() else download(name, url, load)
    except CnnvitError:
        raise
    except pickle.UnpicklingError as exc:  # the weights-only loader refused the file
        raise refuse_pickled_code(url_cache_path(url), exc) from None
    except Exception as exc:  # e.g. a corrupt or truncated file in torch.hub's cache
        raise CnnvitError(f"cannot load pretrained weights for {name} from {url}: "
                          f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

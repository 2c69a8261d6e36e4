"""Published pretrained weights: taken from the local cache when there, downloaded only when
the network answers, otherwise one clear error that says where to get them.

`HF_HUB_OFFLINE=1` or `CNNVIT_OFFLINE=1` means "never touch the network".
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import torch

from cnnvit.errors import CnnvitError

T = TypeVar("T")

_NETWORK_MODULES = {"huggingface_hub", "httpx", "httpcore", "requests", "urllib3", "urllib"}
_PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


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


@contextlib.contextmanager
def hf_offline() -> Iterator[None]:
    """Force huggingface_hub into offline mode (cache only) for the duration of the block."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm then downloads by URL
        yield
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _hf_endpoint() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.ENDPOINT).rstrip("/")
    except ImportError:  # pragma: no cover
        return "https://huggingface.co"


def timm_weights_source(model_name: str) -> tuple[str, str]:
    """(kind, location) of the published weights of a timm model: ("hf-hub", url) or ("url", url).

    Raises CnnvitError when timm publishes no weights for it.
    """
    import timm.models

    cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=False)
    if cfg is None:
        raise CnnvitError(f"timm publishes no pretrained weights for {model_name}; "
                          "drop --pretrained or pass --weights PATH")
    try:
        from timm.models._builder import _resolve_pretrained_source
        kind, loc = _resolve_pretrained_source(cfg.to_dict())
    except Exception:  # private API changed: fall back to the usual preference
        kind, loc = ("hf-hub", cfg.hf_hub_id) if cfg.hf_hub_id else ("url", cfg.url or "")
    if isinstance(loc, tuple):
        loc = "/".join(loc)
    if kind == "hf-hub" and loc:
        return "hf-hub", f"{_hf_endpoint()}/{loc}"
    if kind == "url" and loc:
        return "url", str(loc)
    if kind in {"file", "local-dir"} and loc:
        return kind, str(loc)
    raise CnnvitError(f"timm publishes no pretrained weights for {model_name}; "
                      "drop --pretrained or pass --weights PATH")


def _url_cached(url: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()


def fetch(name: str, kind: str, source: str, load: Callable[[], T]) -> T:
    """Run `load` (which downloads `source` if needed) without hanging when offline.

    hf-hub sources are first tried cache-only; URL sources are used directly when cached.
    Otherwise the network is probed first, and any download failure becomes one CnnvitError.
    """
    if kind == "hf-hub":
        try:
            with hf_offline():
                return load()
        except Exception as exc:
            if not is_download_error(exc):
                raise
        need_network = True
    else:
        need_network = kind == "url" and not _url_cached(source)
    if need_network and (offline_env() or not reachable(source)):
        raise no_network_error(name, source)
    try:
        return load()
    except Exception as exc:
        if kind in {"hf-hub", "url"} and is_download_error(exc):
            raise no_network_error(name, source) from exc
        raise


def torchvision_state_dict(name: str, url: str) -> dict[str, Any]:
    """The state dict published at `url` (torchvision weights), via torch.hub's cache."""
    def load() -> dict[str, Any]:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                  check_hash=True, weights_only=True)
    try:
        return fetch(name, "url", url, load)
    except CnnvitError:
        raise
    except Exception as exc:  # e.g. a corrupt or truncated file in torch.hub's cache
        raise CnnvitError(f"cannot load pretrained weights for {name} from {url}: "
                          f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

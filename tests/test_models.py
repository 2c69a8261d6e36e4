"""cnnvit.models: presets, timm/torchvision names, offline pretrained errors, local weights."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import pytest
import torch

from cnnvit.checkpoint import save_checkpoint
from cnnvit.errors import CnnvitError
from cnnvit.models import (
    PRESETS,
    build,
    choose_patch_size,
    count_parameters,
    family,
    hub,
    input_normalization,
    load_weights,
)

torch.manual_seed(0)


def _out(model: torch.nn.Module, in_chans: int, size: int) -> torch.Size:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, in_chans, size, size)).shape


# ---------------------------------------------------------------- presets and shapes

@pytest.mark.parametrize("size, patch, grid", [(8, 2, 4), (28, 4, 7), (32, 4, 8), (64, 8, 8)])
def test_vit_small_input_patch_and_grid(size: int, patch: int, grid: int) -> None:
    model = build("vit-small-input", num_classes=10, in_chans=1, image_size=size)
    assert model.patch_embed.patch_size == (patch, patch)
    assert model.patch_embed.grid_size == (grid, grid)
    assert model.pos_embed.shape == (1, grid * grid + 1, 64)
    assert _out(model, 1, size) == (2, 10)


def test_choose_patch_size_rules() -> None:
    assert [choose_patch_size(s) for s in (8, 16, 28, 32, 48, 64, 128, 224)] == [
        2, 2, 4, 4, 8, 8, 16, 16]
    assert choose_patch_size(30) == 3          # largest divisor not above the preferred 4
    assert choose_patch_size(28, patch_size=7) == 7
    with pytest.raises(CnnvitError, match="does not divide"):
        choose_patch_size(28, patch_size=5)
    with pytest.raises(CnnvitError, match="patch_size"):
        choose_patch_size(97)


def test_vit_small_input_overrides_and_size() -> None:
    model = build("vit-small-input", 10, image_size=32)
    assert 150_000 < count_parameters(model) < 250_000
    model = build("vit-small-input", 3, image_size=32, width=96, depth=2, heads=3, patch_size=8,
                  mlp_ratio=2, drop_rate=0.1, drop_path_rate=0.1)
    assert model.embed_dim == 96 and len(model.blocks) == 2
    assert model.blocks[0].attn.num_heads == 3 and model.patch_embed.grid_size == (4, 4)
    assert _out(model, 3, 32) == (2, 3)
    with pytest.raises(CnnvitError, match="unknown option"):
        build("vit-small-input", 3, image_size=32, widht=96)
    with pytest.raises(CnnvitError, match="divisible by heads"):
        build("vit-small-input", 3, image_size=32, width=64, heads=5)


def test_resnet18_small_parameter_count_and_stem() -> None:
    model = build("resnet18-small", num_classes=10)
    assert count_parameters(model) == 11_173_962
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert _out(model, 3, 28) == (2, 10)
    gray = build("resnet18-small", num_classes=8, in_chans=1)
    assert gray.conv1.in_channels == 1 and _out(gray, 1, 28) == (2, 8)


def test_resnet18_torchvision_in_chans() -> None:
    model = build("resnet18", num_classes=7, in_chans=1)
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7)
    assert model.fc.out_features == 7 and _out(model, 1, 32) == (2, 7)
    assert model.cnnvit_weights_report == []


# the same architecture with fewer blocks (quicker to initialise), its family and its parameter
# count for 5 classes and 1 channel: ViT-B/16 with 1 block ≈ 12·768² + patch and position
# embeddings; ViT-S/16 ≈ 12·384² + ...; EfficientNet-B0 = 5.3 M less 995 of its 1000 1280-wide
# classifier rows; Swin-T with 1 block per stage ≈ 11 M
_FAST_PRESETS = {
    "vit_base_patch16_224": ({"depth": 1}, "vit", (7.0e6, 7.6e6)),
    "vit_small_patch16_224": ({"depth": 1}, "vit", (1.7e6, 2.0e6)),
    "efficientnet_b0": ({}, "cnn", (3.9e6, 4.1e6)),
    "swin_tiny_patch4_window7_224": ({"depths": (1, 1, 1, 1)}, "vit", (1.05e7, 1.15e7)),
}


@pytest.mark.parametrize("name", [n for n in PRESETS if n not in
                                  {"resnet18", "resnet18-small", "vit-small-input"}])
def test_timm_presets_forward_small(name: str) -> None:
    fast, fam, (low, high) = _FAST_PRESETS[name]
    torch.manual_seed(0)
    model = build(name, num_classes=5, in_chans=1, image_size=32, **fast)
    assert family(name) == fam and model.cnnvit_family == fam
    assert low < count_parameters(model) < high, count_parameters(model)
    model.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(torch.flip(x, dims=(0,)))
    assert a.shape == (2, 5) and torch.isfinite(a).all()
    assert not torch.allclose(a[0], a[1]) and torch.allclose(b, torch.flip(a, dims=(0,)), atol=1e-5)
    model.train()
    model(x).logsumexp(1).sum().backward()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in (params[0], params[-1]):   # the input conv / patch embedding and the classifier
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_other_timm_and_torchvision_names() -> None:
    assert _out(build("resnet10t", 4, image_size=32), 3, 32) == (2, 4)
    vit = build("timm:vit_tiny_patch16_224", 4, in_chans=2, image_size=32, depth=1)
    assert vit.patch_embed.grid_size == (2, 2) and _out(vit, 2, 32) == (2, 4)
    tv = build("tv:mobilenet_v3_small", 6, in_chans=1, image_size=32)
    assert _out(tv, 1, 32) == (2, 6)


def test_family() -> None:
    cnn = ["resnet18", "resnet18-small", "efficientnet_b0", "resnet10t", "convnext_tiny",
           "tv:resnet50"]
    vit = ["vit-small-input", "vit_base_patch16_224", "vit_small_patch16_224",
           "swin_tiny_patch4_window7_224", "deit_small_patch16_224",
           "vit_tiny_patch16_224.augreg_in21k",
           "tv:vit_b_16", "tv:swin_t"]
    assert {n: family(n) for n in cnn} == dict.fromkeys(cnn, "cnn")
    assert {n: family(n) for n in vit} == dict.fromkeys(vit, "vit")
    assert family(build("resnet18-small", 3)) == "cnn"
    assert family(build("vit-small-input", 3, image_size=8)) == "vit"
    assert build("vit-small-input", 3, image_size=8).cnnvit_family == "vit"


def test_presets() -> None:
    assert set(PRESETS) >= {"resnet18", "resnet18-small", "vit-small-input", "efficientnet_b0",
                            "vit_base_patch16_224", "vit_small_patch16_224",
                            "swin_tiny_patch4_window7_224"}
    for name, text in PRESETS.items():
        assert text and "\n" not in text
        assert family(name) == ("vit" if "vit" in name or "swin" in name else "cnn")


def test_unknown_name_suggests() -> None:
    with pytest.raises(CnnvitError) as err:
        build("vit_smal_patch16_224", 3)
    msg = err.value.message
    assert "resnet18-small" in msg and "vit-small-input" in msg and "timm" in msg
    assert "vit_small_patch16_224" in msg and err.value.code == 2
    with pytest.raises(CnnvitError, match="tv:resnet50"):
        build("tv:resnt50", 3)


def test_bad_arguments() -> None:
    with pytest.raises(CnnvitError, match="num_classes"):
        build("resnet18-small", 0)
    with pytest.raises(CnnvitError, match="no published pretrained weights"):
        build("vit-small-input", 3, image_size=8, pretrained=True)


def test_input_normalization() -> None:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    assert input_normalization("resnet18-small", True) is None
    assert input_normalization("resnet18", False) is None
    assert input_normalization("resnet18", True) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert input_normalization("tv:resnet50", True) == (IMAGENET_DEFAULT_MEAN,
                                                        IMAGENET_DEFAULT_STD)
    assert input_normalization("vit_base_patch16_224", True) == ((0.5,) * 3, (0.5,) * 3)
    assert input_normalization("timm:resnet10t", True) == (IMAGENET_DEFAULT_MEAN,
                                                           IMAGENET_DEFAULT_STD)


# ---------------------------------------------------------------- pretrained, offline

@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything probes the network."""
    def probe(url: str, timeout: float = 3.0) -> bool:
        raise AssertionError(f"network probed: {url}")
    monkeypatch.setattr(hub, "reachable", probe)


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty huggingface_hub and torch.hub caches under tmp_path (returned: the HF cache)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    return tmp_path / "hf"


def test_pretrained_timm_offline_error(monkeypatch: pytest.MonkeyPatch, empty_caches: Path,
                                       no_probe: None) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CnnvitError) as err:
        build("vit_small_patch16_224", 10, pretrained=True)
    assert time.monotonic() - start < 15
    msg = err.value.message
    assert msg.startswith("cannot download pretrained weights for vit_small_patch16_224 (")
    assert "huggingface.co/timm/vit_small_patch16_224" in msg and "no network" in msg
    assert "--weights PATH" in msg and "\n" not in msg and err.value.code == 2


def test_pretrained_timm_unreachable_host_error(monkeypatch: pytest.MonkeyPatch,
                                                empty_caches: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CNNVIT_OFFLINE", raising=False)
    probed: list[str] = []
    monkeypatch.setattr(hub, "reachable", lambda url, timeout=3.0: probed.append(url) or False)
    with pytest.raises(CnnvitError, match="no network"):
        build("resnet10t", 3, pretrained=True)
    assert probed == ["https://huggingface.co/timm/resnet10t.c3_in1k"]


def test_pretrained_timm_download_failure_is_no_network(monkeypatch: pytest.MonkeyPatch,
                                                        empty_caches: Path) -> None:
    # the host "answers" but the download fails: huggingface_hub's own download (as timm calls
    # it) raises at once, as a refused connection would after huggingface_hub's retries
    import timm.models._hub

    def refused(*args: object, **kwargs: object) -> None:
        raise ConnectionError("connection refused")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CNNVIT_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", refused)
    with pytest.raises(CnnvitError) as err:
        build("resnet10t", 3, pretrained=True)
    assert err.value.message.startswith("cannot download pretrained weights for resnet10t (")
    assert "no network" in err.value.message and isinstance(err.value.__cause__, Exception)


def test_pretrained_timm_from_hf_cache_without_network(
        monkeypatch: pytest.MonkeyPatch, empty_caches: Path, no_probe: None) -> None:
    """Weights in huggingface_hub's cache layout are loaded by timm from the file itself."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    published = timm.create_model("resnet10t").state_dict()   # 1000 classes, RGB
    repo = empty_caches / "models--timm--resnet10t.c3_in1k"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    save_file({k: v.contiguous() for k, v in published.items()},
              str(snapshot / "model.safetensors"))
    # no network: HF_HUB_OFFLINE=1 and every connection refused (conftest), no probe (no_probe)
    assert hub.timm_weights("resnet10t").cached == snapshot / "model.safetensors"
    model = build("resnet10t", 4, pretrained=True)
    got = model.state_dict()
    assert got.keys() == published.keys()
    for key, value in published.items():
        if key.startswith("fc."):
            assert got[key].shape[0] == 4              # a new head for 4 classes
        else:
            assert torch.equal(got[key], value), key
    report = model.cnnvit_weights_report
    assert report == ["pretrained weights from https://huggingface.co/timm/resnet10t.c3_in1k "
                      f"(local copy {snapshot / 'model.safetensors'})"]


def _fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loader) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CNNVIT_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))   # nothing cached
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", loader)
    monkeypatch.setattr(hub, "reachable", lambda url, timeout=3.0: True)


def test_pretrained_torchvision_download_error(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    def loader(url: str, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    _fake_hub(monkeypatch, tmp_path, loader)
    with pytest.raises(CnnvitError) as err:
        build("resnet18", 8, pretrained=True)
    msg = err.value.message
    assert msg.startswith("cannot download pretrained weights for resnet18 (https://download."
                          "pytorch.org/models/resnet18-")
    assert "no network" in msg and "--weights PATH" in msg


def test_pretrained_torchvision_offline_env_never_calls_loader(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_probe: None) -> None:
    calls: list[str] = []
    monkeypatch.setenv("CNNVIT_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: calls.append(url))
    with pytest.raises(CnnvitError, match="no network"):
        build("tv:resnet50", 8, pretrained=True)
    assert calls == []


def test_pretrained_torchvision_adapts_head_and_channels(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    import torchvision

    published = torchvision.models.resnet18(weights=None).state_dict()   # 1000 classes, RGB
    _fake_hub(monkeypatch, tmp_path, lambda url, **kw: published)
    model = build("resnet18", 8, in_chans=1, pretrained=True)
    sd = model.state_dict()
    assert torch.allclose(sd["conv1.weight"], published["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(sd["layer4.1.conv2.weight"], published["layer4.1.conv2.weight"])
    assert model.fc.out_features == 8
    report = " ".join(model.cnnvit_weights_report)
    assert "conv1" in report and "fc" in report and "8 classes" in report


# ---------------------------------------------------------------- local weights

def _save_all_formats(sd: dict, tmp_path: Path) -> list[Path]:
    from safetensors.torch import save_file

    plain = tmp_path / "weights.pt"
    torch.save(sd, plain)
    wrapped = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"model": sd, "config": {}})
    return [plain, wrapped, st, ckpt]


def test_local_weights_resnet18_small_all_formats(tmp_path: Path) -> None:
    source = build("resnet18-small", 10)
    sd = source.state_dict()
    for path in _save_all_formats(sd, tmp_path):
        model = build("resnet18-small", 7, in_chans=1, weights=path)
        got = model.state_dict()
        for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.weight"):
            assert torch.equal(got[key], sd[key]), (path.name, key)
        assert torch.allclose(got["conv1.weight"], sd["conv1.weight"].sum(1, keepdim=True))
        assert model.fc.out_features == 7 and _out(model, 1, 28) == (2, 7)
        report = model.cnnvit_weights_report
        assert report[0].startswith("loaded") and str(path) in report[0]
        assert any("fc" in line and "7 classes" in line for line in report)
        assert any("1 channels" in line for line in report)
        assert any("'module.'" in line for line in report) == (path.name == "ddp.pth")


def test_local_weights_same_shape_keeps_head(tmp_path: Path) -> None:
    source = build("resnet18-small", 10)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = build("resnet18-small", 10, weights=tmp_path / "w.pt")
    assert torch.equal(model.fc.weight, source.fc.weight)
    assert model.cnnvit_weights_report == [f"loaded 122/122 tensors from {tmp_path / 'w.pt'}"]


def test_local_weights_vit_pos_embed_resample(tmp_path: Path) -> None:
    source = build("vit-small-input", 10, image_size=28)
    path = tmp_path / "vit.safetensors"
    from safetensors.torch import save_file
    save_file(source.state_dict(), str(path))
    model = build("vit-small-input", 5, image_size=32, weights=path)
    assert model.pos_embed.shape == (1, 65, 64)
    assert torch.equal(model.pos_embed[0, 0], source.pos_embed[0, 0])     # class token kept
    assert torch.equal(model.blocks[3].mlp.fc2.weight, source.blocks[3].mlp.fc2.weight)
    assert torch.equal(model.patch_embed.proj.weight, source.patch_embed.proj.weight)
    assert model.head.out_features == 5 and _out(model, 3, 32) == (2, 5)
    assert any("7×7" in line and "8×8" in line for line in model.cnnvit_weights_report)


def test_local_weights_timm_model(tmp_path: Path) -> None:
    source = build("vit_tiny_patch16_224", 10, image_size=32, depth=2)
    save_checkpoint(tmp_path / "ckpt.pt", {"model": source.state_dict(), "config": {}})
    model = build("vit_tiny_patch16_224", 3, in_chans=1, image_size=48, depth=2,
                  weights=tmp_path / "ckpt.pt")
    assert model.pos_embed.shape[1] == 1 + 9 and model.head.out_features == 3
    assert torch.equal(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert _out(model, 1, 48) == (2, 3)


def test_local_weights_wrong_architecture(tmp_path: Path) -> None:
    torch.save(build("resnet18-small", 10).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(CnnvitError, match="do not fit vit-small-input.*missing keys"):
        build("vit-small-input", 10, image_size=28, weights=tmp_path / "cnn.pt")
    torch.save(build("vit-small-input", 10, image_size=28, width=32).state_dict(),
               tmp_path / "narrow.pt")
    with pytest.raises(CnnvitError, match="shape mismatches"):
        build("vit-small-input", 10, image_size=28, weights=tmp_path / "narrow.pt")


def test_local_weights_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CnnvitError, match="not found"):
        build("resnet18-small", 10, weights=tmp_path / "missing.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CnnvitError, match="no state dict"):
        build("resnet18-small", 10, weights=tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CnnvitError, match="safetensors"):
        build("resnet18-small", 10, weights=tmp_path / "junk.safetensors")


def test_load_weights_function_returns_report(tmp_path: Path) -> None:
    source = build("resnet18-small", 10)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = build("resnet18-small", 4)
    report = load_weights(target, tmp_path / "w.pt", "resnet18-small")
    assert report is target.cnnvit_weights_report and len(report) == 2
    assert torch.equal(target.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


def test_a_patch_grid_that_drops_pixels_is_an_error():
    from cnnvit.errors import CnnvitError
    from cnnvit.models import build

    with pytest.raises(CnnvitError, match=r"16×16 patches and --image-size 30 is not a multiple"
                                          r".*top-left 16×16 pixels.*--image-size 16, 32, 48"):
        build("vit_small_patch16_224", 3, image_size=30)
    with pytest.raises(CnnvitError, match="smaller than one patch"):
        build("vit_small_patch16_224", 3, image_size=8)
    assert build("vit_small_patch16_224", 3, image_size=32).patch_embed.grid_size == (2, 2)
    build("resnet18", 3, image_size=30)  # no patches: any size


def test_an_input_below_the_stated_minimum_warns(caplog):
    import torch.nn as nn

    from cnnvit.models.inputs import warn_below_minimum

    model = nn.Linear(2, 2)
    model.pretrained_cfg = {"min_input_size": (3, 75, 75)}  # e.g. timm's inception_v3
    with caplog.at_level("WARNING", logger="cnnvit.models"):
        assert "use --image-size 75" in warn_below_minimum(model, "inception_v3", 32)
    assert "minimum input of 75×75" in caplog.text
    assert warn_below_minimum(model, "inception_v3", 96) is None


class _Payload:
    """Unpickling this would create a file: the loader must refuse before it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_in_cached_pretrained_weights_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_probe: None) -> None:
    import torchvision

    marker = tmp_path / "PWNED"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = hub.url_cache_path(url)
    cached.parent.mkdir(parents=True)
    torch.save({"conv1.weight": _Payload(marker)}, cached)
    with pytest.raises(CnnvitError) as err:
        build("resnet18", 8, pretrained=True)
    msg = err.value.message
    assert msg.startswith(f"{cached}: contains pickled Python objects") and "\n" not in msg
    assert "will not run code" in msg and "weights_only=False" not in msg
    assert not marker.exists()

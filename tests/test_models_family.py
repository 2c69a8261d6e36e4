"""cnnvit.models.family: "vit" / "cnn" from the model's structure, cheaply and cached for names."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.models import build, family, registry
from cnnvit.models.structure import is_self_attention, is_vit

VIT = ["vit-small-input", "vit_base_patch16_224", "vit_tiny_patch16_224.augreg_in21k",
       "timm:vit_small_patch16_224", "vit_base_r50_s16_224", "vit_small_patch16_18x2_224",
       "deit_small_patch16_224", "deit3_small_patch16_224", "swin_tiny_patch4_window7_224",
       "swinv2_tiny_window8_256", "beit_base_patch16_224", "eva02_tiny_patch14_224",
       "pvt_v2_b0", "davit_tiny", "twins_svt_small", "xcit_tiny_12_p16_224", "tnt_s_patch16_224",
       "tv:vit_b_16", "tv:swin_t", "tv:swin_v2_t", "tv:maxvit_t"]
CNN = ["resnet18", "resnet18-small", "resnet10t", "resnet50_clip", "resnetv2_50x1_bit",
       "efficientnet_b0", "efficientnetv2_rw_s", "convnext_tiny", "convnextv2_atto",
       "regnety_002", "mobilenetv3_small_100", "mobilenetv4_conv_small",
       "mobilenetv4_hybrid_medium", "mobilenetv5_base", "densenet121",
       "tv:resnet50", "tv:convnext_tiny", "tv:efficientnet_b0", "tv:mobilenet_v3_small",
       "tv:regnet_y_400mf"]
# hybrids, as the structural rule decides: most blocks are attention blocks (maxvit, coatnet,
# levit, mobilevit, caformer) or convolution blocks (botnet, efficientformer); no attention
# at all (MLP-Mixer)
HYBRIDS = {"maxvit_tiny_tf_224": "vit", "coatnet_0_rw_224": "vit", "levit_128s": "vit",
           "mobilevit_s": "vit", "tiny_vit_5m_224": "vit", "caformer_s18": "vit",
           "botnet26t_256": "cnn", "efficientformer_l1": "cnn", "mixer_b16_224": "cnn"}


def test_family_of_names() -> None:
    assert {n: family(n) for n in VIT} == dict.fromkeys(VIT, "vit")
    assert {n: family(n) for n in CNN} == dict.fromkeys(CNN, "cnn")
    assert {n: family(n) for n in HYBRIDS} == HYBRIDS


def test_family_of_name_builds_on_meta_once(monkeypatch: pytest.MonkeyPatch) -> None:
    devices: list[torch.device] = []
    build_timm = registry.build_timm

    def spy(*args, **kwargs) -> nn.Module:
        model = build_timm(*args, **kwargs)
        devices.append(next(model.parameters()).device)
        return model

    monkeypatch.setattr(registry, "build_timm", spy)
    registry._family_of.cache_clear()
    start = time.perf_counter()
    assert family("vit_large_patch16_224") == "vit"        # 300 M parameters: on meta, quick
    assert time.perf_counter() - start < 10
    assert family("timm:vit_large_patch16_224.augreg_in21k") == "vit"   # same architecture
    assert devices == [torch.device("meta")]


def test_small_presets_answer_without_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs) -> nn.Module:
        raise AssertionError("built")

    monkeypatch.setattr(registry, "build_timm", fail)
    monkeypatch.setattr(registry, "build_torchvision", fail)
    assert family("resnet18-small") == "cnn" and family("vit-small-input") == "vit"


def test_family_of_unknown_name() -> None:
    with pytest.raises(CnnvitError, match="unknown model"):
        family("not_a_model_at_all")


def test_family_of_built_models() -> None:
    import timm
    import torchvision

    assert build("resnet18-small", 3).cnnvit_family == "cnn"
    assert build("vit-small-input", 3, image_size=8).cnnvit_family == "vit"
    # models that did not come from build(): no cnnvit_family, decided from the structure
    assert family(timm.create_model("vit_tiny_patch16_224", depth=1)) == "vit"
    assert family(timm.create_model("resnet10t")) == "cnn"
    assert family(torchvision.models.VisionTransformer(32, 16, num_layers=1, num_heads=2,
                                                       hidden_dim=32, mlp_dim=64)) == "vit"
    assert family(torchvision.models.resnet18()) == "cnn"


def test_structure_rule_on_plain_modules() -> None:
    layer = nn.TransformerEncoderLayer(32, 4, batch_first=True)
    assert is_self_attention(layer.self_attn) and not is_self_attention(layer.linear1)
    tokens = nn.Sequential(nn.Conv2d(3, 32, 4, 4), nn.Flatten(2), layer,
                           nn.TransformerEncoderLayer(32, 4, batch_first=True))
    assert is_vit(tokens)
    convs = nn.Sequential(*(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU()) for _ in range(3)))
    assert not is_vit(convs)
    # one attention block after three convolution blocks: still a CNN
    assert not is_vit(nn.Sequential(*convs, nn.TransformerEncoderLayer(3, 1)))
    assert not is_vit(nn.Linear(3, 3))

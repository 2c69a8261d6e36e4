"""Grad-CAM / Grad-CAM++ maps, target-layer resolution and the `explain` entry point."""

import pytest
import timm
import torch
import torch.nn as nn

from cnnvit.errors import CnnvitError
from cnnvit.explain import cam_maps, explain, target_layer
from cnnvit.models import build
from tests.maps_checks import check_maps, square_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build("resnet18-small", 3, in_chans=3, image_size=28)


@pytest.fixture(scope="module")
def effnet():
    torch.manual_seed(0)
    return timm.create_model("efficientnet_b0", num_classes=3)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_map_checks_reject_constant_and_input_independent_maps():
    """The checks below can fail: all-zero maps (what a constant map normalises to), one
    all-zero map among varied ones, and the same or nearly the same map for two different
    images are all rejected."""
    varied = square_images(2, 1, 16)[:, 0].clamp(0, 1)
    check_maps(varied, 2, 16, 16)
    nudged = (varied[0] + 1e-3 * torch.rand(16, 16, generator=torch.Generator().manual_seed(0)))
    for bad in (torch.zeros(2, 16, 16), torch.stack([varied[0], torch.zeros(16, 16)]),
                varied[:1].expand(2, 16, 16), torch.stack([varied[0], nudged.clamp(0, 1)])):
        with pytest.raises(AssertionError):
            check_maps(bad, 2, 16, 16)


def test_default_target_layers(resnet, vit28, effnet):
    tv = build("resnet18", 3)
    assert target_layer(tv) is tv.layer4[-1]
    assert target_layer(resnet) is resnet.layer4[-1]
    assert target_layer(resnet, image_size=28) is resnet.layer4[-1]  # 4×4 at 28 px
    assert target_layer(resnet, image_size=8) is resnet.layer2[-1]  # layer4 would be 1×1
    timm_resnet = timm.create_model("resnet10t", num_classes=3)
    assert target_layer(timm_resnet) is timm_resnet.layer4[-1]
    assert target_layer(effnet) is effnet.conv_head
    tiny = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    assert target_layer(tiny) is tiny[2]
    assert target_layer(vit28) is vit28.blocks[-1].norm1
    mobilenet = timm.create_model("mobilenetv3_small_100", num_classes=3)  # conv_head after pool
    assert target_layer(mobilenet) is mobilenet.blocks[-1]


def test_layer_override_and_bad_name(resnet):
    assert target_layer(resnet, "layer3.1") is resnet.layer3[1]
    with pytest.raises(CnnvitError, match=r"no layer 'layer3\.7'.*Did you mean: layer3"):
        target_layer(resnet, "layer3.7")
    with pytest.raises(CnnvitError, match="top level: conv1, bn1"):
        target_layer(resnet, "nonsense")
    with pytest.raises(CnnvitError, match="no Conv2d"):
        target_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


@pytest.mark.parametrize("chans", [3, 1])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cnn_maps(chans, method):
    torch.manual_seed(0)
    model = build("resnet18-small", 3, in_chans=chans, image_size=28)
    check_maps(cam_maps(model, square_images(2, chans, 28), [0, 2], method), 2, 28, 28)


@pytest.mark.parametrize("size", [28, 8])
def test_vit_gradcam_maps(size):
    torch.manual_seed(0)
    model = build("vit-small-input", 3, image_size=size)
    maps, used = explain(model, square_images(2, 3, size), "vit-gradcam", targets=[1, 2])
    assert used == "vit-gradcam"
    check_maps(maps, 2, size, size)


def test_register_token_vit_gradcam():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", reg_tokens=4, img_size=32, patch_size=4,
                              depth=2, embed_dim=64, num_heads=2, num_classes=3)
    check_maps(cam_maps(model, square_images(2, 3, 32)), 2, 32, 32)


def test_swin_uses_feature_info_and_channels_last():
    torch.manual_seed(0)
    swin = timm.models.SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=16,
                                       depths=(1, 1), num_heads=(1, 2), num_classes=3)
    assert target_layer(swin) is swin.layers[-1]
    maps, used = explain(swin, square_images(2, 3, 32))
    assert used == "gradcam"
    check_maps(maps, 2, 32, 32)
    with pytest.raises(CnnvitError, match="timm Attention"):
        explain(swin, torch.randn(1, 3, 32, 32), "rollout")


def test_efficientnet_maps(effnet):
    # 128 px: conv_head (stride 32) is 4×4, the smallest side target_layer accepts for ResNets
    check_maps(cam_maps(effnet, square_images(2, 3, 128)), 2, 128, 128)


def test_efficientnet_maps_at_32px_fall_back_to_a_larger_stage(effnet):
    # conv_head is 1×1 at 32 px: a map there is constant; an earlier stage is at least 4×4
    check_maps(cam_maps(effnet, square_images(2, 3, 32)), 2, 32, 32)
    assert target_layer(effnet, image_size=32) is not effnet.conv_head
    assert target_layer(effnet, image_size=128) is effnet.conv_head


def test_batching_targets_and_layer(resnet):
    x = square_images(3, 3, 28)
    whole = cam_maps(resnet, x, targets=[0, 1, 2])
    check_maps(whole, 3, 28, 28)
    torch.testing.assert_close(cam_maps(resnet, x, targets=[0, 1, 2], batch_size=2), whole)
    predicted = resnet.eval()(x).argmax(1)
    torch.testing.assert_close(cam_maps(resnet, x), cam_maps(resnet, x, targets=predicted))
    check_maps(cam_maps(resnet, x, layer="layer3"), 3, 28, 28)


def test_model_state_hooks_and_grads_untouched(resnet):
    resnet.train()
    resnet.layer1.eval()  # a mixed state must survive too
    for p in resnet.layer1.parameters():
        p.requires_grad_(False)
    resnet.fc.weight.grad = torch.ones_like(resnet.fc.weight)
    modes = [m.training for m in resnet.modules()]
    flags = [p.requires_grad for p in resnet.parameters()]
    stats = resnet.bn1.running_mean.clone()
    cam_maps(resnet, torch.randn(2, 3, 28, 28))
    assert [m.training for m in resnet.modules()] == modes
    assert [p.requires_grad for p in resnet.parameters()] == flags
    assert torch.equal(resnet.fc.weight.grad, torch.ones_like(resnet.fc.weight))
    assert all(p.grad is None for n, p in resnet.named_parameters() if n != "fc.weight")
    assert torch.equal(resnet.bn1.running_mean, stats)  # ran in eval mode
    assert _hooks(resnet) == 0
    resnet.fc.weight.grad = None
    for p in resnet.parameters():
        p.requires_grad_(True)
    resnet.eval()


def test_hooks_released_for_vit_and_under_no_grad(vit28):
    with torch.no_grad():
        check_maps(cam_maps(vit28, square_images(2, 3, 28)), 2, 28, 28)
    assert _hooks(vit28) == 0


def test_explain_dispatch(resnet, vit28):
    x = square_images(2, 3, 28)
    for method, expected in (("auto", "gradcam"), ("gradcam++", "gradcam++")):
        maps, used = explain(resnet, x, method)
        assert used == expected
        check_maps(maps, 2, 28, 28)
    maps, used = explain(vit28, x)
    assert used == "relevance"
    check_maps(maps, 2, 28, 28)
    maps, used = explain(vit28, x, "rollout", head_fusion="max")
    assert used == "rollout"
    check_maps(maps, 2, 28, 28)
    for method in ("rollout", "relevance", "vit-gradcam"):
        with pytest.raises(CnnvitError, match="needs a Vision Transformer"):
            explain(resnet, x, method)
    with pytest.raises(CnnvitError, match="unknown explanation method"):
        explain(resnet, x, "lime")
    with pytest.raises(CnnvitError, match="one target class per image"):
        explain(resnet, x, targets=[0])
    with pytest.raises(CnnvitError, match="target class index"):
        explain(resnet, x, targets=[0, 7])
    assert _hooks(resnet) == 0

"""Attention rollout: token layout, captured attention, row-stochastic matrices, maps."""

import pytest
import timm
import torch

from cnnvit.errors import CnnvitError
from cnnvit.explain import attention_rollout, capture_attention, rollout_matrices, token_layout
from cnnvit.models import build
from tests.maps_checks import check_maps, square_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reg_vit():
    torch.manual_seed(0)
    return timm.create_model("vit_small_patch16_224", reg_tokens=4, img_size=32, patch_size=4,
                             depth=2, embed_dim=64, num_heads=2, num_classes=3)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_token_layout_from_the_model(vit28, reg_vit):
    assert token_layout(vit28) == (7, 7, 1)  # 4×4 patches on 28 px
    assert token_layout(build("vit-small-input", 2, image_size=8)) == (4, 4, 1)  # 2×2 on 8 px
    assert token_layout(timm.create_model("vit_tiny_patch16_224", num_classes=2)) == (14, 14, 1)
    assert token_layout(reg_vit) == (8, 8, 5)  # class token + 4 registers
    torch.manual_seed(0)
    dynamic = timm.models.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1,
                                            num_heads=2, dynamic_img_size=True)
    assert token_layout(dynamic, (24, 32)) == (6, 8, 1)
    check_maps(attention_rollout(dynamic, square_images(2, 3, 24, 32)), 2, 24, 32)
    with pytest.raises(CnnvitError, match="patch_embed"):
        token_layout(build("resnet18-small", 2))


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.9])
def test_rollout_matrices_are_row_stochastic(vit28, fusion, discard):
    x = torch.randn(2, 3, 28, 28)
    blocks, rollout = rollout_matrices(vit28, x, head_fusion=fusion, discard_ratio=discard)
    assert len(blocks) == 4 and rollout.shape == (2, 50, 50)
    for mat in [*blocks, rollout]:
        assert (mat >= 0).all()
        torch.testing.assert_close(mat.sum(-1), torch.ones(2, 50))


def test_discard_keeps_class_token_weights(vit28):
    x = torch.randn(1, 3, 28, 28)
    blocks, _ = rollout_matrices(vit28, x, discard_ratio=0.95)
    kept, _ = rollout_matrices(vit28, x)
    assert (blocks[0][0, 0] > 0).all() and (blocks[0][0, :, 0] > 0).all()
    patch = blocks[0][0, 1:, 1:] - torch.diag(torch.diag(blocks[0][0, 1:, 1:]))
    assert (patch == 0).float().mean() > 0.9 > (kept[0][0, 1:, 1:] == 0).float().mean()


def test_rollout_matches_hand_computation():
    """Depth-2 ViT with 1-px patches on 8 px: no upsampling, attention recomputed from qkv."""
    torch.manual_seed(1)
    model = build("vit-small-input", 2, image_size=8, patch_size=1, depth=2).eval()
    x = torch.randn(1, 3, 8, 8)
    inputs = []
    handles = [b.attn.register_forward_pre_hook(lambda _m, a: inputs.append(a[0]))
               for b in model.blocks]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    expected = torch.eye(65, dtype=torch.float64)
    for block, tokens in zip(model.blocks, inputs, strict=True):
        attn = block.attn
        q, k, _ = attn.qkv(tokens).reshape(1, 65, 3, 4, 16).permute(2, 0, 3, 1, 4).double()
        probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1).mean(1)[0]
        expected = ((probs + torch.eye(65, dtype=torch.float64)) / 2) @ expected
    flow = expected[0, 1:]
    flow = ((flow - flow.min()) / (flow.max() - flow.min())).reshape(8, 8).float()
    torch.testing.assert_close(attention_rollout(model, x)[0], flow, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("size", "chans"), [(28, 3), (8, 3), (28, 1)])
def test_rollout_maps_shape_and_range(size, chans):
    torch.manual_seed(0)
    model = build("vit-small-input", 3, in_chans=chans, image_size=size)
    check_maps(attention_rollout(model, square_images(3, chans, size)), 3, size, size)


def test_head_fusions_differ(vit28):
    x = square_images(2, 3, 28)
    maps = {f: attention_rollout(vit28, x, head_fusion=f) for f in ("mean", "max", "min")}
    for fused in maps.values():
        check_maps(fused, 2, 28, 28)
    assert not torch.allclose(maps["mean"], maps["max"])
    assert not torch.allclose(maps["mean"], maps["min"])
    assert not torch.allclose(maps["max"], maps["min"])


def test_register_tokens_are_dropped(reg_vit):
    x = square_images(2, 3, 32)
    _, rollout = rollout_matrices(reg_vit, x)
    assert rollout.shape == (2, 5 + 64, 5 + 64)
    check_maps(attention_rollout(reg_vit, x, batch_size=1), 2, 32, 32)


def test_model_without_class_token_uses_mean_row():
    torch.manual_seed(0)
    model = timm.models.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2,
                                          num_heads=2, class_token=False, global_pool="avg",
                                          num_classes=3)
    assert token_layout(model) == (4, 4, 0)
    x = square_images(2, 3, 16)
    maps = attention_rollout(model, x)
    check_maps(maps, 2, 16, 16)
    _, rollout = rollout_matrices(model, x)
    flow = rollout.mean(1).reshape(2, 1, 4, 4)
    expected = torch.nn.functional.interpolate(flow, size=(16, 16), mode="bilinear")[:, 0]
    lo = expected.amin((1, 2), keepdim=True)
    expected = (expected - lo) / (expected.amax((1, 2), keepdim=True) - lo)
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-4)


def test_state_restored_even_on_error(vit28):
    vit28.train()
    flags = [b.attn.fused_attn for b in vit28.blocks]
    attention_rollout(vit28, torch.randn(1, 3, 28, 28))
    assert all(m.training for m in vit28.modules()) and _hooks(vit28) == 0
    assert [b.attn.fused_attn for b in vit28.blocks] == flags
    with pytest.raises(RuntimeError, match="boom"), capture_attention(vit28):
        assert not any(b.attn.fused_attn for b in vit28.blocks) and _hooks(vit28) == 4
        raise RuntimeError("boom")
    assert [b.attn.fused_attn for b in vit28.blocks] == flags and _hooks(vit28) == 0
    vit28.eval()


def test_rollout_rejects_bad_input(vit28):
    with pytest.raises(CnnvitError, match="head_fusion"):
        attention_rollout(vit28, torch.randn(1, 3, 28, 28), head_fusion="median")
    with pytest.raises(CnnvitError, match="discard_ratio"):
        attention_rollout(vit28, torch.randn(1, 3, 28, 28), discard_ratio=1.0)
    with pytest.raises(CnnvitError, match="not a ViT"):
        attention_rollout(build("resnet18-small", 2), torch.randn(1, 3, 28, 28))
    with pytest.raises(CnnvitError, match="built for 28×28 px inputs, got 32×32"):
        attention_rollout(vit28, torch.randn(1, 3, 32, 32))

"""Gradient-weighted attention relevance (Chefer et al. 2021): maps, class specificity, a
hand computation, timm ViTs (registers, average pooling) and the method choice per family."""

import pytest
import timm
import torch
import torch.nn.functional as F

from cnnvit.errors import CnnvitError
from cnnvit.explain import explain, relevance_maps, relevance_matrices, token_layout
from cnnvit.explain.rollout import token_maps
from cnnvit.explain.stage import _method_for
from cnnvit.models import build
from tests.maps_checks import check_maps, square_images

pytestmark = pytest.mark.usefixtures("one_thread")


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def tiny_timm():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             num_classes=3)


def _direct_relevance(model, image, target):
    """One image, written out: a manual forward through the ViT in float64 that recomputes
    each block's attention probabilities from its qkv projection, the gradient of the target
    logit with respect to them, and R ← R + mean_h((∇A ⊙ A)⁺) R from R = I; the class token's
    row."""
    model = model.double()
    tokens = model.norm_pre(model._pos_embed(model.patch_embed(image[None].double())))
    leaves = []
    for block in model.blocks:
        attn = block.attn
        n, t, c = tokens.shape
        qkv = attn.qkv(block.norm1(tokens)).reshape(n, t, 3, attn.num_heads, c // attn.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)
        leaves.append(probs)
        mixed = (probs @ v).transpose(1, 2).reshape(n, t, c)
        tokens = tokens + attn.proj(mixed)
        tokens = tokens + block.mlp(block.norm2(tokens))
    logit = model.head(model.fc_norm(model.norm(tokens)[:, 0]))[0, target]
    grads = torch.autograd.grad(logit, leaves)
    relevance = torch.eye(tokens.shape[1], dtype=torch.float64)
    for probs, grad in zip(leaves, grads, strict=True):
        relevance = relevance + (grad * probs.detach()).clamp(min=0).mean(1)[0] @ relevance
    model.float()
    return relevance[0, 1:].detach()


def test_matches_a_direct_single_image_computation():
    """Depth-2 ViT, 1-px patches on 8 px (no upsampling), three images in batches of two."""
    torch.manual_seed(1)
    model = build("vit-small-input", 3, image_size=8, patch_size=1, depth=2).eval()
    x = torch.randn(3, 3, 8, 8)
    targets = [0, 2, 1]
    maps = relevance_maps(model, x, targets, batch_size=2)
    for i, target in enumerate(targets):
        flow = _direct_relevance(model, x[i], target)
        expected = ((flow - flow.min()) / (flow.max() - flow.min())).reshape(8, 8).float()
        torch.testing.assert_close(maps[i], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("size", "chans"), [(28, 3), (8, 3), (28, 1)])
def test_maps_shape_and_range(size, chans):
    torch.manual_seed(0)
    model = build("vit-small-input", 3, in_chans=chans, image_size=size)
    check_maps(relevance_maps(model, square_images(3, chans, size)), 3, size, size)


def test_class_specific_and_predicted_by_default(vit28):
    x = square_images(3, 3, 28)
    zero, two = relevance_maps(vit28, x, [0, 0, 0]), relevance_maps(vit28, x, [2, 2, 2])
    for a, b in zip(zero, two, strict=True):
        assert (a - b).abs().mean() > 0.05
    predicted = vit28.eval()(x).argmax(1)
    torch.testing.assert_close(relevance_maps(vit28, x), relevance_maps(vit28, x, predicted))
    maps, used = explain(vit28, x, "relevance", targets=[0, 0, 0])
    assert used == "relevance"
    torch.testing.assert_close(maps, zero)


def test_timm_vit(tiny_timm):
    x = square_images(3, 3, 32)
    check_maps(relevance_maps(tiny_timm, x, batch_size=2), 3, 32, 32)
    maps, used = explain(tiny_timm, x)
    assert used == "relevance"
    check_maps(maps, 3, 32, 32)


def test_register_tokens_and_average_pooling():
    """Registers are prefix tokens; a model that pools its patch tokens (with or without a
    class token) is read through the mean of the patch-token rows."""
    torch.manual_seed(0)
    reg = timm.create_model("vit_small_patch16_224", reg_tokens=4, img_size=32, patch_size=4,
                            depth=2, embed_dim=64, num_heads=2, num_classes=3)
    x = square_images(2, 3, 32)
    assert relevance_matrices(reg, x).shape == (2, 5 + 64, 5 + 64)
    check_maps(relevance_maps(reg, x), 2, 32, 32)
    for class_token in (False, True):
        avg = timm.models.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2,
                                            num_heads=2, class_token=class_token,
                                            global_pool="avg", num_classes=3)
        x = square_images(2, 3, 16)
        prefix = token_layout(avg)[2]
        matrices = relevance_matrices(avg, x)
        flow = matrices[:, prefix:, prefix:].mean(1).reshape(2, 1, 4, 4)
        expected = F.interpolate(flow, size=(16, 16), mode="bilinear")[:, 0]
        torch.testing.assert_close(token_maps(avg, matrices, (16, 16)), expected)
        check_maps(relevance_maps(avg, x), 2, 16, 16)


def test_state_hooks_and_grads_untouched(vit28):
    vit28.train()
    vit28.head.weight.grad = torch.ones_like(vit28.head.weight)
    flags = [b.attn.fused_attn for b in vit28.blocks]
    with torch.no_grad():
        check_maps(relevance_maps(vit28, square_images(2, 3, 28)), 2, 28, 28)
    assert all(m.training for m in vit28.modules()) and _hooks(vit28) == 0
    assert [b.attn.fused_attn for b in vit28.blocks] == flags
    assert all(p.requires_grad for p in vit28.parameters())
    assert torch.equal(vit28.head.weight.grad, torch.ones_like(vit28.head.weight))
    assert all(p.grad is None for n, p in vit28.named_parameters() if n != "head.weight")
    vit28.head.weight.grad = None
    vit28.eval()


def test_rejects_bad_input(vit28):
    with pytest.raises(CnnvitError, match="beyond the model's 3 outputs"):
        relevance_maps(vit28, torch.randn(2, 3, 28, 28), [0, 3])
    with pytest.raises(CnnvitError, match="one target class per image"):
        relevance_maps(vit28, torch.randn(2, 3, 28, 28), [0])
    with pytest.raises(CnnvitError, match="built for 28×28 px inputs, got 32×32"):
        relevance_maps(vit28, torch.randn(1, 3, 32, 32))
    with pytest.raises(CnnvitError, match="needs a Vision Transformer"):
        explain(build("resnet18-small", 2), torch.randn(1, 3, 28, 28), "relevance")
    assert _hooks(vit28) == 0


@pytest.mark.parametrize(("requested", "cnn", "vit"), [
    ("auto", "gradcam", "relevance"), ("relevance", "gradcam", "relevance"),
    ("rollout", "gradcam", "rollout"), ("vit-gradcam", "gradcam", "vit-gradcam"),
    ("gradcam", "gradcam", "vit-gradcam"), ("gradcam++", "gradcam++", "vit-gradcam"),
])
def test_method_per_family(requested, cnn, vit):
    assert _method_for(requested, "cnn") == cnn
    assert _method_for(requested, "vit") == vit

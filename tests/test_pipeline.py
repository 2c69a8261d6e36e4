import numpy as np
import pytest
import torch

from cnnvit.config import Config
from cnnvit.data.pipeline import BatchPipeline, channel_stats, resize_uint8
from cnnvit.data.types import Split


def _split(n=20, size=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, size, size, c), dtype=np.uint8), np.arange(n) % 4)


def test_channel_stats_match_numpy():
    s = _split(c=3)
    mean, std = channel_stats(s)
    x = s.images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), atol=1e-5)


def test_eval_batches_are_in_order_and_normalised():
    s = _split()
    pipe = BatchPipeline(s, device=torch.device("cpu"), image_size=8, mean=[0.5] * 3,
                         std=[0.25] * 3)
    xs, ys = zip(*pipe.batches(6), strict=True)
    assert [len(y) for y in ys] == [6, 6, 6, 2]
    assert torch.equal(torch.cat(ys), torch.from_numpy(s.labels))
    x = torch.cat(xs)
    ref = (torch.from_numpy(s.images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x, ref)


def test_resize_is_cached_once_and_pad_mode():
    s = _split(size=8)
    pipe = BatchPipeline(s, device=torch.device("cpu"), image_size=16, mean=[0] * 3,
                         std=[1] * 3, resize_mode="nearest")
    assert pipe.cached and pipe.images.shape == (20, 3, 16, 16) and pipe.images.dtype == torch.uint8
    x = torch.from_numpy(s.images).permute(0, 3, 1, 2)
    assert torch.equal(pipe.images[:, :, ::2, ::2], x)
    padded = resize_uint8(x, 12, "pad")
    assert torch.equal(padded[:, :, 2:10, 2:10], x) and padded[:, :, :2].sum() == 0
    uncached = BatchPipeline(s, device=torch.device("cpu"), image_size=16, mean=[0] * 3,
                             std=[1] * 3, resize_mode="nearest", cache_bytes=0)
    assert not uncached.cached
    torch.testing.assert_close(next(uncached.batches(20))[0], next(pipe.batches(20))[0])


def test_training_batches_permute_and_augment_reproducibly():
    s = _split(n=64)
    aug = Config(hflip=True, crop_padding=2, random_erasing=0.5)
    pipe = BatchPipeline(s, device=torch.device("cpu"), image_size=8, mean=[0] * 3,
                         std=[1] * 3, augment=aug)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return [(x.clone(), y.clone()) for x, y in pipe.batches(16, gen, drop_last=True)]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b,
                                                                                       strict=True))
    assert not torch.equal(a[0][1], c[0][1])
    labels = torch.cat([y for _, y in a])
    assert sorted(labels.tolist()) == sorted(s.labels.tolist())  # a permutation, all images


def test_flip_and_crop_are_per_image_and_preserve_content():
    img = np.zeros((32, 6, 6, 1), dtype=np.uint8)
    img[:, 2:4, 1, 0] = 255  # a vertical bar left of centre
    s = Split(img, np.zeros(32))
    pipe = BatchPipeline(s, device=torch.device("cpu"), image_size=6, mean=[0], std=[1],
                         augment=Config(hflip=True))
    x, _ = next(pipe.batches(32, torch.Generator().manual_seed(0)))
    cols = x[:, 0].sum(1).argmax(1)
    assert set(cols.tolist()) == {1, 4}  # each image flipped or not, independently
    crop = BatchPipeline(s, device=torch.device("cpu"), image_size=6, mean=[0], std=[1],
                         augment=Config(crop_padding=2))
    x, _ = next(crop.batches(32, torch.Generator().manual_seed(0)))
    assert x.shape == (32, 1, 6, 6)
    sums = x.sum(dim=(1, 2, 3))
    assert (sums <= 2).all() and (sums > 0).any() and len(set(sums.tolist())) > 1


@pytest.mark.parametrize("aug", [Config(autoaugment="cifar10"), Config(randaugment_n=2)])
def test_policy_augmentations_run_on_batches(aug):
    rng = np.random.default_rng(0)
    s = Split(rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), np.arange(40))  # unique
    kwargs = {"device": torch.device("cpu"), "image_size": 16, "mean": [0] * 3, "std": [1] * 3}
    pipe = BatchPipeline(s, augment=aug, **kwargs)
    plain = BatchPipeline(s, **kwargs)  # no augmentation: the generator only draws the order
    x1, y1 = next(pipe.batches(40, torch.Generator().manual_seed(3)))
    x2, _ = next(pipe.batches(40, torch.Generator().manual_seed(3)))
    x0, y0 = next(plain.batches(40, torch.Generator().manual_seed(3)))
    assert x1.shape == x0.shape == (40, 3, 16, 16) and torch.isfinite(x1).all()
    torch.testing.assert_close(x1, x2)  # reproducible from the generator's seed
    # same permutation, labels untouched: the labels are unique, so this pins every image
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    assert torch.equal(y1, y0) and torch.equal(y1, torch.from_numpy(s.labels)[perm])
    assert y1.dtype == torch.int64
    # ... and the images were changed by the policy (not passed through)
    changed = (x1 != x0).flatten(1).any(1)
    assert changed.any(), "the augmentation policy left every image unchanged"
    assert (x1 - x0).abs().mean() > 0.01


def test_policy_ops_are_chosen_on_the_host_per_batch_without_reading_the_generator():
    # AutoAugment/RandAugment choose their ops from a seed the host knows (the generator's
    # seed and the batch number): no value is read from the (CUDA) generator's device
    rng = np.random.default_rng(0)
    s = Split(rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), np.arange(32))
    pipe = BatchPipeline(s, device=torch.device("cpu"), image_size=16, mean=[0] * 3,
                         std=[1] * 3, augment=Config(randaugment_n=2))
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    first, again = (pipe.prepare(pipe.images, gen, step=0) for _ in range(2))
    assert torch.equal(gen.get_state(), state)  # the policy drew nothing from it
    torch.testing.assert_close(first, again)
    assert not torch.equal(pipe.prepare(pipe.images, gen, step=1), first)

"""The CIFAR-10-C / ImageNet-C corruptions of `cnnvit.robustness.imagenet_c`: interface, seeds,
severity ordering, and agreement with the reference package `imagecorruptions` (1.1.2)."""

import functools
import importlib
import sys
import types

import numpy as np
import pytest
import torch

from cnnvit.robustness import imagenet_c as ic

DETERMINISTIC = ("defocus_blur", "motion_blur", "contrast", "brightness", "pixelate",
                 "jpeg_compression")
NOISE = ("gaussian_noise", "shot_noise", "impulse_noise")
RANDOM = (*NOISE, "motion_blur")
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
# ImageNet-C's parameters (those of `imagecorruptions`), used at any size with `params=`
IMAGENET = {name: ic.parameters(name, 224) for name in ic.NAMES}


def reference():
    """`imagecorruptions`, imported with a stand-in `pkg_resources` where setuptools has none
    (it imports `resource_filename`, used only by `frost`, which is not tested here)."""
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        stub = types.ModuleType("pkg_resources")
        setattr(stub, "resource_filename", lambda package, name: name)  # noqa: B010
        sys.modules["pkg_resources"] = stub
    return importlib.import_module("imagecorruptions")


def natural(n: int, size: int, seed: int, channels: int = 3) -> np.ndarray:
    """`n` natural-looking uint8 N×H×W×C images: smooth colour gradients, a bright disk (a sharp
    edge), texture of random waves at several scales and orientations, and fine noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        angle = rng.uniform(0, 2 * np.pi, channels)
        ramp = xx[..., None] * np.cos(angle) + yy[..., None] * np.sin(angle)
        image = 0.4 + 0.3 * ramp
        cy, cx, r = rng.uniform(0.3, 0.7, 3) * [1, 1, 0.5]
        image += 0.2 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r ** 2)[..., None]
        for freq in (2, 5, 11, 23):
            theta, phase = rng.uniform(0, 2 * np.pi, 2)
            wave = np.sin(freq * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
            image += 0.25 / freq ** 0.7 * wave[..., None] * rng.uniform(0.5, 1, channels)
        image += rng.normal(0, 0.02, image.shape)
        images.append(np.clip(image * 255, 0, 255).astype(np.uint8))
    return np.stack(images)


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def digits(n: int = 48) -> torch.Tensor:
    """scikit-learn's 8×8 digits (0–16) as uint8 grey N×1×8×8 images."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(np.round(load_digits().images[:n] * 255 / 16).astype(np.uint8))[:, None]


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def psnr(corrupted: torch.Tensor, clean: torch.Tensor) -> float:
    """PSNR (dB) of a batch against its clean images (MSE over every value of the batch)."""
    mse = ((corrupted.double() - clean.double()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
def test_severity_zero_identity_and_output_format(device: str, channels: int) -> None:
    x = nchw(natural(3, 24, 0, channels)).to(device)
    for name in ic.NAMES:
        assert torch.equal(ic.corrupt(x, name, 0, gen(0, device)), x), name
        for severity in (1, 5):
            y = ic.corrupt(x, name, severity, gen(0, device))
            assert (y.shape, y.dtype, y.device) == (x.shape, torch.uint8, x.device), name
            assert not torch.equal(y, x), (name, severity)


@pytest.mark.parametrize("device", DEVICES)
def test_seeds(device: str) -> None:
    x = nchw(natural(4, 32, 1)).to(device)
    for name in ic.NAMES:
        first = ic.corrupt(x, name, 3, gen(7, device))
        assert torch.equal(first, ic.corrupt(x, name, 3, gen(7, device))), name
        if name in RANDOM:
            assert not torch.equal(first, ic.corrupt(x, name, 3, gen(8, device))), name


def test_bad_arguments() -> None:
    x = nchw(natural(1, 16, 0))
    with pytest.raises(ValueError, match="unknown corruption"):
        ic.corrupt(x, "fog", 1, gen(0))
    with pytest.raises(ValueError, match="unknown corruption"):
        ic.parameters("glass_blur", 32)
    for severity in (-1, 6, 1.5):
        with pytest.raises(ValueError, match="severity"):
            ic.corrupt(x, "contrast", severity, gen(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint8"):
        ic.corrupt(x.float(), "contrast", 1, gen(0))


def test_tables() -> None:
    assert set(ic.NAMES) == set(ic.FAMILY) and len(ic.NAMES) == 9
    assert {ic.FAMILY[n] for n in NOISE} == {"noise"}
    for name in ic.NAMES:
        cifar, imagenet = ic.parameters(name, 64), ic.parameters(name, 65)
        assert len(cifar) == len(imagenet) == 5 and cifar != imagenet, name
        assert ic.parameters(name, 8) == cifar and ic.parameters(name, 224) == imagenet


def test_grey_is_rgb_channel_by_channel() -> None:
    """A grey image goes through the same definitions as an RGB image of three equal channels
    (JPEG too: a YCbCr JPEG of a grey image has flat chroma and decodes to the 1-channel one)."""
    grey = nchw(natural(4, 32, 2, channels=1))
    rgb = grey.expand(-1, 3, -1, -1).contiguous()
    for name in DETERMINISTIC:
        for severity in (1, 5):
            g = ic.corrupt(grey, name, severity, gen(3))
            c = ic.corrupt(rgb, name, severity, gen(3))
            assert torch.equal(c, g.expand_as(c)), (name, severity)


# Where PSNR legitimately rises with severity, and why (the check skips only that step).
KNOWN_NON_MONOTONE = {
    # At 8 px CIFAR-10-C's factors give 7, 7, 6, 6 and 5 px. Box-downscaling 8 → 6 merges
    # pixels 1–2 and 5–6 of each axis, 8 → 5 merges 0–1, 3–4 and 6–7: the digits' strokes run
    # through pixels 1–2 and 5–6 while pixels 0 and 7 are mostly background, so severity 5
    # loses less of a digit than severities 3–4. (On smooth 8 px images the order holds.)
    ("digits", "pixelate"): 4,
}


@pytest.mark.parametrize("images", ["digits", "smooth8", "natural32", "grey64", "natural96"])
def test_psnr_falls_with_severity(images: str) -> None:
    x = {"digits": digits, "smooth8": lambda: nchw(natural(24, 8, 4, channels=1)),
         "natural32": lambda: nchw(natural(12, 32, 5)),
         "grey64": lambda: nchw(natural(6, 64, 6, channels=1)),
         "natural96": lambda: nchw(natural(3, 96, 7))}[images]()
    for name in ic.NAMES:
        # one seed for all severities: the same noise draws and blur angles, scaled
        scores = [psnr(ic.corrupt(x, name, s, gen(11)), x) for s in range(1, 6)]
        skipped = KNOWN_NON_MONOTONE.get((images, name))
        for step in range(1, 5):
            if step != skipped:
                assert scores[step] <= scores[step - 1] + 1e-9, (name, scores)
        assert scores[4] < scores[0], (name, scores)


def test_known_ties() -> None:
    """Equal severities in CIFAR-10-C's tables: at 8 px, pixelate's severities 1–2 (7 px) and
    3–4 (6 px), the sizes behind KNOWN_NON_MONOTONE; at any size, motion blur's severities 3
    and 4 (radius 6 or 8 px at sigma 2: the taps past 6 px weigh < 1e-8)."""
    x = digits()
    same = [torch.equal(ic.corrupt(x, "pixelate", s, gen(0)),
                        ic.corrupt(x, "pixelate", s + 1, gen(0))) for s in range(1, 5)]
    assert same == [True, False, True, False]
    x = nchw(natural(8, 32, 9))
    same = [torch.equal(ic.corrupt(x, "motion_blur", s, gen(0)),
                        ic.corrupt(x, "motion_blur", s + 1, gen(0))) for s in range(1, 5)]
    assert same == [False, False, True, False]


# Agreement with imagecorruptions, ImageNet-C parameters, on 32, 64 and 96 px RGB images (at 96
# px without `params=`: `parameters` must pick ImageNet-C's there). Deterministic corruptions:
# mean |difference| at most 0.1 grey level and no value off by more than 1 level (JPEG: mean
# only; two builds of libjpeg may round differently). The reference truncates float64 results
# (`np.uint8`); values that are whole numbers there can come out a hair below and lose a level,
# where this implementation keeps them (measured: at most 0.05 levels on average, brightness at
# severity 2; defocus blur at severity 1, whose kernel averages 29 pixels, 0.035). Neighbouring
# severities are 1.8–17 levels apart on average.
MAX_MEAN_GAP, MAX_GAP = 0.1, 1


@pytest.fixture
def numpy_global_rng():
    """The reference draws from numpy's global generator: seeded in the test, restored after."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def reference_batch(images: np.ndarray, name: str, severity: int) -> np.ndarray:
    return np.stack([reference().corrupt(im, severity, name) for im in images])


def motion_blur_pair(images: np.ndarray, severity: int, params: tuple
                     ) -> tuple[torch.Tensor, np.ndarray]:
    """Ours and the reference's motion blur of `images` along the same angles: the reference's
    one random draw, replayed from the seed of its global numpy generator."""
    seeds = [100 * severity + i for i in range(len(images))]
    angles = torch.tensor([np.random.RandomState(s).uniform(-45, 45) for s in seeds])
    ref = []
    for image, seed in zip(images, seeds, strict=True):
        np.random.seed(seed)
        ref.append(reference().corrupt(image, severity, "motion_blur"))
    radius, sigma = params[severity - 1]
    return ic.motion_blur(nchw(images), radius, sigma, angles), np.stack(ref)


@pytest.mark.usefixtures("numpy_global_rng")
@pytest.mark.parametrize("size", [32, 64, 96])
def test_deterministic_agree_with_reference(size: int) -> None:
    images = natural({32: 6, 64: 3, 96: 2}[size], size, size)
    for name in DETERMINISTIC:
        params = None if size > 64 else IMAGENET[name]
        for severity in range(1, 6):
            if name == "motion_blur":  # its one random draw: the angle
                ours, ref = motion_blur_pair(images, severity, params or ic.parameters(name, size))
            else:
                ours = ic.corrupt(nchw(images), name, severity, gen(0), params=params)
                ref = reference_batch(images, name, severity)
            gap = np.abs(ours.permute(0, 2, 3, 1).numpy() - ref.astype(float))
            assert gap.mean() <= MAX_MEAN_GAP, (name, severity, gap.mean())
            if name != "jpeg_compression":
                assert gap.max() <= MAX_GAP, (name, severity, gap.max())


@pytest.mark.usefixtures("numpy_global_rng")
@pytest.mark.parametrize("size", [32, 64])
def test_noise_agrees_with_reference_in_distribution(size: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Same clean images (24 576 values), independent draws: the difference image (corrupted −
    clean) has the reference's mean and std within 5 standard errors of the gap between two
    samples (4.5 % of the std for the mean, 3.2 % for the std; measured at most 2.3 % and
    1.4 %); impulse noise sets the reference's shares of values to 255 and to 0 within 5
    binomial standard errors (measured at most 2.1)."""
    import skimage.util

    # imagecorruptions' impulse noise draws from a fresh unseeded generator: give it a seeded one
    monkeypatch.setattr(skimage.util, "random_noise",
                        functools.partial(skimage.util.random_noise, rng=np.random.default_rng(12)))
    images = natural({32: 8, 64: 2}[size], size, 20 + size)
    x = nchw(images)
    for name in NOISE:
        for severity in range(1, 6):
            np.random.seed(severity)
            ref = reference_batch(images, name, severity).astype(float) - images
            ours = ic.corrupt(x, name, severity, gen(severity, "cpu"), params=IMAGENET[name])
            ours_d = ours.permute(0, 2, 3, 1).numpy().astype(float) - images
            if name == "impulse_noise":
                for level in (0, 255):
                    p_ref = ((ref != 0) & (ref + images == level)).mean()
                    p_ours = ((ours_d != 0) & (ours_d + images == level)).mean()
                    spread = np.sqrt(2 * p_ref * (1 - p_ref) / ref.size)
                    assert abs(p_ours - p_ref) <= 5 * spread, (severity, level, p_ours, p_ref)
                continue
            std, n = ref.std(), ref.size
            gap_mean, gap_std = (ours_d.mean() - ref.mean()) / std, ours_d.std() / std - 1
            assert abs(gap_mean) <= 5 * np.sqrt(2 / n), (name, severity, gap_mean)
            assert abs(gap_std) <= 5 / np.sqrt(n), (name, severity, gap_std)

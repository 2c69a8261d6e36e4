"""`cnnvit bench` (and `--reference`) on the CPU: tiny cases through the CLI, the JSON, bad specs.

Timings on a shared machine are noisy, so nothing here is a speed threshold: the checks are on
the structure of the output, on ratios that must lie in a sane range whatever the load, and on
the figures' consistency with each other and with `flops_per_image`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from dataclasses import fields

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from cnnvit import bench
from cnnvit.bench import BenchResult
from cnnvit.bench_reference import (
    PilDataset,
    ReferenceResult,
    cnnvit_pipeline,
    reference_batch_size,
    reference_loader,
    source_split,
)
from cnnvit.cli import main
from cnnvit.engine.flops import flops_per_image
from cnnvit.models import build

pytestmark = pytest.mark.usefixtures("one_thread")

# 8 px inputs (the size of the digits dataset) keep a step cheap: a CNN (bench's channels-last
# path) and a ViT (2 px patches, a 4×4 grid), each at the CPU batch size for ≤ 64 px (128).
CASES = ("resnet18-small@8", "vit-small-input@8")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, one_thread):
    """One `cnnvit bench` run of both cases: (exit code, stdout, JSON payload). One timed step
    (after bench's two warm-up steps) keeps it to a few seconds; the matmul peak is measured
    three times (before and after each case) whatever the steps."""
    out = tmp_path_factory.mktemp("bench") / "b.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["bench", "--device", "cpu", "--models", ",".join(CASES), "--steps", "1",
                   "--threads", "1", "--amp", "off", "--output", str(out)])
    return rc, stdout.getvalue(), json.loads(out.read_text())


def _train_flops(case: str) -> int:
    name, _, size = case.partition("@")
    return flops_per_image(build(name, 10, in_chans=3, image_size=int(size)), 3, int(size),
                           backward=True)


def test_bench_json_structure(bench_run):
    rc, _, payload = bench_run
    assert rc == 0
    assert set(payload) == {"device", "device_name", "torch", "threads", "peak_flop_per_s",
                            "results"}
    assert payload["device"] == "cpu" and payload["torch"] == torch.__version__
    assert payload["threads"] == 1  # --threads 1 was applied
    assert isinstance(payload["device_name"], str)
    assert list(payload["peak_flop_per_s"]) == ["float32"]
    peak = payload["peak_flop_per_s"]["float32"]
    assert isinstance(peak, float) and math.isfinite(peak) and peak > 0
    results = payload["results"]
    assert [r["case"] for r in results] == list(CASES)  # one entry per case, in order
    keys = {f.name for f in fields(BenchResult)}
    for r in results:
        assert set(r) == keys
        assert r["device"] == "cpu"
        assert r["batch_size"] == bench._batch_size(8, torch.device("cpu")) == 128
        assert r["precision"] == "float32"  # --amp off
        for key in keys - {"case", "device", "precision", "batch_size"}:
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), key
        # every share is against the final (best) peak, the one the payload reports
        assert r["peak_gflop_per_s"] == pytest.approx(peak / 1e9, abs=0.051)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_bench_ratios_are_sane(bench_run, index):
    r = bench_run[2]["results"][index]
    assert r["full_images_per_s"] > 0 and r["model_only_images_per_s"] > 0
    # the full step does the model-only work and more: its throughput ratio is at most ~1, but
    # the two are timed on a noisy machine, so only a loose bound
    ratio = r["full_over_model_only"]
    assert 0 < ratio <= 3
    assert ratio == pytest.approx(r["full_images_per_s"] / r["model_only_images_per_s"],
                                  rel=0.01, abs=0.002)
    assert r["outside_model_share"] == pytest.approx(max(0.0, 1 - ratio), abs=0.002)
    assert 0 <= r["outside_model_share"] < 1
    assert 0 < r["share_of_peak"] <= 1.5
    assert r["share_of_peak"] == pytest.approx(r["achieved_gflop_per_s"] / r["peak_gflop_per_s"],
                                               rel=0.01, abs=0.002)
    assert 0 < r["achieved_gflop_per_s"] <= 1.5 * r["peak_gflop_per_s"]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_bench_flops_match_flops_per_image(bench_run, index):
    r = bench_run[2]["results"][index]
    exact = _train_flops(r["case"])
    assert exact > 0 and r["train_gflop_per_image"] > 0
    assert r["train_gflop_per_image"] == pytest.approx(exact / 1e9, abs=5e-4)  # 3 decimals
    # achieved FLOP/s = train FLOPs per image × images per second of the full step
    assert r["achieved_gflop_per_s"] == pytest.approx(exact / 1e9 * r["full_images_per_s"],
                                                      rel=0.01, abs=0.06)


def test_bench_prints_a_markdown_table(bench_run):
    _, stdout, payload = bench_run
    lines = stdout.splitlines()
    assert lines[0].startswith("device cpu") and "1 threads" in lines[0]
    head = next(i for i, line in enumerate(lines) if line.startswith("| case | device |"))
    assert lines[head + 1].startswith("|---|")
    rows = lines[head + 2:head + 2 + len(CASES)]
    for row, r in zip(rows, payload["results"], strict=True):
        assert row.startswith(
            f"| {r['case']} | cpu | float32 | 128 | {r['full_images_per_s']} |")
        assert row.count("|") == 13


@pytest.fixture
def fast_peak(monkeypatch):
    """A fixed matmul peak: the spec errors below come after the peak is measured."""
    monkeypatch.setattr(bench, "matmul_peak", lambda device, reps=10, dtype=None: 1e11)


@pytest.mark.usefixtures("fast_peak")
@pytest.mark.parametrize(("args", "message"), [
    (["--models", "no-such-model@8"], "unknown model 'no-such-model'"),
    (["--models", "resnet18-small@0"], "model@size"),
    (["--models", "resnet18-small@-8"], "model@size"),
    (["--models", "tv:nonesuch@8"], "unknown torchvision model"),
    (["--models", "resnet18-small@8", "--steps", "0"], "--steps must be at least 1"),
    (["--models", "resnet18-small@abc"], "resnet18-small@abc"),
    (["--models", ""], "model@size"),
    (["--reference", "--models", "resnet18-small@0"], "model@size"),
    (["--reference", "--models", "no-such-model@8"], "unknown model 'no-such-model'"),
    (["--reference", "--models", "resnet18-small@8", "--steps", "0"], "--steps must be at least"),
])
def test_bad_bench_spec_exits_2_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "b.json"
    rc = main(["bench", "--device", "cpu", "--threads", "1", *args, "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("cnnvit: error: ") and message in err
    assert "Traceback" not in err
    assert not out.exists()  # no partial results


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_on_missing_gpu_exits_2(fast_peak, tmp_path, capsys):
    assert main(["bench", "--device", "cuda", "--models", "resnet18-small@8", "--threads",
                 "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDA is not available" in err


# --reference: cnnvit's pipeline against torchvision transforms on PIL images in a DataLoader


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, one_thread):
    """One `cnnvit bench --reference` run of a tiny case: (exit code, stdout, JSON payload)."""
    out = tmp_path_factory.mktemp("bench") / "ref.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["bench", "--device", "cpu", "--reference", "--models", "resnet18-small@8",
                   "--steps", "1", "--threads", "1", "--output", str(out)])
    return rc, stdout.getvalue(), json.loads(out.read_text())


def test_reference_bench_json(reference_run):
    rc, _, payload = reference_run
    assert rc == 0 and payload["device"] == "cpu" and payload["threads"] == 1
    [r] = payload["results"]
    assert set(r) == {f.name for f in fields(ReferenceResult)}
    exact = _train_flops("resnet18-small@8")
    assert r["train_gflop_per_image"] == pytest.approx(exact / 1e9, abs=1e-6)
    assert r["batch_size"] == reference_batch_size(8, exact, torch.device("cpu")) == 32
    assert r["reference_workers"] == min(4, os.cpu_count() or 1) >= 1
    assert r["precision"] == "float32" and r["memory_kind"] == "cpu_rss_growth"
    for side in ("reference", "cnnvit"):
        ips = r[f"{side}_images_per_s"]
        assert ips > 0
        share = r[f"{side}_share_of_peak"]
        assert 0 < share <= 1
        assert share == pytest.approx(exact * ips / payload["peak_flop_per_s"]["float32"], rel=0.01,
                                      abs=1e-4)
        assert math.isfinite(r[f"{side}_peak_memory_mb"]) and r[f"{side}_peak_memory_mb"] >= 0
    assert r["ratio"] == pytest.approx(r["cnnvit_images_per_s"] / r["reference_images_per_s"],
                                       rel=0.01)
    assert r["peak_gflop_per_s"] == pytest.approx(payload["peak_flop_per_s"]["float32"] / 1e9,
                                                abs=0.051)


def test_reference_bench_prints_a_markdown_table(reference_run):
    _, stdout, payload = reference_run
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| case | device |"))
    assert "| reference img/s | cnnvit img/s | cnnvit / reference |" in lines[head]
    [r] = payload["results"]
    assert lines[head + 2].startswith(
        f"| resnet18-small@8 | cpu | float32 | 32 | {r['reference_images_per_s']} | "
        f"{r['cnnvit_images_per_s']} | {r['ratio']:.2f} |")
    assert lines[head + 2].count("|") == 12


def test_reference_side_is_a_dataloader_of_pil_transforms(monkeypatch):
    split = source_split(16, 8)
    assert split.images.shape == (8, 16, 16, 3)  # native size at ≤ 28 px
    assert source_split(224, 2).images.shape[1:] == (64, 64, 3)  # upsampled from 64 px
    loader = reference_loader(split, 16, 4, torch.device("cpu"))
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert loader.num_workers >= 1 and loader.persistent_workers and loader.drop_last
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler) and not loader.pin_memory
    dataset = loader.dataset
    assert isinstance(dataset, PilDataset)
    assert [type(t) for t in dataset.transform.transforms] == [
        T.Resize, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    made = []
    fromarray = Image.fromarray
    monkeypatch.setattr(Image, "fromarray", lambda a: made.append(fromarray(a)) or made[-1])
    x, y = dataset[3]
    assert [type(m) for m in made] == [Image.Image]  # the item went through a PIL image
    expected = (torch.from_numpy(split.images[3]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.equal(x, expected) or torch.equal(x, expected.flip(-1))
    assert y == int(split.labels[3])


def test_cnnvit_side_matches_the_reference_transform():
    """Same resize target, flip and normalisation: each cnnvit image is the reference's image
    of the same source, flipped or not."""
    split = source_split(8, 16)
    pipe = cnnvit_pipeline(split, 8, torch.device("cpu"), channels_last=True)
    gen = torch.Generator().manual_seed(0)
    batch = pipe.prepare(pipe.images[:16], gen)
    flipped = 0
    for i in range(16):
        expected = (torch.from_numpy(split.images[i]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
        same, mirrored = (torch.allclose(batch[i], e, atol=1e-6)
                          for e in (expected, expected.flip(-1)))
        assert same or mirrored
        flipped += mirrored and not same
    assert 0 < flipped < 16  # a random flip, not all or none


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bench_amp_auto_on_a_bf16_cpu_measures_both_precisions(monkeypatch, tmp_path, capsys,
                                                               native_bf16):
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(bench, "matmul_peak", lambda device, dtype=None: 1e11)
    out = tmp_path / "b.json"
    assert main(["bench", "--device", "cpu", "--models", "vit-small-input@8", "--steps", "1",
                 "--threads", "1", "--output", str(out)]) == 0
    payload, printed = json.loads(out.read_text()), capsys.readouterr().out
    expected = ["float32", "bfloat16"] if native_bf16 else ["float32"]
    assert [r["precision"] for r in payload["results"]] == expected
    assert list(payload["peak_flop_per_s"]) == expected
    if native_bf16:  # the ratio, and the training rule's choice for this 0.02-GFLOP model
        fp32, bf16 = payload["results"]
        row = next(line for line in printed.splitlines()
                   if line.startswith("| vit-small-input@8") and "×" in line)
        ratio = bf16["full_images_per_s"] / fp32["full_images_per_s"]
        assert f"{ratio:.2f}×" in row and row.rstrip(" |").endswith("float32")
    else:
        assert "bf16 / float32" not in printed

"""Projected training time of a preset on one GPU, from FLOPs measured on the real models.

A projection, not a measurement: training FLOPs (forward + backward per image, counted with
torch.utils.flop_counter on the models the preset builds) × training images × epochs, plus a
forward pass over the validation split each epoch, divided by an assumed share of the GPU's
bf16 dense peak. Usage (no GPU needed; BloodMNIST's split sizes are MedMNIST's):

    python benchmarks/h100_projection.py --preset bloodmnist-native --train 11959 --val 1712
"""

from __future__ import annotations

import argparse

from cnnvit import models, presets
from cnnvit.document import Table
from cnnvit.engine.flops import flops_per_image
from cnnvit.engine.setup import load_config

H100_SXM_BF16_DENSE = 989.4e12  # NVIDIA H100 SXM5 datasheet, dense bf16 tensor-core FLOP/s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bloodmnist-native")
    parser.add_argument("--train", type=int, required=True, help="training images")
    parser.add_argument("--val", type=int, required=True, help="validation images")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--peak", type=float, default=H100_SXM_BF16_DENSE)
    parser.add_argument("--shares", default="1.0,0.35,0.10", help="assumed shares of peak")
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    preset = presets.load(args.preset)
    total, rows = 0.0, []
    for plan in preset.models:
        cfg = load_config(None, {**plan.overrides, "image_size": args.image_size})
        model = models.build(cfg.model, args.classes, in_chans=args.channels,
                             image_size=args.image_size, **cfg.model_kwargs)
        fwd = flops_per_image(model, args.channels, args.image_size)
        train = flops_per_image(model, args.channels, args.image_size, backward=True)
        flops = cfg.epochs * (train * args.train + fwd * args.val)
        total += flops
        rows.append([plan.name, f"{fwd / 1e9:.3f}", f"{train / 1e9:.3f}", str(cfg.epochs),
                     f"{flops / 1e15:.2f}", *(f"{flops / (s * args.peak):.1f} s" for s in shares)])
    rows.append(["all models", "", "", "", f"{total / 1e15:.2f}",
                 *(f"{total / (s * args.peak):.1f} s" for s in shares)])
    header = ["model", "GFLOP/img fwd", "GFLOP/img fwd+bwd", "epochs", "PFLOP",
              *(f"time at {s:.0%} of peak" for s in shares)]
    print("\n".join(Table(header, rows).lines()))


if __name__ == "__main__":
    main()

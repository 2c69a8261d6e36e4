"""The `cnnvit` command line: parse, then call one function per command.

Every user error is one line on stderr and a non-zero exit code (2), never a traceback; a
signal exits 128 + its number (130 for SIGINT, 143 for SIGTERM); an unexpected exception is
one line too (exit code 1), its traceback saved to a file (`cnnvit --debug` prints it).
Parsing the arguments and the config imports neither torch, timm nor matplotlib: `--help` and
a mistyped flag or key answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnvit import __version__
from cnnvit.errors import CnnvitError, Interrupted, handling_signals, raise_interrupted
from cnnvit.explain.methods import METHODS
from cnnvit.plots import FORMATS, KINDS, SPLITS
from cnnvit.report import FORMATS as REPORT_FORMATS
from cnnvit.rundir import MODES, RunDir

# flag → config key, for the flags every training-like command accepts
CONFIG_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--dataset": ("dataset", {"help": "dataset spec: digits, bloodmnist, medmnist:<flag>, "
                                      "cifar10, cifar100, npz:<path>, folder:<path>, "
                                      "synthetic:<path>"}),
    "--model": ("model", {"help": "resnet18, resnet18-small, vit-small-input, or any timm name"}),
    "--epochs": ("epochs", {"type": int}),
    "--batch-size": ("batch_size", {"type": int}),
    "--lr": ("lr", {"type": float}),
    "--optimizer": ("optimizer", {"help": "adam | adamw | sgd"}),
    "--scheduler": ("scheduler", {"help": "none | cosine | step | multistep"}),
    "--weight-decay": ("weight_decay", {"type": float}),
    "--image-size": ("image_size", {"type": int, "help": "model input side in pixels; for "
                                    "MedMNIST also picks the native file (28|64|128|224)"}),
    "--seed": ("seed", {"type": int}),
    "--device": ("device", {"help": "auto | cpu | cuda | cuda:N"}),
    "--out": ("out", {"help": "output (model) directory"}),
    "--data-root": ("data_root", {"help": "where datasets live (else $CNNVIT_DATA)"}),
    "--weights": ("weights", {"help": "local weights: state dict, .safetensors or cnnvit "
                                      "checkpoint (transfer learning offline)"}),
    "--max-minutes": ("max_minutes", {"type": float, "help": "time budget for training"}),
    "--patience": ("patience", {"type": int, "help": "early stopping patience (epochs)"}),
    "--amp": ("amp", {"help": "auto | bf16 | fp16 | off. auto: bf16 (else fp16) on CUDA; on a "
                              "CPU with native bf16 (AMX), bf16 for models of ≥ 100 MFLOP per "
                              "image, else fp32; fp16 needs CUDA"}),
    "--selection-metric": ("selection_metric", {"help": "f1_macro | auc_macro | accuracy | "
                                                        "loss"}),
    "--threads": ("threads", {"type": int, "help": "CPU threads for torch (0 = default)"}),
}
CONFIG_SWITCHES = {"--pretrained": "pretrained", "--download": "download",
                   "--deterministic": "deterministic", "--compile": "compile",
                   "--strict": "strict_data"}

SWITCH_HELP = {"--strict": "refuse messy data (images of mixed size or mode, non-image or "
                           "unreadable files, a class missing from a split) instead of "
                           "converting, skipping and reporting it"}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# the config flags `cnnvit run` passes to every model of the study
RUN_FLAGS = ("--image-size", "--epochs", "--device", "--data-root", "--threads", "--download",
             "--deterministic", "--strict")


def _add_config_flags(p: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """The config flags (all of them, or `only` these), each stored as `cfg_<key>`."""
    for flag, (key, kwargs) in CONFIG_FLAGS.items():
        if only is None or flag in only:
            p.add_argument(flag, dest=f"cfg_{key}", default=None, **kwargs)
    for flag, key in CONFIG_SWITCHES.items():
        if only is None or flag in only:
            p.add_argument(flag, dest=f"cfg_{key}", action="store_const", const=True,
                           default=None, help=SWITCH_HELP.get(flag))


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given as flags, then `--set` items (which win)."""
    from cnnvit import config

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    overrides.update(config.parse_set(args.set))
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    from cnnvit import config

    if args.keys:
        print("\n".join(f"{k} = {v!r}" for k, v in config.Config().to_dict().items()))
        return 0
    overrides = _flag_overrides(args)  # defaults < --config YAML < flags < --set
    given = (config.read_yaml(args.config) if args.config else {}) | overrides
    config.apply_overrides(config.Config(), given)  # a bad key or value fails before torch loads

    from cnnvit.engine.setup import load_config
    from cnnvit.engine.train import fit, remaining_phases, resume_config

    out = args.cfg_out or config.Config().out
    cfg = resume_config(out, given) if args.resume else load_config(args.config, overrides)
    if cfg is None:
        raise CnnvitError(f"--resume: {out} holds no model to continue (no config.yaml); "
                          "leave out --resume to train one there")
    if not remaining_phases(cfg, resume=args.resume):
        print(f"{cfg.out} has finished its {cfg.epochs} epochs; nothing to do (ask for more "
              "with --epochs N)")
        return 0
    fit(cfg, resume=args.resume, quiet=args.quiet)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    splits = tuple(s.strip() for s in args.split.split(",") if s.strip())
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad or not splits:
        raise CnnvitError(f"--split takes train, val and/or test; got {args.split!r}")
    from cnnvit.engine.evaluate import evaluate_dir

    results = evaluate_dir(args.model_dir, splits, args.checkpoint, args.device)
    for split, r in results.items():
        auc = "n/a" if r["auc_macro"] is None else f"{r['auc_macro']:.4f}"
        print(f"{split}: accuracy {r['accuracy']:.4f} f1_macro {r['f1_macro']:.4f} "
              f"auc_macro {auc} loss {r['loss']:.4f} ece {r['ece']:.4f}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_cmd == "synth":
        shape = _parse_shape(args.shape)
        samples = tuple(_int(s, "--samples") for s in args.samples.split(","))
        if len(samples) != 3 or min(samples) <= 0:
            raise CnnvitError(f"--samples takes three positive counts train,val,test; "
                              f"got {args.samples}")
        from cnnvit import data

        path = data.write_synthetic(args.out, shape=shape, classes=args.classes,
                                    samples=samples, seed=args.seed)
        print(f"wrote SYNTHETIC dataset {path} ({shape[0]}x{shape[1]}x{shape[2]}, "
              f"{args.classes} classes, {samples[0]}/{samples[1]}/{samples[2]} images); "
              f"use it as --dataset synthetic:{path}")
        return 0
    from cnnvit import data

    kwargs = {"size": args.size, "root": args.data_root}
    if args.data_cmd == "info":
        print(data.describe(data.load(args.spec, download=False, strict=args.strict, **kwargs)))
    elif args.data_cmd == "fetch":
        for path in data.fetch(args.spec, **kwargs):
            print(f"ready: {path}")
    elif args.data_cmd == "verify":
        print(data.verify(args.spec, strict=args.strict, **kwargs))
    return 0


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        height, width, channels = (int(v) for v in text.lower().split("x"))
    except ValueError:
        height = width = channels = 0  # not three whole numbers
    if min(height, width) <= 0 or channels not in (1, 3):
        raise CnnvitError(f"--shape takes HxWxC with C 1 or 3, e.g. 28x28x3; got '{text}'")
    return height, width, channels


def _cmd_predict(args: argparse.Namespace) -> int:
    from cnnvit.deploy.predict import predict_images

    done = predict_images(args.model_path, args.images, name=args.model, out=args.out,
                          top_k=args.top_k, explain_dir=args.explain,
                          batch_size=args.batch_size, strict=args.strict, device=args.device)
    if done.unreadable:
        print(f"cnnvit: warning: skipped {len(done.unreadable)} unreadable image file(s): "
              f"{', '.join(done.unreadable)}", file=sys.stderr)
    if done.not_images:
        print(f"cnnvit: note: ignored {len(done.not_images)} folder entries that are not "
              f"image files: {', '.join(done.not_images)}", file=sys.stderr)
    overlays = f"; overlays in {done.overlays}" if done.overlays else ""
    print(f"predicted {done.rows} images: {done.out}{overlays}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from cnnvit.deploy.export import export_model

    done = export_model(args.model_path, args.format, name=args.model, out=args.out,
                        dynamic_batch=args.dynamic_batch)
    p = done.parity
    print(f"parity on {p['images']} {p['split']} images: max |Δ probability| "
          f"{p['max_abs_prob_diff']:.2e} (limit {p['limit']:g}), identical predictions "
          f"{p['identical_predictions']:.1%}")
    print(f"exported {args.format}: {done.file} (sidecar {done.sidecar})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cnnvit.deploy.demo_app import run_demo  # checks for fastapi and uvicorn before torch loads

    run_demo(args.run_dir, host=args.host, port=args.port, top_k=args.top_k, device=args.device)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from cnnvit.bench import run_bench
    from cnnvit.bench_reference import run_reference_bench

    run = run_reference_bench if args.reference else run_bench
    run(models=args.models, device=args.device, steps=args.steps, out=args.output,
        threads=args.threads, amp=args.amp)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from cnnvit import config, presets

    if args.list:
        for name in presets.available():
            print(f"{name}: {presets.description(name)}")
        return 0
    overrides = _flag_overrides(args)
    for key, value in overrides.items():  # a bad key or value fails before the preset (torch)
        config.apply_overrides(config.Config(), {key.rpartition(".")[2]: value})
    seeds = [_int(s, "--seeds") for s in args.seeds.split(",")] if args.seeds else None
    fractions = _fractions(args.train_fractions) if args.train_fractions else None
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    preset = presets.load(args.preset, reduced=args.reduced, dataset=args.dataset,
                          models=models, seeds=seeds, overrides=overrides)
    out = args.out or f"runs/{preset.name}"
    explain_options = {"per_class": args.per_class, "include_errors": args.include_errors,
                       "method": args.method}
    from cnnvit.workflow import Study  # torch: only once the arguments are known to be good

    Study(preset, out, reduced=args.reduced, force=args.force, explain=not args.no_explain,
          quiet=args.quiet, explain_options=explain_options, train_fractions=fractions,
          curve_schedule=args.curve_schedule, robustness=not args.no_robustness).run()
    return 0


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise CnnvitError(f"--train-fractions takes shares of the training split in (0, 1], "
                          f"e.g. 0.1,0.25,0.5,1.0; got {text!r}")
    return values


def _int(text: str, flag: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise CnnvitError(f"{flag} takes integers separated by commas; got '{text}'") from None


def _cmd_explain(args: argparse.Namespace) -> int:
    from cnnvit.explain.stage import explain_run

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    out = explain_run(args.run_dir, models=models, split=args.split, per_class=args.per_class,
                      method=args.method, include_errors=args.include_errors,
                      target_layer=args.target_layer, steps=args.steps, seed=args.seed,
                      sanity=not args.no_sanity, road=args.road, device=args.device)
    print(f"explanations: {out}")
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from cnnvit.compare import compare
    from cnnvit.io import open_log
    from cnnvit.robustness.stage import robustness_run

    run = RunDir(args.run_dir)
    if not run.root.is_dir():
        raise CnnvitError(f"{run.root}: no such run directory; run `cnnvit run --out "
                          f"{run.root}` first")
    log = open_log(run.root / "logs" / "robustness.log")
    robustness_run(run.root, seed=args.seed, force=args.force, device=args.device, logger=log)
    written = compare(run.root)
    for name in ("robustness", "robustness_summary", "robustness_tests", "summary"):
        print(f"{name}: {written[name]}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from cnnvit.compare import compare
    from cnnvit.compare.sweep import is_sweep

    if is_sweep(args.run_dir):  # a sweep directory: mean ± std over seeds, and its figure
        from cnnvit.sweep import summarize

        written = summarize(Path(args.run_dir))
    else:
        written = compare(args.run_dir, mode=args.mode)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from cnnvit.sweep import sweep

    resources = {"partition": args.partition, "time": args.time, "gpus": args.gpus,
                 "mem": args.mem, "cpus": args.cpus}
    sweep(args.grid, args.out, dry_run=args.dry_run, parallel=args.jobs,
          executor=args.executor, resources=resources, explain=not args.no_explain,
          robustness=not args.no_robustness)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from cnnvit.plots.render import plot

    paths = plot(args.run_dir, args.kind, model=args.model, split=args.split,
                 normalize=args.normalize, fmt=args.format)
    print(f"{len(paths)} figures in {paths[0].parent}" if paths else "no figures drawn")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from cnnvit.report import report

    for fmt, path in report(args.run_dir, tuple(_formats(args.format))).items():
        print(f"{fmt}: {path}")
    return 0


def _formats(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in REPORT_FORMATS]
    if unknown or not chosen:
        raise CnnvitError(f"--format {text!r}: expected a comma list of "
                          f"{', '.join(REPORT_FORMATS)}")
    return chosen


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help: str,
             examples: list[str], description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command parser with its help, description and examples, calling `func`."""
    label = "example" if len(examples) == 1 else "examples"
    p = sub.add_parser(name, help=help, description=description or help,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"{label}:\n" + "\n".join(f"  {e}" for e in examples))
    p.set_defaults(func=func)
    return p


def _add_explain_options(p: argparse.ArgumentParser, stage: str = "") -> None:
    """The sample and method options that `cnnvit explain` and `cnnvit run` share."""
    p.add_argument("--per-class", dest="per_class", type=int, default=10,
                   help=f"{stage}samples per class")
    p.add_argument("--include-errors", dest="include_errors", type=int, default=5,
                   help=f"{stage}misclassified samples added per model")
    p.add_argument("--method", default="auto", choices=METHODS,
                   help=f"{stage}auto = Grad-CAM for CNNs, attention relevance (Chefer et "
                        "al. 2021) for ViTs")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one sub-command per function)."""
    parser = _Parser(prog="cnnvit", description="Train, evaluate, explain and compare CNNs "
                     "and Vision Transformers on small-image classification.")
    parser.add_argument("--version", action="version", version=f"cnnvit {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an internal error, print the "
                        "full traceback (else it is saved to a file, named on stderr)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_train_parser, _run_parser, _explain_parser, _robustness_parser,
                _compare_parser, _plot_parser,
                _report_parser, _evaluate_parser, _predict_parser, _export_parser, _demo_parser,
                _data_parser,
                _bench_parser, _sweep_parser):
        add(sub)
    return parser


def _train_parser(sub: Any) -> None:
    p = _command(sub, "train", _cmd_train, "train one model into a model directory", [
        "cnnvit train --dataset digits --model vit-small-input --out runs/d-vit",
        "cnnvit train --out runs/d-vit --resume --epochs 60 --lr 1e-4   # extend a finished run",
    ], "Train one model; writes config.yaml, history.csv, checkpoints/, "
       "metrics_{val,test}.json, predictions_{val,test}.csv and train.log into --out.\n"
       "Ctrl-C or SIGTERM (e.g. Slurm's time limit) saves the epoch in progress and exits 130 "
       "or 143;\nthe same command again continues it exactly. On several GPUs or machines: "
       "torchrun --nproc_per_node=N -m cnnvit train ... (docs/distributed.md).")
    p.add_argument("--config", help="YAML file of config keys (flags override it)")
    _add_config_flags(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set any config key (repeatable); `cnnvit train --keys` lists them")
    p.add_argument("--resume", action="store_true", help="extend the finished model in --out "
                   "(more --epochs, a new --lr); an interrupted one continues without it")
    p.add_argument("--quiet", action="store_true", help="no epoch lines on stdout")
    p.add_argument("--keys", action="store_true", help="list every config key and its default")


def _run_parser(sub: Any) -> None:
    p = _command(sub, "run", _cmd_run, "the whole comparison study in one command", [
        "cnnvit run --preset quickstart --out runs/quick",
        "cnnvit run --preset bloodmnist-native --reduced --out runs/blood",
        "cnnvit run --preset quickstart --seeds 42,43,44 --out runs/seeds",
        "cnnvit run --preset quickstart --train-fractions 0.1,0.25,0.5 --out runs/curve",
        "cnnvit run --list",
    ], "Stages: data → train every model (and seed) → evaluate → explain → robustness →\n"
       "compare → figures → report. Re-running the same command continues where it stopped.")
    p.add_argument("--preset", default="quickstart", help="preset name (see --list) or a "
                   "YAML file")
    p.add_argument("--list", action="store_true", help="list the presets")
    p.add_argument("--dataset", default=None, help="replace the preset's dataset")
    p.add_argument("--models", default=None, help="comma list: preset entries or model names")
    p.add_argument("--seeds", default=None, help="comma list, e.g. 42,43,44")
    p.add_argument("--train-fractions", default=None, help="learning curve: also train every "
                   "model on these shares of the training split (stratified, nested, seeded; "
                   "epochs kept, so smaller shares take fewer steps), e.g. 0.1,0.25,0.5,1.0")
    p.add_argument("--curve-schedule", default="epochs", choices=("epochs", "steps"),
                   help="learning curve: keep each model's epochs (default), or its optimizer "
                   "steps (epochs ÷ share)")
    _add_config_flags(p, only=RUN_FLAGS)
    p.add_argument("--reduced", action="store_true", help="shorter schedule, smaller inputs; "
                   "outputs under DIR/reduced/, labelled reduced everywhere")
    p.add_argument("--out", default=None, help="run directory (default runs/<preset>)")
    p.add_argument("--force", action="store_true", help="retrain models that already finished")
    p.add_argument("--no-explain", action="store_true", help="skip the explain stage")
    _add_explain_options(p, "explain stage: ")
    p.add_argument("--no-robustness", action="store_true", help="skip the robustness stage "
                   "(every model on the test split under corruptions, docs/robustness.md)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config key for every model, or MODEL.KEY=VALUE for one (repeatable)")


def _explain_parser(sub: Any) -> None:
    p = _command(sub, "explain", _cmd_explain, "Grad-CAM / attention relevance on shared "
                 "samples, galleries, faithfulness", [
                     "cnnvit explain runs/quickstart --per-class 10 --include-errors 5"],
                 "Explain every model of a run on one seeded selection of samples: overlays, "
                 "per-class and error galleries, deletion/insertion faithfulness against a "
                 "random map, and a model-randomisation check.")
    p.add_argument("run_dir")
    p.add_argument("--models", default=None, help="comma list of model names (default: all)")
    p.add_argument("--split", default="test")
    _add_explain_options(p)
    p.add_argument("--target-layer", dest="target_layer", default=None,
                   help="Grad-CAM layer by dotted name, e.g. layer3.1")
    p.add_argument("--steps", type=int, default=10, help="deletion/insertion curve steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sanity", action="store_true", help="skip the randomisation check")
    p.add_argument("--road", action="store_true", help="also ROAD scores (pytorch-grad-cam; "
                   "slower)")
    p.add_argument("--device", default=None)


def _robustness_parser(sub: Any) -> None:
    p = _command(sub, "robustness", _cmd_robustness, "every model of a run on its test split "
                 "under corruptions at five severities", [
                     "cnnvit robustness runs/quickstart",
                     "cnnvit robustness runs/blood --seed 1 --force"],
                 "Evaluate every model of a run on the test split under the corruptions of its\n"
                 "dataset (MedMNIST-C for MedMNIST, CIFAR-10-C / ImageNet-C otherwise) at\n"
                 "severities 1–5, on identical seeded images cached in DIR/robustness/cache/;\n"
                 "then the compare stage writes results/robustness*.csv and the summary's\n"
                 "robustness section. `cnnvit run` does this as a stage (--no-robustness skips "
                 "it).\ndocs/robustness.md lists the corruptions.")
    p.add_argument("run_dir")
    p.add_argument("--seed", type=int, default=0, help="the corruptions' seed (identical "
                   "images for every model)")
    p.add_argument("--force", action="store_true", help="predict again even where the "
                   "predictions are up to date")
    p.add_argument("--device", default=None)


def _sweep_parser(sub: Any) -> None:
    p = _command(sub, "sweep", _cmd_sweep, "many `cnnvit run` studies from one grid file", [
        "cnnvit sweep configs/sweep-medmnist-sizes.yaml --dry-run",
        "cnnvit sweep configs/sweep-medmnist-sizes.yaml --out sweeps/blood --jobs 2",
        "cnnvit sweep grid.yaml --executor slurm --partition gpu --time 120 --gpus 1",
        "cnnvit compare sweeps/blood   # mean ± std over seeds, accuracy against FLOPs",
    ], "Run datasets × image sizes × seeds (× every `set:` key given as a list) as independent\n"
       "`cnnvit run` directories SWEEP_DIR/<dataset>/<size>px[/<variant>]/seed_<n>/, each\n"
       "training the grid's models. Re-running skips done jobs and resumes interrupted ones.\n"
       "docs/distributed.md describes the grid file.")
    p.add_argument("grid", help="grid YAML file (see configs/sweep-medmnist-sizes.yaml)")
    p.add_argument("--out", default=None, help="sweep directory (default sweeps/<grid name>)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their status "
                   "(done / partial / new), run nothing")
    p.add_argument("--jobs", type=int, default=1, help="jobs at once (local: subprocesses "
                   "sharing the CPU threads; slurm: the array's parallelism)")
    p.add_argument("--executor", default="local", choices=("local", "slurm"))
    p.add_argument("--no-explain", action="store_true", help="skip every job's explain stage")
    p.add_argument("--no-robustness", action="store_true", help="skip every job's robustness "
                   "stage")
    for flag, kind, text in (("--partition", str, "Slurm partition"),
                             ("--time", int, "minutes per job"),
                             ("--gpus", int, "GPUs per job"), ("--mem", int, "GB per job"),
                             ("--cpus", int, "CPUs per job (also its --threads)")):
        p.add_argument(flag, type=kind, default=None, help=f"{text} (overrides the grid's "
                       "slurm: section)")


def _compare_parser(sub: Any) -> None:
    p = _command(sub, "compare", _cmd_compare, "comparison tables and summary of a run directory"
                 " (or of a sweep directory: mean ± std over seeds)",
                 ["cnnvit compare runs/quick", "cnnvit compare sweeps/blood"])
    p.add_argument("run_dir")
    p.add_argument("--mode", default=None, choices=MODES)


def _plot_parser(sub: Any) -> None:
    p = _command(sub, "plot", _cmd_plot, "draw a run directory's figures from its files", [
        "cnnvit plot all runs/quick",
        "cnnvit plot confusion runs/quick --split test --normalize",
        "cnnvit plot roc runs/quick --model vit-small-input --format pdf",
    ], "Draw figures into DIR/figures/ from the files the run wrote (no model, no GPU):\n"
       "training curves, confusion matrices, ROC curves, reliability diagrams, accuracy\n"
       "against cost, deletion/insertion curves, metric bars, the learning curve, accuracy\n"
       "under corruption; the same files give the same bytes.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("run_dir")
    p.add_argument("--model", default=None, help="only this model's figures")
    p.add_argument("--split", default=None, choices=SPLITS, help="this split (default: test; "
                   "val and test for confusion matrices)")
    p.add_argument("--normalize", action="store_true", help="only the row-normalised "
                   "confusion matrices")
    p.add_argument("--format", default="png", choices=FORMATS)


def _report_parser(sub: Any) -> None:
    p = _command(sub, "report", _cmd_report, "the study report of a run directory", [
        "cnnvit report runs/quick",
        "cnnvit report runs/quick --format html",
    ], "Write DIR/report/report.md, report.html (one self-contained file) and report.pdf\n"
       "from the run's files: executive summary, methodology, results, per-class results,\n"
       "statistics, interpretability, efficiency, recommendations, artifact checklist.\n"
       "Needs the compare stage's results/ (and uses figures/ and explain/ when present).")
    p.add_argument("run_dir")
    p.add_argument("--format", default=",".join(REPORT_FORMATS),
                   help=f"comma list of {', '.join(REPORT_FORMATS)} (default: all)")


def _evaluate_parser(sub: Any) -> None:
    p = _command(sub, "evaluate", _cmd_evaluate, "re-evaluate a trained model directory",
                 ["cnnvit evaluate runs/d-vit --split test"])
    p.add_argument("model_dir")
    p.add_argument("--split", default="val,test", help="comma list of train,val,test")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default=None)


def _predict_parser(sub: Any) -> None:
    p = _command(sub, "predict", _cmd_predict, "predict new images with a trained or exported "
                 "model", [
                     "cnnvit predict runs/quick --model resnet18-small photos/ --out preds.csv",
                     "cnnvit predict runs/d-vit scan.png more/ --top-k 5 --explain overlays/",
                     "cnnvit predict resnet18-small.onnx photos/   # ONNX Runtime, no torch",
                 ], "Predict images (files, folders searched recursively, or an .npz in the "
                    "MedMNIST layout) of any size,\ngrey or colour, through the model's "
                    "training preprocessing (channels, resize, normalisation).\nWrites one CSV "
                    "row per image: path, then class_r, pred_r, prob_r for the top k classes.\n"
                    "Unreadable files are skipped and listed (refused with --strict).")
    p.add_argument("model_path", metavar="MODEL", help="a model directory, a run directory "
                   "(with --model), or an .onnx file from cnnvit export")
    p.add_argument("images", metavar="IMAGES", nargs="+",
                   help="image files, folders of images, or .npz archives")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="the model of a run directory: NAME or NAME/seed_<n>")
    p.add_argument("--out", default="predictions.csv", help="the CSV to write")
    p.add_argument("--top-k", dest="top_k", type=int, default=3, help="classes per image")
    p.add_argument("--explain", default=None, metavar="DIR", help="also write each image's "
                   "explanation overlay into DIR (Grad-CAM for CNNs, attention relevance for "
                   "ViTs; needs a model directory)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="images per batch (default: the model's eval_batch_size; 64 for ONNX)")
    p.add_argument("--strict", action="store_true", help="refuse unreadable files instead of "
                   "skipping them")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (model "
                   "directories; default: the model's config)")


def _export_parser(sub: Any) -> None:
    p = _command(sub, "export", _cmd_export, "export a trained model to ONNX or TorchScript, "
                 "with a parity check", [
                     "cnnvit export runs/quick --model resnet18-small --format onnx",
                     "cnnvit export runs/d-vit --format torchscript --out d-vit.pt "
                     "--dynamic-batch",
                 ], "Write the model's best checkpoint as one file plus a sidecar FILE.json "
                    "(class names, input size\nand channels, mean/std, resize mode, the "
                    "run's test metrics, versions, parity). The export is\nrun on the "
                    "model's val split against PyTorch: the largest probability difference "
                    "must be\n≤ 1e-4 and every predicted class the same, else nothing is "
                    "written (exit 2).\nONNX needs pip install 'cnnvit[export]'.")
    p.add_argument("model_path", metavar="MODEL", help="a model directory, or a run directory "
                   "with --model")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="the model of a run directory: NAME or NAME/seed_<n>")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    p.add_argument("--out", default=None, help="the file to write (default: <model "
                   "dir>/export/<model>.onnx or .torchscript.pt)")
    p.add_argument("--dynamic-batch", dest="dynamic_batch", action="store_true",
                   help="accept any batch size (default: batches of 1)")


def _demo_parser(sub: Any) -> None:
    p = _command(sub, "demo", _cmd_demo, "a local web page: every model's prediction and "
                 "explanation of an image, side by side", [
                     "cnnvit demo runs/quickstart   # then open http://127.0.0.1:7860/",
                     "cnnvit demo runs/blood --port 8080 --top-k 5",
                 ], "Serve a page for a run directory: upload an image (or pick one of the "
                    "run's test samples) and\nsee, for every model, its top classes with "
                    "probabilities, the map of the explain stage's\nmethod over the image, and "
                    "its test accuracy with the run's confidence interval. Works\noffline: "
                    "nothing on the page comes from another machine. Ctrl-C stops it.\n"
                    "Needs pip install 'cnnvit[demo]' (docs/demo.md).")
    p.add_argument("run_dir", metavar="DIR", help="a run directory (cnnvit run --out DIR)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free one)")
    p.add_argument("--top-k", dest="top_k", type=int, default=3, help="classes shown per model")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N | auto")


def _data_parser(sub: Any) -> None:
    synth = ("cnnvit data synth --out synth.npz --shape 28x28x3 --classes 8 "
             "--samples 800,100,200 --seed 0")
    p = _command(sub, "data", _cmd_data, "inspect, download, verify or synthesise datasets",
                 ["cnnvit data info digits", "cnnvit data fetch bloodmnist --size 28", synth])
    dsub = p.add_subparsers(dest="data_cmd", required=True, parser_class=_Parser)
    for name, text in (("info", "sizes, class balance, shape, task, checksum"),
                       ("fetch", "download a MedMNIST or CIFAR dataset"),
                       ("verify", "check that a dataset's files exist and match their md5")):
        d = _command(dsub, name, _cmd_data, text, [f"cnnvit data {name} bloodmnist --size 64"])
        d.add_argument("spec")
        d.add_argument("--size", type=int, default=None,
                       help="MedMNIST native size 28|64|128|224")
        d.add_argument("--data-root", default=None)
        if name != "fetch":
            d.add_argument("--strict", action="store_true", help=SWITCH_HELP["--strict"])
    d = _command(dsub, "synth", _cmd_data, "write a learnable SYNTHETIC npz (tests, benchmarks)",
                 [synth])
    d.add_argument("--out", required=True)
    d.add_argument("--shape", default="28x28x3")
    d.add_argument("--classes", type=int, default=8)
    d.add_argument("--samples", default="800,100,200", help="train,val,test counts")
    d.add_argument("--seed", type=int, default=0)


def _bench_parser(sub: Any) -> None:
    p = _command(sub, "bench", _cmd_bench, "training throughput against the machine's peak",
                 ["cnnvit bench --device cpu --output bench.json",
                  "cnnvit bench --device cpu --reference   # against a DataLoader of PIL images"])
    p.add_argument("--models", default=None, help="comma list of name@size (default: the four "
                   "standard cases; with --reference resnet18-small@28, resnet18@224, "
                   "vit_base_patch16_224@224)")
    p.add_argument("--reference", action="store_true", help="time cnnvit's pipeline against "
                   "torchvision transforms on PIL images in a DataLoader, side by side")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=5, help="timed steps per case (with "
                   "--reference: batches per timed block)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                   help="precision, as in training (auto: bf16 on CUDA; on a CPU with "
                   "native bf16, float32 and bf16 both, with their ratio and the one --amp "
                   "auto trains each model in; else float32)")
    p.add_argument("--output", default=None, help="also write the results as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cnnvit` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with handling_signals(raise_interrupted):  # SIGTERM anywhere: a line and exit 143
            return func(args)
    except CnnvitError as exc:
        print(f"cnnvit: error: {exc.message}", file=sys.stderr)
        return exc.code
    except Interrupted as exc:
        print(f"cnnvit: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("cnnvit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _internal_error(exc, args)


def _internal_error(exc: Exception, args: argparse.Namespace) -> int:
    """One line on stderr for an unexpected exception; its traceback goes to a file."""
    where = _save_traceback("".join(traceback.format_exception(exc)), _output_dir(args))
    saved = f"traceback in {where}" if where else "the traceback could not be saved"
    message = (str(exc).strip().splitlines() or [""])[0]
    print(f"cnnvit: internal error: {type(exc).__name__}: {message} ({saved}; "
          "`cnnvit --debug ...` prints it)", file=sys.stderr)
    return 1


def _output_dir(args: argparse.Namespace) -> Path | None:
    """The existing directory the command writes to (a run or model directory), if any."""
    if args.command == "run" and args.out:
        return RunDir.for_mode(args.out, "reduced" if args.reduced else "full").root
    if args.command == "sweep" and args.out:
        return Path(args.out)
    for name in ("run_dir", "model_dir", "model_path", "cfg_out"):
        value = getattr(args, name, None)
        if value:
            return Path(value)
    return None


def _save_traceback(text: str, folder: Path | None) -> Path | None:
    """Write `text` to `folder/logs/crash-<time>.log` (when `folder` exists), else under
    ~/.cache/cnnvit/ or the temporary directory; the file written, None if none could be."""
    from cnnvit.io import cache_dir

    cache = cache_dir()
    name = f"crash-{datetime.now():%Y%m%d_%H%M%S}-{os.getpid()}.log"
    candidates = [folder / "logs"] if folder is not None and folder.is_dir() else []
    for dest in [*candidates, cache, Path(tempfile.gettempdir())]:
        try:
            dest.mkdir(parents=True, exist_ok=True)
            (dest / name).write_text(text, encoding="utf-8")
        except OSError:
            continue
        return dest / name
    return None


if __name__ == "__main__":
    raise SystemExit(main())

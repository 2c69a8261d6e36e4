"""The MODEL argument of `cnnvit predict` and `cnnvit export`: a model directory, a run
directory with `--model NAME[/seed_<n>]`, or (predict only) an exported .onnx file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnvit.errors import CnnvitError
from cnnvit.rundir import ModelDir, RunDir

WHAT = ("a model directory (holding config.yaml), a run directory with --model NAME, or an "
        "exported .onnx file")


@dataclass(frozen=True)
class Source:
    """Where the model comes from: a trained model directory or an exported ONNX file."""

    path: Path
    onnx: bool

    @property
    def model_dir(self) -> ModelDir:
        return ModelDir(self.path)


def resolve(model: str, name: str | None = None, *, allow_onnx: bool = True) -> Source:
    """The model `model` (and `--model name` for a run directory) names."""
    path = Path(model)
    if not path.exists():
        raise CnnvitError(f"{model}: no such file or directory; MODEL is {WHAT}")
    if path.is_file():
        if path.suffix.lower() == ".onnx" and allow_onnx and name is None:
            return Source(path, onnx=True)
        if path.suffix.lower() == ".onnx" and not allow_onnx:
            raise CnnvitError(f"{model} is already an exported model; export from the model "
                              "directory it came from")
        raise CnnvitError(f"{model} is a file, not {WHAT}")
    if ModelDir(path).config.is_file():
        if name is not None:
            raise CnnvitError(f"--model {name}: {model} is a model directory, not a run "
                              "directory; leave out --model")
        return Source(path, onnx=False)
    if (path / "models").is_dir():
        return Source(_run_model(RunDir(path), name), onnx=False)
    raise CnnvitError(f"{model} is neither a model directory (no config.yaml) nor a run "
                      f"directory (no models/); MODEL is {WHAT}")


def _run_model(run: RunDir, name: str | None) -> Path:
    """The model directory of `name` (`NAME` or `NAME/seed_<n>`) in a run directory."""
    entries = run.models()
    names = list(dict.fromkeys(e.name for e in entries))
    if name is None:
        raise CnnvitError(f"{run.root} is a run directory: pass --model NAME to choose one of "
                          f"its models ({', '.join(names)})")
    base, _, seed = name.partition("/")
    chosen = [e for e in run.models([base])
              if not seed or (e.seed is not None and f"seed_{e.seed}" == seed)]
    if not chosen:
        seeds = [f"seed_{e.seed}" for e in entries if e.name == base and e.seed is not None]
        raise CnnvitError(f"--model {name}: no such seed in {run.root}/models/{base} (have "
                          f"{', '.join(seeds) or 'no seed directories'})")
    if len(chosen) > 1:
        raise CnnvitError(f"--model {name}: {run.root} trained it with several seeds; pick one "
                          f"as --model {base}/seed_<n> "
                          f"({', '.join(f'seed_{e.seed}' for e in chosen)})")
    return chosen[0].dir.path

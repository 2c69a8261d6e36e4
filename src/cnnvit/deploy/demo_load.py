"""`load_demo`: a run's models for `cnnvit demo`, read once at start: the first seed of each
model with the explain stage's method for it (`explain/<model>/index.csv`), its test accuracy
with the intervals of results/statistics.json (`plots.sources.intervals`), and the test
samples offered as thumbnails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnvit.deploy.demo_models import Accuracy, Demo, DemoModel, Sample, png_uri, shown
from cnnvit.errors import CnnvitError
from cnnvit.io import read_json
from cnnvit.rundir import ModelEntry, RunDir

if TYPE_CHECKING:
    from cnnvit.data.types import Split

PER_CLASS, MAX_SAMPLES, THUMB = 2, 48, 64  # test-sample thumbnails: per class, in all, px
log = logging.getLogger("cnnvit.demo")


def load_demo(run_dir: str | Path, *, top_k: int = 3, device: str = "cpu") -> Demo:
    """Load the first seed of every model of the run, their accuracies and the test split."""
    from cnnvit.deploy.predict import check_top_k
    from cnnvit.deploy.torch_model import TorchModel
    from cnnvit.plots.sources import open_run

    src = open_run(run_dir)
    entries = _first_seeds(src.run)
    accuracies = _accuracies(src, entries)
    models = []
    for entry in entries:
        backend = TorchModel(entry.dir, device)
        check_top_k(top_k, backend.facts)
        method, layer = _explain_method(src.run, entry.name)
        models.append(DemoModel(entry.name, backend, method, layer, accuracies.get(entry.name),
                                src.colors[entry.name]))
    facts = [m.backend.facts for m in models]
    for m in models:
        m.prepare(facts[0].class_names)
    if any(f.class_names != facts[0].class_names or f.channels != facts[0].channels
           for f in facts):
        raise CnnvitError(f"{src.run.root}: the models were trained on different classes or "
                          "channels; start one demo per dataset")
    test = _test_split(models[0])
    return Demo(src.run, models, facts[0].class_names, facts[0].channels, top_k, test,
                _samples(src.run, test, models[0].name))


def _first_seeds(run: RunDir) -> list[ModelEntry]:
    """The first seed of each model (as the explain stage explains)."""
    first: dict[str, ModelEntry] = {}
    for entry in run.models():
        first.setdefault(entry.name, entry)
    return list(first.values())


def _explain_method(run: RunDir, name: str) -> tuple[str, str | None]:
    """(method, Grad-CAM layer) the explain stage used for `name`; ("auto", None) when it did
    not run: the stage's default."""
    import pandas as pd

    index = run.explain / name / "index.csv"
    options = run.explain / "options.json"
    layer = read_json(options).get("target_layer") if options.is_file() else None
    try:
        methods = pd.read_csv(index)["method"].dropna()
        return (str(methods.iloc[0]), layer) if len(methods) else ("auto", None)
    except (OSError, ValueError, KeyError):
        return "auto", None


def _accuracies(src: Any, entries: list[ModelEntry]) -> dict[str, Accuracy]:
    """Each model's test accuracy (the mean over its seeds) with the interval statistics.json
    gives (`plots.sources.interval`: bootstrap for one seed, t-interval over several)."""
    from cnnvit.plots.sources import interval, intervals, metrics

    notes: list[str] = []
    table = intervals(src, "test", notes.append)
    if notes:
        log.warning(f"  warning: no confidence intervals ({notes[0].strip()}); run cnnvit "
                    f"compare {src.run.root} to add them")
    stats = src.run.results / "statistics.json"
    level = read_json(stats).get("settings", {}).get("confidence", 0.95) if table is not None \
        else 0.95
    out = {}
    for name in dict.fromkeys(e.name for e in entries):
        seeds = [e for e in src.run.models() if e.name == name]
        try:
            values = [float(metrics(e, "test")["accuracy"]) for e in seeds]
        except (CnnvitError, KeyError, TypeError, ValueError):
            continue
        bounds = interval(table, name, "accuracy", [e.seed for e in seeds])
        what = (f"{level * 100:g} % bootstrap interval" if len(seeds) == 1 else
                f"mean of {len(seeds)} seeds, {level * 100:g} % t-interval")
        low, high = bounds if bounds is not None else (None, None)
        out[name] = Accuracy(float(np.mean(values)), low, high,
                             what if bounds is not None else "no interval recorded")
    return out


def _test_split(model: DemoModel) -> Split | None:
    """The run's test split (for the thumbnails), or None, with a warning, when its data
    are not on this machine."""
    from cnnvit.engine.setup import load_data

    try:
        return load_data(model.backend.setup.cfg)["test"]
    except (CnnvitError, KeyError) as e:
        reason = e.message if isinstance(e, CnnvitError) else f"no {e} split"
        log.warning(f"  warning: the run's test images cannot be loaded ({reason}); the page "
                    "offers uploads only")
        return None


def _samples(run: RunDir, test: Split | None, first_model: str) -> list[Sample]:
    """Thumbnails: `PER_CLASS` test samples of each class and the misclassified ones, those
    the explain stage chose (explain/samples.csv, when it explained the test split), else a
    seeded selection as the stage makes it."""
    import pandas as pd

    from cnnvit.explain.stage import select_samples

    if test is None:
        return []
    chosen = select_samples(test.labels, PER_CLASS, {}, 0, seed=0)
    path = run.explain / "samples.csv"
    if path.is_file():
        try:
            split = pd.read_csv(run.explain / first_model / "index.csv")["split"]
            stage = pd.read_csv(path)
            stage = stage[stage["index"].between(0, len(test.labels) - 1)]
            if len(stage) and (split == "test").all():
                chosen = pd.concat([stage[stage["reason"] == "class"].groupby("label").head(
                    PER_CLASS), stage[stage["reason"] != "class"]])
        except (OSError, ValueError, KeyError):
            pass  # a damaged selection: the seeded one
    chosen = chosen.drop_duplicates("index").head(MAX_SAMPLES)
    return [Sample(int(i), int(test.labels[i]), _note(str(reason)),
                   png_uri(shown(test.images[int(i)], THUMB)))
            for i, reason in zip(chosen["index"], chosen["reason"], strict=True)]


def _note(reason: str) -> str:
    return f"misclassified by {reason[6:]} in the run" if reason.startswith("error:") else ""


"""`cnnvit robustness` and the robustness stage of `cnnvit run`: every model (every seed) of a
run on the test split, clean and under each corruption of its dataset's set at severities 1–5.

Writes `DIR/robustness/cache/<corruption>.npz` (the corrupted test sets, uint8, made once and
shared by every model), `DIR/robustness/options.json` (the set, its reference and the seed)
and, per model, `predictions_robustness.npz`: the predicted class of every test sample, clean
and under every corruption × severity. `cnnvit compare` turns these into
`results/robustness*.csv`. A model whose file was made from the same options after its best
checkpoint is skipped unless `force`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnvit import fmt
from cnnvit.data.types import Dataset, Split
from cnnvit.engine.evaluate import load_model, predict
from cnnvit.engine.runtime import amp_dtype
from cnnvit.engine.setup import Setup, data_size
from cnnvit.errors import CnnvitError
from cnnvit.io import atomic_write, atomic_write_json
from cnnvit.robustness import corruptions
from cnnvit.rundir import ModelDir, ModelEntry, RunDir

SEED = 0


def robustness_run(run_dir: str | Path, *, seed: int = SEED, force: bool = False,
                   device: str | None = None, logger: logging.Logger | None = None
                   ) -> list[Path]:
    """Predict every model of the run on its corrupted test sets; returns the
    `predictions_robustness.npz` files (made now or already current)."""
    run = RunDir(run_dir)
    log = logger or logging.getLogger("cnnvit.robustness")
    datasets: dict[tuple, Dataset] = {}
    written = []
    for entry in run.models():
        cfg, _ = entry.dir.read_config()
        key = (cfg.dataset, data_size(cfg), cfg.data_root)
        setup, model, _ = load_model(entry.dir.path, device=device, dataset=datasets.get(key))
        datasets.setdefault(key, setup.dataset)
        cset = corruptions.for_dataset(setup.info)
        options = {"reference": cset.reference, "corruptions": list(cset.names),
                   "families": cset.family, "severities": list(corruptions.SEVERITIES),
                   "seed": seed, "definitions_version": corruptions.DEFINITIONS_VERSION}
        atomic_write_json(run.robustness / "options.json", options)
        out = entry.dir.robustness
        if not force and _is_current(entry.dir, options):
            log.info(f"  {_label(entry)}: robustness predictions up to date ({out}); --force "
                     "makes them again")
        else:
            t0 = time.perf_counter()
            _write(out, _predict_all(run, setup, model, cset, seed), options)
            log.info(f"  {_label(entry)}: {len(cset.names)} corruptions × "
                     f"{len(corruptions.SEVERITIES)} severities in "
                     f"{fmt.seconds(time.perf_counter() - t0)} ({cset.reference})")
        written.append(out)
    return written


def _label(entry: ModelEntry) -> str:
    return entry.name + ("" if entry.seed is None else f" seed {entry.seed}")


def _is_current(model_dir: ModelDir, options: dict[str, Any]) -> bool:
    """The model's robustness file was made with `options` from its current best checkpoint."""
    path = model_dir.robustness
    if not path.is_file() or path.stat().st_mtime < model_dir.checkpoint("best").stat().st_mtime:
        return False
    try:
        with np.load(path, allow_pickle=False) as stored:
            return bool(json.loads(str(stored["options"])) == options)
    except (OSError, ValueError, KeyError):
        return False


def _predict_all(run: RunDir, setup: Setup, model: torch.nn.Module,
                 cset: corruptions.CorruptionSet, seed: int) -> dict[str, np.ndarray]:
    """Clean and corrupted predictions: arrays `labels` (N), `clean` (N) and `predictions`
    (corruptions × severities × N)."""
    test = setup.dataset["test"]
    if len(test) == 0:
        raise CnnvitError(f"{setup.cfg.dataset}: the test split is empty; robustness needs "
                          "test images (or run with --no-robustness)")
    preds = np.empty((len(cset.names), len(corruptions.SEVERITIES), len(test)), np.int64)
    for i, name in enumerate(cset.names):
        path = run.robustness / "cache" / f"{name}.npz"
        sets = corruptions.cached(path, test.images, cset, name, seed, setup.device)
        for j in range(len(corruptions.SEVERITIES)):
            preds[i, j] = _classes(setup, model, sets[j], test.labels)
    return {"labels": test.labels, "clean": _classes(setup, model, test.images, test.labels),
            "predictions": preds}


def _classes(setup: Setup, model: torch.nn.Module, images: np.ndarray,
             labels: np.ndarray) -> np.ndarray:
    """The predicted class of every image, through the model's evaluation pipeline."""
    pipe = setup.pipeline(Split(images, labels))
    probs, _ = predict(model, pipe, setup.cfg.eval_batch_size,
                       amp_dtype(setup.cfg.amp, setup.device))
    return probs.argmax(axis=1)


def _write(path: Path, arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    def save(f: Any) -> None:
        np.savez_compressed(f, labels=arrays["labels"], clean=arrays["clean"],
                            predictions=arrays["predictions"],
                            corruptions=np.array(options["corruptions"]),
                            severities=np.array(options["severities"]),
                            options=np.array(json.dumps(options)))

    atomic_write(path, save, binary=True)

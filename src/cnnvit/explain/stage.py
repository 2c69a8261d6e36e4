"""`cnnvit explain DIR`: maps for every model of a run on one shared, seeded sample selection.

Writes, under `DIR/explain/`:
- `samples.csv`: the selection (≥ `per_class` images of each class, plus up to
  `include_errors` misclassified images per model), shared by every model;
- `<model>/<split>_i<index>_true<y>_pred<p>.png` overlays and `<model>/index.csv`;
- `gallery_class_<k>.png` (rows = samples, columns = input | each model) and
  `gallery_errors.png`; under each model's tile its prediction by class name, "✓" in green
  or "✗" in red with a red frame round the tile;
- `faithfulness.csv`: deletion / insertion areas per sample, model and method, and for a
  random map as the baseline; `faithfulness_curves.csv`: the mean deletion / insertion curve
  (model, method, fraction, deletion, insertion); `sanity.csv`: the model-randomisation check.

Method "auto" is Grad-CAM for CNNs and gradient-weighted attention relevance (Chefer et al.
2021) for ViTs: on the quickstart run it is the ViT method that passes the randomisation check
(attention rollout does not: its maps barely depend on the weights) and beats a random map on
both deletion and insertion (Grad-CAM on the last block does not).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cnnvit import models as models_mod
from cnnvit.data.types import Dataset, Split
from cnnvit.engine.evaluate import load_model, predict
from cnnvit.engine.runtime import amp_dtype
from cnnvit.engine.setup import Setup, data_size
from cnnvit.errors import CnnvitError
from cnnvit.explain.cams import explain
from cnnvit.explain.faithfulness import deletion_insertion, mean_curves, random_maps, road_scores
from cnnvit.explain.figures import Column, OverlayWriter, Tile, gallery, prediction_marks
from cnnvit.explain.methods import ATTENTION_METHODS, CAM_METHODS, VIT_DEFAULT, VIT_METHODS
from cnnvit.explain.sanity import randomization_check
from cnnvit.io import atomic_write_csv
from cnnvit.rundir import ModelDir, RunDir

SANITY_SAMPLES = 16
log = logging.getLogger("cnnvit.explain")


@dataclass
class ModelMaps:
    """One model's explanation of the selected samples."""

    name: str
    method: str
    maps: np.ndarray          # N×H×W in [0, 1] at the model's input size
    predictions: np.ndarray   # N
    confidence: np.ndarray    # N
    index: pd.DataFrame       # one row per overlay file (written as index.csv)


def select_samples(labels: np.ndarray, per_class: int, errors: dict[str, np.ndarray],
                   include_errors: int, seed: int) -> pd.DataFrame:
    """Seeded selection: `per_class` images of each class, then up to `include_errors`
    misclassified images of each model (`errors[name]` = its wrong indices)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        rows += [(int(i), "class") for i in np.sort(rng.choice(idx, min(per_class, len(idx)),
                                                               replace=False))]
    chosen = {i for i, _ in rows}
    for name, wrong in errors.items():
        fresh = np.array([i for i in wrong if i not in chosen], dtype=np.int64)
        picked = rng.choice(fresh, min(include_errors, len(fresh)), replace=False)
        for i in np.sort(picked):
            rows.append((int(i), f"error:{name}"))
            chosen.add(int(i))
    df = pd.DataFrame(rows, columns=["index", "reason"])
    df["label"] = labels[df["index"].to_numpy()]
    return df


def _method_for(requested: str, family: str) -> str:
    """The method a model of `family` uses when `requested` was asked for the whole run:
    CNNs use Grad-CAM for "auto" and the ViT-only methods; ViTs use VIT_DEFAULT for "auto"
    and Grad-CAM on their last block for "gradcam" / "gradcam++"."""
    if family == "cnn":
        return "gradcam" if requested in ("auto", *VIT_METHODS) else requested
    if requested == "auto":
        return VIT_DEFAULT
    return "vit-gradcam" if requested in CAM_METHODS else requested


@dataclass(frozen=True)
class Options:
    """How every model of the run is explained."""

    split: str
    method: str
    target_layer: str | None
    steps: int
    seed: int
    sanity: bool
    road: bool
    label: str  # " [REDUCED mode]" in figure titles of a reduced run, else ""
    progress: bool  # tqdm bars on a terminal's stderr


def explain_run(run_dir: str | Path, *, models: list[str] | None = None, split: str = "test",
                per_class: int = 10, method: str = "auto", include_errors: int = 5,
                target_layer: str | None = None, steps: int = 10, seed: int = 0,
                sanity: bool = True, road: bool = False, device: str | None = None,
                logger: logging.Logger | None = None, progress: bool = True) -> Path:
    """Explain every model of a run on the same samples; returns `DIR/explain`.

    Warnings (an explanation that ignores the model's weights) go to `logger`. `road` adds
    pytorch-grad-cam's ROAD scores (Rong et al. 2022) to faithfulness.csv (slower: one
    sparse solve per image and percentile). `progress`: tqdm bars over the models and their
    overlays, shown only when stderr is a terminal.
    """
    run = RunDir(run_dir)
    mode = run.mode()
    opts = Options(split, method, target_layer, steps, seed, sanity, road,
                   " [REDUCED mode]" if mode == "reduced" else "", progress)

    def write_csv(df: pd.DataFrame, path: Path) -> None:
        atomic_write_csv(df.assign(mode=mode), path)

    if split not in ("train", "val", "test"):
        raise CnnvitError(f"--split takes train, val or test; got {split}")
    loaded, dataset = _load_models(run, models, device)
    out = run.explain
    out.mkdir(parents=True, exist_ok=True)
    labels = dataset[split].labels
    samples = select_samples(labels, per_class, _errors(loaded, split), include_errors, seed)
    write_csv(samples, out / "samples.csv")
    idx = samples["index"].to_numpy()
    subset = Split(dataset[split].images[idx], labels[idx])
    class_names = list(dataset.info.class_names)
    results: dict[str, ModelMaps] = {}
    faith_rows, curve_rows, sanity_rows = [], [], []
    bar = _progress(loaded.items(), opts, desc="explain", unit="model")
    for name, (setup, model, _) in bar:
        bar.set_postfix_str(name)
        results[name], faith, curves, check = _explain_model(name, setup, model, subset, idx,
                                                             class_names, opts, out)
        write_csv(results[name].index, out / name / "index.csv")
        faith_rows += faith
        curve_rows += curves
        sanity_rows += [] if check is None else [check]
    write_csv(pd.DataFrame(faith_rows), out / "faithfulness.csv")
    write_csv(pd.DataFrame(curve_rows), out / "faithfulness_curves.csv")
    if sanity_rows:
        write_csv(pd.DataFrame(sanity_rows), out / "sanity.csv")
    for check in (c for c in sanity_rows if c["flag"]):
        (logger or log).warning(
            f"  warning: {check['model']}'s {check['method']} maps barely change when the "
            f"model's weights are randomised (Spearman {check['mean_spearman']:.2f}): they do "
            "not explain this model")
    _galleries(out, samples, subset, results, class_names, split, opts.label)
    return out


def _load_models(run: RunDir, names: list[str] | None, device: str | None
                 ) -> tuple[dict[str, tuple[Setup, torch.nn.Module, ModelDir]], Dataset]:
    """The first seed of each model, loaded, and the one dataset they were all trained on."""
    dirs: dict[str, ModelDir] = {}
    for entry in run.models(names):
        dirs.setdefault(entry.name, entry.dir)
    datasets: dict[tuple, Dataset] = {}  # models that read the same files share one copy
    loaded = {}
    for name, d in dirs.items():
        cfg, _ = d.read_config()
        key = (cfg.dataset, data_size(cfg), cfg.data_root)
        setup, model, _ = load_model(d.path, device=device, dataset=datasets.get(key))
        datasets.setdefault(key, setup.dataset)
        loaded[name] = (setup, model, d)
    specs = sorted({k[0] for k in datasets})
    if len(specs) > 1:
        raise CnnvitError(f"{run.root}: the models were trained on different datasets "
                          f"({', '.join(specs)}); explain them in separate runs")
    return loaded, next(iter(datasets.values()))


def _errors(loaded: dict[str, tuple[Setup, torch.nn.Module, ModelDir]], split: str
            ) -> dict[str, np.ndarray]:
    """Each model's misclassified indices of `split`, from its predictions file."""
    errors = {}
    for name, (_, _, d) in loaded.items():
        if d.predictions(split).is_file():
            p = pd.read_csv(d.predictions(split))
            errors[name] = p["index"].to_numpy()[p["prediction"].to_numpy()
                                                  != p["label"].to_numpy()]
    return errors


def _explain_model(name: str, setup: Setup, model: torch.nn.Module, subset: Split,
                   idx: np.ndarray, class_names: list[str], opts: Options, out: Path
                   ) -> tuple[ModelMaps, list[dict[str, Any]], list[dict[str, Any]],
                              dict[str, Any] | None]:
    """One model's maps and overlays, faithfulness rows (per sample, and the mean curves)
    and randomisation check."""
    use = _method_for(opts.method, models_mod.family(model))
    pipe = setup.pipeline(subset)
    x = next(pipe.batches(len(pipe)))[0]
    probs = torch.from_numpy(predict(model, pipe, setup.cfg.eval_batch_size,
                                     amp_dtype(setup.cfg.amp, setup.device))[0])
    pred = probs.argmax(1)
    kwargs = ({"layer": opts.target_layer} if opts.target_layer and use not in ATTENTION_METHODS
              else {})
    maps, used = explain(model, x, use, targets=pred, **kwargs)
    result = _write_overlays(out / name, name, used, subset, idx, maps.numpy(), pred.numpy(),
                             probs.max(1).values.numpy(), class_names, opts)
    faith = deletion_insertion(model, x, maps, pred, steps=opts.steps)
    height, width = maps.shape[1:]
    rand = deletion_insertion(model, x, random_maps(len(x), height, width, seed=opts.seed),
                              pred, steps=opts.steps)
    if opts.road:
        faith.update({f"road_{k}": v for k, v in road_scores(model, x, maps, pred,
                                                             seed=opts.seed).items()})
    rows, curves = [], []
    for kind, res in ((used, faith), ("random", rand)):
        curves += [{"model": name, "method": kind, **c} for c in mean_curves(res)]
        extra = [k for k in res if k.startswith("road_")]
        rows += [{"model": name, "method": kind, "index": int(i), "label": int(y),
                  "target": int(t), "deletion_auc": float(res["deletion_auc"][j]),
                  "insertion_auc": float(res["insertion_auc"][j]),
                  **{k: float(res[k][j]) for k in extra}}
                 for j, (i, y, t) in enumerate(zip(idx, subset.labels, pred.numpy(),
                                                   strict=True))]
    if not opts.sanity:
        return result, rows, curves, None
    n = min(SANITY_SAMPLES, len(x))
    check = randomization_check(model, x[:n], use, targets=pred[:n], seed=opts.seed, **kwargs)
    return result, rows, curves, {"model": name, "method": used, "samples": n,
                                  "mean_spearman": check["mean"], "flag": bool(check["flag"])}


def _progress(iterable: Iterable[Any], opts: Options, **kwargs: Any) -> Any:
    """`iterable` wrapped in a tqdm bar, shown only on a terminal's stderr (as in training:
    never in logs or pipes) and removed when done."""
    return tqdm(iterable, leave=False, disable=not opts.progress or not sys.stderr.isatty(),
                **kwargs)


def _write_overlays(folder: Path, name: str, method: str, subset: Split, idx: np.ndarray,
                    maps: np.ndarray, pred: np.ndarray, conf: np.ndarray,
                    class_names: list[str], opts: Options) -> ModelMaps:
    folder.mkdir(parents=True, exist_ok=True)
    writer = OverlayWriter(method, maps.shape[-1])
    marks = prediction_marks(subset.labels, pred, conf, class_names)
    rows = []
    try:
        for j, i in enumerate(_progress(idx, opts, desc=f"{name} overlays", unit="image")):
            y, p, mark = int(subset.labels[j]), int(pred[j]), marks[j]
            fname = f"{opts.split}_i{int(i):05d}_true{y}_pred{p}.png"
            writer.write(folder / fname, subset.images[j], maps[j],
                         f"{name} · {method} · {opts.split} #{int(i)}{opts.label}",
                         f"true: {class_names[y]} · {mark.caption} · confidence {conf[j]:.2f}",
                         mark.colour)
            rows.append({"file": fname, "split": opts.split, "index": int(i), "label": y,
                         "label_name": class_names[y], "prediction": p,
                         "prediction_name": class_names[p], "confidence": float(conf[j]),
                         "correct": y == p, "method": method})
    finally:
        writer.close()
    return ModelMaps(name, method, maps, pred, conf, pd.DataFrame(rows))


def _galleries(out: Path, samples: pd.DataFrame, subset: Split, results: dict[str, ModelMaps],
               class_names: list[str], split: str, label: str) -> dict[str, list[Tile]]:
    """The per-class galleries and the error gallery; returns each file's drawn tiles."""
    reasons = samples["reason"].to_numpy()
    drawn = {}
    for k in np.unique(subset.labels):
        rows = np.flatnonzero((subset.labels == k) & (reasons == "class"))
        if len(rows):
            drawn[f"gallery_class_{int(k)}.png"] = _gallery(
                out / f"gallery_class_{int(k)}.png", rows, samples, subset, results,
                class_names, f"{split}: class {class_names[int(k)]} — input and each model's "
                f"map{label}")
    errs = np.flatnonzero(reasons != "class")
    if len(errs):
        drawn["gallery_errors.png"] = _gallery(
            out / "gallery_errors.png", errs, samples, subset, results, class_names,
            f"{split}: misclassified samples — input and each model's map; a red frame and ✗ "
            f"mark the models that got it wrong{label}")
    return drawn


def _gallery(path: Path, rows: np.ndarray, samples: pd.DataFrame, subset: Split,
             results: dict[str, ModelMaps], class_names: list[str], title: str) -> list[Tile]:
    idx = samples["index"].to_numpy()
    labels = subset.labels[rows]
    columns = [Column(name, m.method, [m.maps[r] for r in rows],
                      prediction_marks(labels, m.predictions[rows], m.confidence[rows],
                                       class_names))
               for name, m in results.items()]
    captions = [f"true: {class_names[int(y)]}\n#{idx[r]}" for r, y in zip(rows, labels,
                                                                           strict=True)]
    return gallery(path, [subset.images[r] for r in rows], captions, columns, title)

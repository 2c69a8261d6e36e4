"""Figures of a run directory, drawn from its files alone: no model, no torch, no GPU.

    cnnvit.plots.render.plot(run_dir, kind="all", model=None, split=None, normalize=False,
                             fmt="png", log=None) -> [written paths]

Each kind writes `DIR/figures/<name>.<fmt>`:

    curves        curves_<model>, curves_all: train/val loss and accuracy, val macro-F1
    confusion     confusion_<split>_<model>[_normalized]: counts and row-normalised
    roc           roc_<split>_<model>, roc_<split>_all: one-vs-rest, micro and macro
    reliability   reliability_<split>_<model>: from the ECE bins
    metrics       metrics_<split>, per_class_f1_<split>: bars, CIs from statistics.json
    cost          cost_<split>: accuracy against parameters, FLOPs and training time
    faithfulness  faithfulness: mean deletion / insertion curves against a random map
    learning      learning_curve: test accuracy and macro-F1 against training images
    robustness    robustness: test accuracy against corruption severity, per corruption

`<split>` is test, or val and test for confusion matrices (`--split` picks one). `<model>`
is the model's name, `<model>_seed<n>` with several seeds. A figure that compares
models is named `<name>_<model>` when drawn for one model (`--model`). Every model has one
colour in every figure (`style.model_colors`); figures are written atomically and redrawn
byte for byte from the same files. This module itself imports nothing heavy (the command
line reads `KINDS` from it).
"""

KINDS = ("curves", "confusion", "roc", "reliability", "cost", "faithfulness", "metrics",
         "learning", "robustness", "all")
FORMATS = ("png", "pdf", "svg")
SPLITS = ("val", "test")

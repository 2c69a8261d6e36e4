"""The methodology section: data, preprocessing, models, optimisation, seeds, hardware and
software, all from the manifest and the models' saved configs."""

from __future__ import annotations

from typing import Any

from cnnvit import fmt
from cnnvit.document import Block, Bullets, Para, Section, Table
from cnnvit.report.facts import Facts

AUGMENTATION = (("hflip", "horizontal flip"), ("vflip", "vertical flip"),
                ("crop_padding", "random crop, padding {}"), ("autoaugment", "AutoAugment {}"),
                ("randaugment_n", "RandAugment n={}"), ("random_erasing", "random erasing p={}"))


def _augmentation(cfg: dict[str, Any]) -> str:
    used = [label.format(cfg[key]) for key, label in AUGMENTATION
            if cfg.get(key) not in (None, False, 0, 0.0, "none")]
    return ", ".join(used) or "none"


def _v(x: Any, spec: str = "", suffix: str = "") -> str:
    """A config value as text (`spec` formats numbers), n/a when it was not recorded."""
    return fmt.NA if x is None else f"{x:{spec}}{suffix}"


def _numbers(values: Any) -> str:
    return ", ".join(f"{v:.4g}" for v in values) if isinstance(values, list) else fmt.NA


def data_blocks(facts: Facts) -> list[Block]:
    """What the data is, how it was split, and its checksum."""
    blocks: list[Block] = []
    for label, d in facts.manifest.get("data", {}).items():
        md5 = d.get("md5") or "not recorded for this source"
        classes = d.get("classes") or []
        blocks.append(Bullets([
            f"Dataset: {label} — {d.get('name')} (spec `{d.get('spec')}`), task "
            f"{d.get('task')}, {len(classes)} classes, native image size {d.get('native_size')}"
            " px.",
            f"Splits: {d.get('split_note')}.",
            f"md5: {md5}.",
            *(["**The images are synthetic**: numbers say nothing about real data."]
              if d.get("synthetic") else [])]))
        sizes = d.get("split_sizes", {})
        blocks.append(Table(["Split", "Images"], [[k, f"{v:,}"] for k, v in sizes.items()]))
    return blocks or [Para("The manifest records no data description.")]


def preprocessing_table(facts: Facts) -> Table:
    """Per model: input size, channels, normalisation, resizing and augmentation."""
    rows = []
    for model, c in facts.configs.items():
        cfg, res = c["config"], c["resolved"]
        rows.append([model, _v(res.get("image_size"), suffix=" px"), _v(res.get("in_chans")),
                     f"mean {_numbers(res.get('mean'))}; std {_numbers(res.get('std'))}",
                     _v(cfg.get("resize_mode")), _augmentation(cfg) if cfg else fmt.NA])
    return Table(["Model", "Input", "Channels", "Normalisation", "Resize", "Augmentation"], rows,
                 6)


def models_table(facts: Facts) -> Table:
    """Per model: architecture, family, size, FLOPs and initial weights."""
    rows = []
    for model, c in facts.configs.items():
        cfg, res = c["config"], c["resolved"]
        kwargs = ", ".join(f"{k}={v}" for k, v in (cfg.get("model_kwargs") or {}).items())
        weights = cfg.get("weights") or ("pretrained" if cfg.get("pretrained") else
                                         "random init" if cfg else fmt.NA)
        rows.append([model, _v(cfg.get("model")) + (f" ({kwargs})" if kwargs else ""),
                     _v(res.get("family")), str(weights), fmt.si(res.get("parameters")),
                     fmt.si(res.get("flops_per_image"), "FLOPs")])
    return Table(["Model", "Architecture", "Family", "Weights", "Parameters", "FLOPs/image"],
                 rows, 4)


def optimisation_table(facts: Facts) -> Table:
    """Per model: the optimiser, schedule, batch, epochs, precision and selection rule."""
    rows = []
    for model, c in facts.configs.items():
        cfg = c["config"]
        rows.append([model, _v(cfg.get("optimizer")),
                     f"{_v(cfg.get('scheduler'))}, warm-up {_v(cfg.get('warmup_epochs'), 'g')} ep",
                     _v(cfg.get("amp")), f"best val {_v(cfg.get('selection_metric'))}",
                     _v(cfg.get("lr"), "g"), _v(cfg.get("weight_decay"), "g"),
                     _v(cfg.get("batch_size")), _v(cfg.get("epochs")),
                     _v(cfg.get("label_smoothing"), "g")])
    return Table(["Model", "Optimiser", "Schedule", "Mixed precision", "Checkpoint", "LR",
                  "Weight decay", "Batch", "Epochs", "Label smoothing"], rows, 5)


def environment_blocks(facts: Facts) -> list[Block]:
    """Seeds, mode, command, hardware and software versions."""
    m = facts.manifest
    seeds = ", ".join(str(s) for s in m.get("seeds", [])) or fmt.NA
    mode = ("**reduced mode**: a shortened schedule on smaller inputs, not the full protocol"
            if facts.mode == "reduced" else "full mode")
    world = m.get("world_size", 1)
    processes = (f"; each model trained by {world} processes (torchrun, "
                 f"{m.get('distributed_backend')}, global batch split equally)" if world > 1
                 else "")
    items = [f"Preset: {m.get('preset')} — {m.get('description')}; {mode}.",
             f"Seeds: {seeds}.", f"Command: `{m.get('command')}`.",
             f"Hardware: {m.get('device')} ({m.get('device_name')}), {m.get('cpu_count')} CPU "
             f"cores, {m.get('gpu_count')} GPUs{processes}; {m.get('platform')}.",
             f"cnnvit {m.get('cnnvit_version')}, git commit {m.get('git_commit') or fmt.NA}."]
    versions = m.get("versions", {})
    return [Bullets(items), Table(["Package", "Version"],
                                  [[k, str(v or "not installed")] for k, v in versions.items()],
                                  2)]


def methodology(facts: Facts) -> Section:
    """The methodology section, with one subsection per topic."""
    return Section("Methodology", [], [
        Section("Data", data_blocks(facts)),
        Section("Preprocessing", [preprocessing_table(facts)]),
        Section("Models", [models_table(facts)]),
        Section("Optimisation", [optimisation_table(facts)]),
        Section("Seeds, hardware and software", environment_blocks(facts))])

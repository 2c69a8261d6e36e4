"""The study report's sections, built from the run's files (`Facts`).

Every number is taken from an artifact file and formatted by `cnnvit.fmt`; every verdict
comes from results/statistics.json through the same sentences summary.md uses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from cnnvit import fmt
from cnnvit.compare import curves, robustness, summary
from cnnvit.document import Block, Bullets, Figure, Para, Section, Table
from cnnvit.io import read_json
from cnnvit.report.facts import Facts
from cnnvit.report.methodology import methodology
from cnnvit.report.recommend import RULES, recommendations
from cnnvit.rundir import MODEL_FILES, RUN_FILES, TRAINING_TIME

REPORT_FILES = "report/report.*"
GALLERY_EXCERPTS = 2  # class galleries shown in the report (all are in explain/)


@dataclass
class Document:
    """A titled document: intro blocks, then sections."""

    title: str
    intro: list[Block]
    sections: list[Section]


def _figures(facts: Facts, names: list[tuple[str, str]]) -> list[Block]:
    return [Figure(path, caption) for name, caption in names
            if (path := facts.figure(name)) is not None]


def _interval(facts: Facts, model: str, metric: str) -> str:
    rows = [r for r in facts.statistics.get("intervals", [])
            if r["model"] == model and r["metric"] == metric]
    if len(rows) != 1:
        return fmt.NA
    r = rows[0]
    return f"{fmt.metric(r['value'])} [{fmt.metric(r['low'])}, {fmt.metric(r['high'])}]"


def executive_summary(facts: Facts) -> Section:
    """The setup in one line, each model's test accuracy with its interval, the verdicts on
    the primary metrics and the recommendations."""
    stats = facts.stats
    data: dict[str, Any] = next(iter(facts.manifest.get("data", {}).values()), {})
    sizes = data.get("split_sizes", {})
    split_text = "/".join(f"{v:,}" for v in sizes.values()) or fmt.NA
    dataset = ", ".join(dict.fromkeys(facts.final["dataset"].dropna().astype(str)))
    setup = (f"{len(stats)} models trained on {dataset} (train/val/test: {split_text} images), "
             f"{summary.seeds_phrase(stats['n_seeds'])}, {facts.mode} mode. Test split "
             "primary.")
    confidence = facts.statistics.get("settings", {}).get("confidence", 0.95) * 100
    accuracy = [f"{m} ({facts.families[m]}): test accuracy "
                + (fmt.metric(r["accuracy"], r["accuracy_std"]) + " over seeds"
                   if r["n_seeds"] > 1 else _interval(facts, str(m), "accuracy"))
                for m, r in stats.iterrows()]
    items, warnings = summary.metric_items(facts.learners, facts.verdicts)
    blocks: list[Block] = [Para(setup),
                           Para(f"Test accuracy with its {confidence:g} % interval:"),
                           Bullets(accuracy), Para("What the statistics support:"),
                           Bullets(items[:2]), *(Para(w) for w in warnings),
                           Para("Recommendations (rules in the Recommendations section):"),
                           Bullets(recommendations(facts))]
    return Section("Executive summary", blocks)


def quantitative(facts: Facts) -> Section:
    """Test (primary) and validation metrics, training curves, ROC and confusion matrices."""
    val = summary.model_stats(facts.final[facts.final["split"] == "val"])
    confusions = [(f"confusion_test_{m}_normalized", f"{m}: test confusion matrix, row-"
                   "normalised") for m in facts.stats.index]
    return Section("Results", [
        Para("Test split (primary):"), summary.test_table(facts.stats, facts.families),
        Para("Validation split (used for checkpoint selection, so optimistic):"),
        summary.test_table(val, facts.families),
        *_figures(facts, [("metrics_test", "Test metrics with 95 % bootstrap intervals"),
                          ("curves_all", "Training curves, all models"),
                          ("roc_test_all", "ROC curves (test), micro and macro averages"),
                          *confusions])])


def per_class(facts: Facts) -> Section:
    """Test F1 per class: classes × models."""
    test = facts.per_class[facts.per_class["split"] == "test"]
    table = test.groupby(["class_index", "class", "model"], sort=False)["f1"].mean().unstack(
        "model")
    models = [m for m in facts.stats.index if m in table.columns]
    rows = [[str(cls), *(fmt.metric(r[m]) for m in models)]
            for (_, cls), r in table.iterrows()]
    return Section("Per-class results", [
        Para("Test F1 per class (mean over seeds where there are several); precision, "
             "recall, accuracy and AUC per class are in results/per_class.csv."),
        Table(["Class", *models], rows),
        *_figures(facts, [("per_class_f1_test", "Test F1 per class")])])


def statistics(facts: Facts) -> Section:
    """The significance tests, intervals and calibration."""
    reliability = [(f"reliability_test_{m}", f"{m}: reliability diagram (test)")
                   for m in facts.stats.index]
    return Section("Statistics", [], [
        *summary.statistics_sections(facts.learners, facts.statistics, facts.verdicts),
        Section("Calibration", _figures(facts, reliability))])


def interpretability(facts: Facts) -> Section:
    """Gallery excerpts, faithfulness and sanity numbers, and the caveats they call for."""
    explain = facts.run.explain
    if facts.faithfulness is None:
        return Section("Interpretability", [Para(
            "The explain stage did not run for this run directory (`cnnvit explain DIR` "
            "makes the maps, then `cnnvit report DIR` adds them here).")])
    galleries = sorted(explain.glob("gallery_class_*.png"),
                       key=lambda p: (len(p.stem), p.stem))[:GALLERY_EXCERPTS]
    blocks: list[Block] = [
        Para("Every model explains the same seeded selection of test images "
             "(explain/samples.csv). Deletion (lower is better) and insertion (higher is "
             "better) areas measure how fast the predicted class's probability falls or rises "
             "as the most salient pixels are removed or restored; a random map on the same "
             "model is the baseline. The randomisation check (Adebayo et al. 2018) re-"
             "initialises the model: maps that barely change do not show what it learned."),
        *(Figure(p, f"Gallery excerpt: {p.stem.replace('_', ' ')}") for p in galleries),
        *([Figure(explain / "gallery_errors.png", "Misclassified samples, every model")]
          if (explain / "gallery_errors.png").is_file() else []),
        *_figures(facts, [("faithfulness", "Deletion and insertion curves against the random "
                                           "baseline")])]
    section = summary.faithfulness_section(facts.faithfulness, facts.sanity)
    return Section("Interpretability", blocks + section.blocks)


def efficiency(facts: Facts) -> Section:
    """Cost per model and the time each stage of the run took."""
    stages = facts.manifest.get("stages", {})
    rows = [[name, fmt.seconds(s.get("seconds")) if "seconds" in s
             else f"failed: {s.get('failed', 'unknown')}"] for name, s in stages.items()]
    total = facts.manifest.get("total_seconds")
    return Section("Efficiency and operations", [
        summary.cost_table(facts.stats),
        Para(f"Training time: {TRAINING_TIME}. Throughputs are images per second in those "
             "passes and in evaluation. Peak memory: the accelerator's peak allocation (on the "
             "CPU, the growth of the process's resident memory)."),
        Table(["Stage", "Time"], rows),
        Para(f"Total time of the last `cnnvit run`: {fmt.seconds(total)}."),
        *_figures(facts, [("cost_test", "Test accuracy against parameters, FLOPs per image "
                                        "and training time")])])


def recommendations_section(facts: Facts) -> Section:
    """The rules, then what they produce for this run."""
    lines = recommendations(facts) or ["No rule applies: nothing to add to the results above."]
    return Section("Recommendations", [Para("Derived from the numbers by these rules:"),
                                       Bullets([rule for rule, _ in RULES]),
                                       Para("For this run:"), Bullets(lines)])


def artifact_checklist(facts: Facts) -> Section:
    """Each kind of artifact and whether the run has it (ARTIFACTS.md lists every file)."""
    count = Counter(what for _, what in facts.run.artifacts())
    rows = [[pattern, what, "✓ this report" if pattern == REPORT_FILES
             else f"✓ {count[what]}" if count[what] else "—"]
            for pattern, what in RUN_FILES.items()]
    rows += [[f"models/<model>/{pattern}", what, f"✓ {count[what]}" if count[what] else "—"]
             for pattern, what in MODEL_FILES.items()]
    return Section("Artifact checklist", [
        Para("✓ n: the run has n such files; —: none (the stage that writes it did not run). "
             "ARTIFACTS.md at the run root lists every file."),
        Table(["Artifact", "What it is", "Present"], rows, 2)])


def learning_curve(facts: Facts) -> Section | None:
    """Test accuracy against the number of training images, where the curves cross (only as
    far as the paired tests support it), and the figure; None without a curve."""
    if facts.learning_curve is None:
        return None
    points, tests = facts.learning_curve
    sizes = sorted(points["train_images"].unique())
    cells = points.groupby(["model", "train_images"])["accuracy"].agg(["mean", "std", "count"])
    bounds = points.groupby(["model", "train_images"])[["accuracy_low", "accuracy_high"]].mean()

    def cell(model: str, size: int) -> str:
        if (model, size) not in cells.index:
            return fmt.NA
        row = cells.loc[(model, size)]
        if row["count"] > 1:
            return fmt.metric(row["mean"], row["std"])
        low, high = bounds.loc[(model, size)]
        return f"{fmt.metric(row['mean'])} [{fmt.metric(low)}, {fmt.metric(high)}]"

    models = sorted(points["model"].unique())
    rows = [[fmt.count(size), *(cell(m, size) for m in models)] for size in sizes]
    return Section("Learning curve", [
        Para("Every model was also trained on stratified, nested shares of the training "
             "split (the same images for every model); test accuracy with its 95 % Wilson "
             "interval (mean ± std over seeds with several)."),
        Bullets(curves.crossover_sentences(points, tests)),
        Table(["Training images", *models], rows),
        *_figures(facts, [("learning_curve", "Test accuracy and macro-F1 against the number "
                                             "of training images")])])


def robustness_section(facts: Facts) -> Section | None:
    """Accuracy under corruption per model, what the paired tests support, and the figure;
    None when the robustness stage did not run."""
    if facts.robustness is None:
        return None
    per_model = facts.robustness["robustness_summary"].groupby("model", sort=True)
    rows = [[str(model), fmt.metric(g["clean_accuracy"].mean()),
             fmt.metric(g["mean_corruption_accuracy"].mean()),
             fmt.metric(g["relative_robustness"].mean()), str(g["worst_corruption"].mode()[0])]
            for model, g in per_model]
    options = facts.run.robustness / "options.json"
    reference = read_json(options).get("reference", "") if options.is_file() else ""
    return Section("Robustness to corruptions", [
        Para(f"Every model was evaluated on the test split under each corruption of "
             f"{reference or 'its dataset’s set'} at severities 1–5, on identical corrupted "
             f"images (seeded, cached in robustness/cache/). Mean corruption accuracy (mCA) is "
             f"the mean over corruptions and severities; relative robustness is mCA ÷ clean "
             f"accuracy. Paired tests at severity {robustness.MIDDLE}."),
        Bullets(robustness.sentences(facts.robustness["robustness_summary"],
                                     facts.robustness["robustness_tests"])),
        Table(["Model", "Clean accuracy", "mCA", "Relative robustness", "Largest mean drop"],
              rows),
        *_figures(facts, [("robustness", "Test accuracy against corruption severity, per "
                                         "corruption, models overlaid")])])


def build(facts: Facts) -> Document:
    """The whole report."""
    intro: list[Block] = [Para(summary.SYNTHETIC_WARNING)] if facts.synthetic else []
    intro += [Para(f"⚠ {line}") for line in facts.not_learned.values()]
    if facts.mode == "reduced":
        intro.append(Para("**Reduced mode**: a shortened schedule on smaller inputs, labelled "
                          "as such everywhere; not the full protocol."))
    intro.append(Para(f"Generated by `cnnvit report` from the run directory "
                      f"{facts.run.root.name}/ (preset {facts.manifest.get('preset')}); every "
                      "number comes from its files, every verdict from results/statistics.json."))
    optional = [s for s in (learning_curve(facts), robustness_section(facts)) if s]
    sections = [executive_summary(facts), methodology(facts), quantitative(facts),
                per_class(facts), statistics(facts), *optional,
                interpretability(facts), efficiency(facts), recommendations_section(facts),
                artifact_checklist(facts)]
    title = f"{facts.manifest.get('preset') or 'cnnvit'} study report"
    return Document(title, intro, sections)

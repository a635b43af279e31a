"""The segmentation parts of a run's report (backend/runs/report.py; docs/results.md, "The run report"): each label's
Dice, IoU, HD95 and NSD with their 95% intervals, the mean foreground Dice and IoU, how empty references were scored,
the worst cases, and the postprocessing the run chose, in words. They read the evaluation's results
(workers/engine/tasks/segmentation/results.py), its SegmentationCase rows and the run's `results["postprocessing"]`
(workers/engine/tasks/segmentation/postprocessing.py)."""
from __future__ import annotations

from .models import Evaluation, TrainingRun

WORST_CASES_SHOWN = 5
EMPTY_WORDS = {"both": "in neither", "missed": "missed", "false_alarm": "false alarm"}


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def millimetres(value: float) -> str:
    return f"{value:g} mm"


def label_rows(results: dict) -> list[dict]:
    """One row per foreground label: {label, dice, iou, hd95, nsd, reference_volume, predicted_volume}, each the
    results' {value, low, high} over the cases (None where the results lack it)."""
    per_class = results.get("per_class", {})
    by_measure = {measure: {entry["class"]: entry for entry in entries} for measure, entries in per_class.items()}
    measures = ("dice", "iou", "hd95", "nsd", "reference_volume", "predicted_volume")
    return [{"label": label, **{measure: by_measure.get(measure, {}).get(label) for measure in measures}}
            for label in results.get("classes", [])[1:]]


def tolerance_words(results: dict) -> tuple[str, str]:
    """The NSD's tolerance as used, short for a heading: one value ("1 mm"), or the range ("1–2 mm") where a coarse
    case needed its own voxel's width; and the rule that chose it, in words."""
    tolerance = results.get("nsd_tolerance_mm", {})
    default = tolerance.get("default")
    used = sorted(tolerance.get("used") or ([default] if default is not None else []))
    rule = (f"{millimetres(default)}, or a case's finest voxel side where that is wider" if default is not None
            else "as each case recorded it")
    if not used:
        return "its tolerance", rule
    if len(used) == 1:
        return millimetres(used[0]), rule
    return f"{used[0]:g}–{millimetres(used[-1])}", rule


def empty_sentences(results: dict) -> list[str]:
    """Per label, how many cases were scored as empty, in words."""
    cases = results.get("samples", 0)
    sentences = []
    for label, counts in results.get("empty", {}).items():
        both, missed, false_alarm = (counts.get(kind, 0) for kind in ("both", "missed", "false_alarm"))
        if not both + missed + false_alarm:
            sentences.append(f"{label}: in the reference and the prediction of every case ({cases}); none was scored as empty.")
            continue
        sentences.append(f"{label}: {plural(both, 'case')} with it in neither the reference nor the prediction (scored as perfect), "
                         f"{plural(missed, 'case')} where the model missed it (in the reference, not predicted) and "
                         f"{plural(false_alarm, 'false alarm')} (predicted, not in the reference), both scored as the worst.")
    return sentences


def worst_cases(evaluation: Evaluation | None, labels: list[str]) -> list[dict]:
    """The cases with the lowest mean foreground Dice: sample, patient, mean Dice, and each label's Dice with how an
    empty label was scored."""
    if evaluation is None:
        return []
    rows = []
    for case in evaluation.cases.select_related("sample").order_by("mean_dice", "id")[:WORST_CASES_SHOWN]:
        rows.append({"sample": case.sample_id, "file": case.sample.source_path if case.sample else "(deleted)",
                     "patient": case.patient, "mean_dice": case.mean_dice,
                     "dice": [{"value": case.dice.get(label), "empty": EMPTY_WORDS.get(case.empty.get(label, ""), "")}
                              for label in labels]})
    return rows


def postprocessing_sentences(choice: dict | None, classes: list[str]) -> list[str]:
    """The run's postprocessing choice (keep only the largest connected component of a label, where that raised the
    label's mean Dice on the validation subset), label by label, in words."""
    if choice is None:
        return ["The run recorded no postprocessing choice: its test predictions were scored as the network gave them."]
    before, after = choice.get("dice_before", {}), choice.get("dice_after", {})
    if not before:
        return ["No postprocessing: the run had no validation samples to try it on, so its test predictions were scored "
                "as the network gave them."]
    kept = {classes[index] for index in choice.get("largest_component", []) if 0 < index < len(classes)}
    sentences = []
    for label, dice in before.items():
        change = f"mean validation Dice {dice:.4f} as predicted, {after.get(label, dice):.4f} with its largest component only"
        if label in kept:
            sentences.append(f"{label}: only its largest connected component is kept ({change}).")
        else:
            sentences.append(f"{label}: kept as predicted; its largest component alone did not raise its Dice ({change}).")
    return sentences


def postprocessing_words(choice: dict | None, classes: list[str]) -> dict:
    """{"tried": whether the run tried it on validation samples, "sentences": the choice in words}."""
    return {"tried": bool(choice and choice.get("dice_before")), "sentences": postprocessing_sentences(choice, classes)}


def segmentation_context(run: TrainingRun, evaluation: Evaluation | None, results: dict) -> dict:
    labels = list(results.get("classes", [])[1:])
    metrics = results.get("metrics", {})
    tolerance, tolerance_rule = tolerance_words(results)
    return {
        "dataset_labels": "labels " + ", ".join(f"{value} {name}" for value, name in run.partition.dataset.segmentation_labels),
        "label_rows": label_rows(results), "mean_dice": metrics.get("mean_dice"), "mean_iou": metrics.get("mean_iou"),
        "nsd_tolerance": tolerance, "nsd_tolerance_rule": tolerance_rule, "volume_unit": results.get("volume_unit", "ml"),
        "empty_sentences": empty_sentences(results), "labels": labels, "worst_cases": worst_cases(evaluation, labels),
        "worst_shown": WORST_CASES_SHOWN,
        "postprocessing": postprocessing_words(run.results.get("postprocessing"), list(run.results.get("classes") or results.get("classes", []))),
    }

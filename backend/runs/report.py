"""A run's report (docs/results.md, "Export"): one self-contained HTML file, printable to PDF, holding enough to
reproduce the run and judge its model: the full spec (also as JSON in `<script type="application/json" id="spec">`,
to launch again), the plan, the dataset, partition and pipeline versions, the code and package versions, the curves,
the test metrics with intervals, the confusion matrix, ROC with the operating points and the reliability diagram; for a
segmentation run, in their place, its labels' scores, empty references, worst cases and postprocessing
(segmentation_report.py). `TASK_REPORTS` is the one place these parts are chosen.

Self-contained: no address outside the file. The charts are drawn by the plotly.js this server serves to its pages,
inlined; the heat maps (the run's explained samples, and any an evaluation carries) are images inside the file (data:
addresses). Written to be read: curves titled in words, dates as a person writes them, the positive class named, and
the bootstrap's unit (patients, or images where no patient ID was known)."""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from backend.core.errors import ServiceError
from backend.datasets.planning import plan_in_words
from backend.datasets.viewer import render

from .explanations import heat_map_png
from .export import metrics_table
from .models import Evaluation, Explanation, TrainingRun
from .segmentation_report import segmentation_context
from .services import package_versions

log = logging.getLogger(__name__)

PLOTLY_STATIC = "vendor/plotly.min.js"  # what the pages load (frontend/finders.py serves the plotly package's copy)

METRIC_TITLES = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro F1",
                 "mcc": "Matthews correlation (MCC)", "auc": "AUC (ROC)", "average_precision": "Average precision",
                 "brier": "Brier score", "ece": "Expected calibration error (ECE)", "sensitivity": "Sensitivity",
                 "specificity": "Specificity", "precision": "Precision", "f1": "F1"}
POINT_TITLES = {"youden": "Youden", "high_sensitivity": "High sensitivity", "high_specificity": "High specificity", "typed": "Chosen"}
# The curves' titles, as the run page names them (a metric not listed: its name in words, "dice score" for dice_score).
CURVE_TITLES = {**METRIC_TITLES, "loss": "Loss", "learning_rate": "Learning rate", "images_per_second": "Speed (images per second)",
                "memory_mb": "Memory (MB)", "seconds": "Time (seconds)", "epoch_seconds": "Time per epoch (seconds)"}
SUBSET_TITLES = {"train": "Training", "validation": "Validation", "system": "This run"}
HEAT_MAPS_SHOWN = 6  # the newest explanations of the run's samples drawn in the report (each two PNGs inside the file)


def report_evaluation(run: TrainingRun) -> Evaluation | None:
    """The newest finished evaluation on the run's own test subset: the one the run page shows."""
    return run.evaluations.filter(subset="test", dataset__isnull=True, status=Evaluation.Status.DONE).first()


def curves_of(run: TrainingRun) -> dict:
    """{metric: {subset: {epochs, values}}} of the run's metric points, for the curves."""
    curves: dict = {}
    for epoch, subset, name, value in run.metrics.order_by("epoch").values_list("epoch", "subset", "name", "value"):
        line = curves.setdefault(name, {}).setdefault(subset, {"epochs": [], "values": []})
        line["epochs"].append(epoch)
        line["values"].append(value)
    return curves


def curves_of_names(run: TrainingRun) -> list[str]:
    return list(run.metrics.values_list("name", flat=True).distinct().order_by("name"))


def metric_rows(results: dict) -> list[dict]:
    """The metrics table's rows (backend/runs/export.py) with titles, for the report's table."""
    _, *rows = metrics_table(results)
    return [{"title": METRIC_TITLES.get(name, name), "class": klass, "value": value, "low": low, "high": high}
            for name, klass, value, low, high in rows]


def confusion_rows(results: dict) -> list[dict]:
    counts = results.get("confusion", {}).get("counts", [])
    return [{"truth": name, "cells": counts[k] if k < len(counts) else []} for k, name in enumerate(results.get("classes", []))]


def operating_marks(points: list[dict]) -> list[dict]:
    """The operating points on the ROC plane (x: 1 - test specificity, y: test sensitivity); points that several rules
    chose fall on one spot, so they are one mark named by all of them."""
    marks: dict[tuple, dict] = {}
    for point in points:
        test = point.get("test", {})
        if test.get("sensitivity") is None or test.get("specificity") is None:
            continue
        spot = (1 - test["specificity"], test["sensitivity"])
        marks.setdefault(spot, {"x": spot[0], "y": spot[1], "names": []})["names"].append(POINT_TITLES.get(point["name"], point["name"]))
    return list(marks.values())


def heat_maps_of(results: dict) -> list[dict]:
    """The example heat maps an evaluation carries (`results["heat_maps"]`: [{image: a data: address, caption}]), once
    the explain part of issue 22 stores them; only images inside the file are taken, so the report stays offline."""
    return [one for one in results.get("heat_maps", []) if str(one.get("image", "")).startswith("data:image/")]


def data_address(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def explained_maps(run: TrainingRun) -> tuple[list[dict], int]:
    """The heat maps of the run's finished explanations (the sample viewer's Explain: docs/results.md, "Explain"), the
    newest HEAT_MAPS_SHOWN: each the sample's plane (its middle one) with the heat map over it, both PNGs inside the
    file; and how many explanations the run has done in all. An explanation whose files cannot be read is left out."""
    done = Explanation.objects.filter(run=run, status=Explanation.Status.DONE, sample__isnull=False).select_related("sample")
    maps = []
    for explanation in done.order_by("-created_at")[:HEAT_MAPS_SHOWN]:
        results, sample = explanation.results, explanation.sample
        try:
            heat, used, _ = heat_map_png(explanation)
            picture, _, _ = render(sample, index=used)
        except (ServiceError, OSError, ValueError) as error:
            log.warning("the report of run %s leaves out explanation %s: %s", run.pk, explanation.pk, error)
            continue
        predicted = results.get("predicted", "")
        probabilities = dict(zip(results.get("classes", []), results.get("probabilities", []), strict=False))
        chance = f" ({probabilities[predicted]:.2f})" if isinstance(probabilities.get(predicted), float) else ""
        explained = results.get("explained_class") or predicted
        caption = (f"Sample {sample.pk} ({sample.source_path}), labelled {sample.label or '(unlabelled)'}: predicted "
                   f"{predicted}{chance}; the heat map shows the evidence for {explained}.")
        maps.append({"image": data_address(picture), "heat": data_address(heat), "caption": caption, "explanation": explanation.pk})
    return maps, done.count()


def human_date(value) -> datetime | str:
    """A date recorded as ISO text (the provenance's) as a datetime the template formats; anything else as it is."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def curve_title(name: str) -> str:
    return CURVE_TITLES.get(name) or name.replace("_", " ").capitalize()


def sample_words(results: dict) -> dict:
    """Who the bootstrap drew: {"who": " of 10 patients" or ", without patient IDs ...", "unit": "patients" or "images"},
    as the run page says it (js/evaluation.js, patientWords): without patient IDs every image is its own unit."""
    samples, patients = results.get("samples", 0), results.get("patients", 0)
    without = results.get("samples_without_patient")
    if without is None:  # results from before the count: as many "patients" as samples means one image each
        none = patients == samples
        return {"who": ", each image its own unit" if none else f" of {patients} patients", "unit": "images" if none else "patients"}
    if samples and without >= samples:
        return {"who": ", without patient IDs (each image is its own unit)", "unit": "images"}
    some = f" ({without} without a patient ID count{'s' if without == 1 else ''} as their own)" if without else ""
    return {"who": f" of {patients} patient{'s' if patients != 1 else ''}{some}", "unit": "patients"}


def packages_of(run: TrainingRun) -> tuple[dict, str]:
    """The package versions the run recorded at launch; for runs that recorded none, this server's, and which it is."""
    if run.provenance.get("packages"):
        return run.provenance["packages"], "recorded when the run was launched"
    return package_versions(), "this server's when the report was made (the run recorded none)"


def toolkit_version() -> str:
    """Where the run recorded no git commit (the code was no checkout): the toolkit's version as its API states it."""
    return settings.SPECTACULAR_SETTINGS.get("VERSION", "unknown")


def plotly_js() -> str:
    path = finders.find(PLOTLY_STATIC)
    with open(path, encoding="utf-8") as script:
        return script.read().replace("</script", "<\\/script")  # cannot end its <script> element early


def classification_context(run: TrainingRun, evaluation: Evaluation | None, results: dict) -> dict:
    """What the classification sections show: the metrics table, the positive class, the confusion matrix, the
    operating points, the ROC curve and reliability diagram's data (drawn by the report's script), the heat maps, and the
    dataset's classes as the run recorded them."""
    classes = results.get("classes", [])
    explained, explanations = explained_maps(run)
    recorded = run.provenance.get("dataset", {}).get("classes") or run.partition.dataset.labels
    return {
        "dataset_labels": f"classes {', '.join(recorded)}",
        "metric_rows": metric_rows(results), "positive_class": classes[1] if len(classes) == 2 else None,
        "confusion_rows": confusion_rows(results),
        "operating_points": [{**point, "title": POINT_TITLES.get(point["name"], point["name"])}
                             for point in results.get("operating_points", [])],
        "heat_maps": heat_maps_of(results), "explained_maps": explained, "explanations": explanations,
        "charts": {"roc": results.get("roc", []), "operating_marks": operating_marks(results.get("operating_points", [])),
                   "calibration": results.get("calibration", {}).get("bins", []), "classes": classes},
    }


@dataclass(frozen=True)
class TaskReport:
    """What a kind of run adds to the report: the template of its results (inside the section "Results on the test
    subset", shown when an evaluation is done), the sections that follow it, and the context they read (with
    `dataset_labels`, what the data section says the dataset is labelled with: classes, or a mask's label values)."""
    results: str
    sections: tuple[str, ...]
    context: Callable[[TrainingRun, Evaluation | None, dict], dict]


# The one place the report's parts are chosen: by the evaluation's own `task` (classification results carry none), or,
# before any evaluation is done, by the run's spec.
TASK_REPORTS = {
    "classification": TaskReport("runs/report/classification_results.html", ("runs/report/heat_maps.html",), classification_context),
    "segmentation": TaskReport("runs/report/segmentation_results.html", ("runs/report/postprocessing.html",), segmentation_context),
}


def task_report(run: TrainingRun, results: dict) -> TaskReport:
    return TASK_REPORTS[results.get("task") or run.spec.get("task") or "classification"]


def report_context(run: TrainingRun) -> dict:
    evaluation = report_evaluation(run)
    results = evaluation.results if evaluation else {}
    packages, packages_source = packages_of(run)
    code = run.provenance.get("code_version") or "unknown"
    plan = run.spec.get("data", {}).get("plan") or {}
    kept = dict(run.results.get("kept", {}))
    if kept.get("reason"):
        kept["reason"] = kept["reason"].rstrip(".")  # it sits in brackets before the sentence's own full stop
    report = task_report(run, results)
    parts = report.context(run, evaluation, results)
    charts = {"curves": curves_of(run), "titles": {name: curve_title(name) for name in curves_of_names(run)},
              "subsets": SUBSET_TITLES, **parts.pop("charts", {})}
    return {
        "run": run, "project": run.project, "partition": run.partition, "dataset": run.partition.dataset,
        "spec": run.spec, "spec_text": json.dumps(run.spec, indent=2, sort_keys=True),
        "launch_text": json.dumps({"partition": run.partition_id, "name": f"{run.name} (again)", **run.spec}, indent=2),
        "plan_rows": plan_in_words(plan) if plan.get("reasons") is not None else [],
        "plan_text": json.dumps(plan, indent=2, sort_keys=True) if plan else "",
        "provenance": run.provenance, "provenance_text": json.dumps(run.provenance, indent=2, sort_keys=True),
        "code_version": code if code != "unknown" else f"no git commit recorded; toolkit version {toolkit_version()}",
        "packages": sorted(packages.items()), "packages_source": packages_source,
        "kept": kept, "dataset_made": human_date(run.provenance.get("dataset", {}).get("created_at")),
        "evaluation": evaluation, "results": results, "samples_words": sample_words(results),
        "results_template": report.results, "sections": report.sections, **parts, "charts": charts,
        "made_at": timezone.now(),
        "plotly_js": mark_safe(plotly_js()),  # the server's own file, inlined whole
    }


def run_report(run: TrainingRun) -> tuple[str, str]:
    """(the report's HTML, its file name)."""
    run = TrainingRun.objects.select_related("project", "partition__dataset", "augmentation__pipeline").get(pk=run.pk)
    html = render_to_string("runs/report.html", report_context(run))
    return html, f"run-{run.pk}-report.html"


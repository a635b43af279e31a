"""A run's report (docs/results.md, "Export"): one self-contained HTML file, printable to PDF, holding enough to
reproduce the run and judge its model: the full spec (also as JSON in `<script type="application/json" id="spec">`,
to launch again), the plan, the dataset, partition and pipeline versions, the code and package versions, the curves,
the test metrics with intervals, the confusion matrix, ROC with the operating points and the reliability diagram.

Self-contained: no address outside the file. The charts are drawn by the plotly.js this server serves to its pages,
inlined; the heat maps, when an evaluation carries them, are images inside the file (data: addresses)."""
from __future__ import annotations

import json

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from backend.datasets.planning import plan_in_words

from .export import metrics_table
from .models import Evaluation, TrainingRun
from .services import package_versions

PLOTLY_STATIC = "vendor/plotly.min.js"  # what the pages load (frontend/finders.py serves the plotly package's copy)

METRIC_TITLES = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro F1",
                 "mcc": "Matthews correlation (MCC)", "auc": "AUC (ROC)", "average_precision": "Average precision",
                 "brier": "Brier score", "ece": "Expected calibration error (ECE)", "sensitivity": "Sensitivity",
                 "specificity": "Specificity", "precision": "Precision", "f1": "F1"}
POINT_TITLES = {"youden": "Youden", "high_sensitivity": "High sensitivity", "high_specificity": "High specificity", "typed": "Chosen"}


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


def report_context(run: TrainingRun) -> dict:
    evaluation = report_evaluation(run)
    results = evaluation.results if evaluation else {}
    packages, packages_source = packages_of(run)
    code = run.provenance.get("code_version") or "unknown"
    plan = run.spec.get("data", {}).get("plan") or {}
    return {
        "run": run, "project": run.project, "partition": run.partition, "dataset": run.partition.dataset,
        "spec": run.spec, "spec_text": json.dumps(run.spec, indent=2, sort_keys=True),
        "launch_text": json.dumps({"partition": run.partition_id, "name": f"{run.name} (again)", **run.spec}, indent=2),
        "plan_rows": plan_in_words(plan) if plan.get("reasons") is not None else [],
        "plan_text": json.dumps(plan, indent=2, sort_keys=True) if plan else "",
        "provenance": run.provenance, "provenance_text": json.dumps(run.provenance, indent=2, sort_keys=True),
        "code_version": code if code != "unknown" else f"no git commit recorded; toolkit version {toolkit_version()}",
        "packages": sorted(packages.items()), "packages_source": packages_source,
        "kept": run.results.get("kept", {}),
        "evaluation": evaluation, "results": results, "metric_rows": metric_rows(results),
        "confusion_rows": confusion_rows(results),
        "operating_points": [{**point, "title": POINT_TITLES.get(point["name"], point["name"])}
                             for point in results.get("operating_points", [])],
        "heat_maps": heat_maps_of(results),
        "charts": {"curves": curves_of(run), "roc": results.get("roc", []), "operating_marks": operating_marks(results.get("operating_points", [])),
                   "calibration": results.get("calibration", {}).get("bins", []), "classes": results.get("classes", [])},
        "made_at": timezone.now(),
        "plotly_js": mark_safe(plotly_js()),  # the server's own file, inlined whole
    }


def run_report(run: TrainingRun) -> tuple[str, str]:
    """(the report's HTML, its file name)."""
    run = TrainingRun.objects.select_related("project", "partition__dataset", "augmentation__pipeline").get(pk=run.pk)
    html = render_to_string("runs/report.html", report_context(run))
    return html, f"run-{run.pk}-report.html"


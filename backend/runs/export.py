"""A run's tables as files (docs/results.md, "Export"): an evaluation's test metrics with their intervals, its
per-sample predictions, and the run's metric points per epoch. Each table is a header and rows
(backend/core/table_files.py writes them as CSV, XLSX or JSON); the API and the run report read the same tables."""
from __future__ import annotations

from backend.core.errors import ServiceError
from backend.core.table_files import CONTENT_TYPES, safe_name, table_file

from .models import Evaluation, TrainingRun

EVALUATION_TABLES = ("metrics", "predictions", "cases")
RUN_TABLES = ("metric_points",)
FORMATS = tuple(CONTENT_TYPES)


# The order of the results page (PostgreSQL's jsonb keeps no order of keys); a metric not named here comes after.
METRIC_ORDER = ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "auc", "average_precision", "brier", "ece",
                "sensitivity", "specificity", "precision", "f1", "mean_dice", "mean_iou", "dice", "iou", "hd95", "nsd",
                "predicted_volume", "reference_volume")
CASE_MEASURES = ("dice", "iou", "hd95", "nsd", "predicted_volume", "reference_volume")


def in_order(names) -> list[str]:
    return sorted(names, key=lambda name: (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name))


def metrics_table(results: dict):
    """One row per headline metric (class empty), then one per class and per-class metric, with the interval's ends."""
    yield ["metric", "class", "value", "ci_low", "ci_high"]
    metrics, per_classes = results.get("metrics", {}), results.get("per_class", {})
    for name in in_order(metrics):
        metric = metrics[name]
        yield [name, None, metric.get("value"), metric.get("low"), metric.get("high")]
    for name in in_order(per_classes):
        for entry in per_classes[name]:
            yield [name, entry["class"], entry.get("value"), entry.get("low"), entry.get("high")]


def predictions_table(evaluation: Evaluation):
    """One row per sample, in the order of the samples: what the model gave each class, and whether it was right."""
    classes = evaluation.results.get("classes") or evaluation.run.results.get("classes") or []
    yield ["sample", "file", "patient", "truth", "predicted", *[f"p({name})" for name in classes], "correct"]
    rows = evaluation.predictions.select_related("sample").order_by("sample_id", "id")
    for row in rows.iterator(chunk_size=2000):
        yield [row.sample_id, row.sample.source_path if row.sample else None, row.patient, row.truth, row.predicted,
               *row.probabilities, row.correct]


def cases_table(evaluation: Evaluation):
    """A segmentation's cases, worst first (the lowest mean foreground Dice): per label its Dice, IoU, HD95 (mm), NSD,
    predicted and reference volumes (ml; mm² for images), and how an empty label was scored."""
    labels = list((evaluation.results.get("classes") or [])[1:])
    unit = evaluation.results.get("volume_unit", "ml")
    names = {"hd95": "hd95_mm", "predicted_volume": f"predicted_{unit}", "reference_volume": f"reference_{unit}"}
    yield ["sample", "file", "patient", "mean_dice", *[f"{names.get(m, m)}({label})" for label in labels for m in CASE_MEASURES],
           *[f"empty({label})" for label in labels], "nsd_tolerance_mm"]
    for case in evaluation.cases.select_related("sample").order_by("mean_dice", "id").iterator(chunk_size=2000):
        yield [case.sample_id, case.sample.source_path if case.sample else None, case.patient, case.mean_dice,
               *[getattr(case, m).get(label) for label in labels for m in CASE_MEASURES],
               *[case.empty.get(label) or None for label in labels], case.tolerance_mm]


def metric_points_table(run: TrainingRun):
    """One row per epoch; a column per subset and metric ("validation.loss"), empty where it was not measured."""
    points = list(run.metrics.order_by("epoch").values_list("epoch", "subset", "name", "value"))
    columns = sorted({f"{subset}.{name}" for _, subset, name, _ in points})
    by_epoch: dict[int, dict[str, float]] = {}
    for epoch, subset, name, value in points:
        by_epoch.setdefault(epoch, {})[f"{subset}.{name}"] = value
    yield ["epoch", *columns]
    for epoch, values in by_epoch.items():
        yield [epoch, *[values.get(column) for column in columns]]


def evaluation_about(evaluation: Evaluation):
    """What made the evaluation's tables: the XLSX's About sheet."""
    results, run = evaluation.results, evaluation.run
    yield ["what", "value"]
    yield ["run", f"{run.name} (id {run.pk})"]
    yield ["evaluation", evaluation.pk]
    yield ["measured on", measured_on(evaluation)]
    yield ["samples", results.get("samples")]
    yield ["patients", results.get("patients")]
    stratified = ", stratified by class" if results.get("stratified_by_class", True) else ""
    yield ["interval", f"{round(results.get('level', 0.95) * 100)}% percentile interval of {results.get('resamples')} "
                       f"bootstrap resamples of patients{stratified}"]
    yield ["finished", evaluation.finished_at.isoformat() if evaluation.finished_at else ""]


def measured_on(evaluation: Evaluation) -> str:
    if evaluation.dataset_id:
        return f"dataset {evaluation.dataset_id} (all of it, classes mapped)"
    return f"the {evaluation.subset} subset of partition {evaluation.run.partition_id}"


def check_choice(value: str, allowed: tuple[str, ...], field: str) -> None:
    if value not in allowed:
        raise ServiceError(f"{field} must be one of {', '.join(allowed)} (got '{value}').", field=field)


def evaluation_file(evaluation: Evaluation, table: str, file_format: str) -> tuple[bytes, str]:
    """(content, file name) of one of an evaluation's tables; a 400 naming the allowed values, a 409 before it is done."""
    check_choice(table, EVALUATION_TABLES, "table")
    check_choice(file_format, FORMATS, "file")
    if evaluation.status != Evaluation.Status.DONE:
        raise ServiceError(f"The evaluation is {evaluation.status}: its tables exist once it is done.", code="conflict", status_code=409)
    rows = {"metrics": lambda: metrics_table(evaluation.results), "predictions": lambda: predictions_table(evaluation),
            "cases": lambda: cases_table(evaluation)}[table]()
    where = f"dataset-{evaluation.dataset_id}" if evaluation.dataset_id else evaluation.subset
    name = f"{safe_name(evaluation.run.name, 'run')}-run{evaluation.run_id}-{where}-{table}.{file_format}"
    return table_file(rows, file_format, title=table.capitalize(), about=evaluation_about(evaluation)), name


def run_file(run: TrainingRun, table: str, file_format: str) -> tuple[bytes, str]:
    """(content, file name) of a run's metric points per epoch."""
    check_choice(table, RUN_TABLES, "table")
    check_choice(file_format, FORMATS, "file")
    name = f"{safe_name(run.name, 'run')}-run{run.pk}-metric-points.{file_format}"
    return table_file(metric_points_table(run), file_format, title="Metric points"), name

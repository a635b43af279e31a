"""The tables a run exports (backend/runs/export.py) and the files they are written as (backend/core/table_files.py):
exact rows and cells from a small evaluation made by hand, and the same rows read back from CSV, XLSX and JSON."""
import csv
import io
import json
import math

import pytest
from openpyxl import load_workbook

from backend.core.table_files import table_file
from backend.datasets.services import create_partition
from backend.runs.export import metric_points_table, metrics_table, predictions_table
from backend.runs.models import Evaluation, MetricPoint, SamplePrediction, TrainingRun
from tests.factories import ready_dataset, training_spec

pytestmark = pytest.mark.django_db

# Two headline metrics and one per-class metric, as the evaluation stores them (an undefined bound is None).
RESULTS = {
    "classes": ["lesion", "normal"], "samples": 3, "patients": 2, "resamples": 200, "level": 0.95,
    "metrics": {"accuracy": {"value": 2 / 3, "low": 0.0, "high": 1.0}, "auc": {"value": 0.5, "low": None, "high": None}},
    "per_class": {"sensitivity": [{"class": "lesion", "value": 1.0, "low": 0.5, "high": 1.0},
                                  {"class": "normal", "value": 0.5, "low": 0.0, "high": 1.0}]},
}


def three_samples(evaluation):
    """Two of the lesions and the first normal image."""
    samples = list(evaluation.run.partition.dataset.samples.order_by("pk"))
    return samples[0], samples[1], samples[4]


@pytest.fixture
def evaluation(user, project):
    dataset = ready_dataset(project, per_class=4, name="X-rays")
    partition = create_partition(user, dataset, "", 50, 0, 50, 7)
    run = TrainingRun.objects.create(project=project, partition=partition, name="Chest run", spec=training_spec(epochs=2),
                                     status="succeeded", results={"classes": ["lesion", "normal"]})
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=RESULTS)
    first, second, third = three_samples(evaluation)
    # Stored out of the samples' order: the table puts them back in it.
    for sample, probabilities, truth in ((third, [0.2, 0.8], "normal"), (first, [0.9, 0.1], "lesion"), (second, [0.6, 0.4], "normal")):
        predicted = "lesion" if probabilities[0] >= 0.5 else "normal"
        SamplePrediction.objects.create(evaluation=evaluation, sample=sample, patient=sample.patient, truth=truth,
                                        predicted=predicted, probabilities=probabilities, correct=predicted == truth,
                                        truth_probability=probabilities[["lesion", "normal"].index(truth)],
                                        confidence=max(probabilities))
    return evaluation


def test_the_metrics_table_has_a_row_per_metric_then_per_class_metric():
    assert list(metrics_table(RESULTS)) == [
        ["metric", "class", "value", "ci_low", "ci_high"],
        ["accuracy", None, 2 / 3, 0.0, 1.0],
        ["auc", None, 0.5, None, None],
        ["sensitivity", "lesion", 1.0, 0.5, 1.0],
        ["sensitivity", "normal", 0.5, 0.0, 1.0],
    ]


def test_the_predictions_table_has_a_row_per_sample_in_the_samples_order(evaluation):
    first, second, third = three_samples(evaluation)
    assert list(predictions_table(evaluation)) == [
        ["sample", "file", "patient", "truth", "predicted", "p(lesion)", "p(normal)", "correct"],
        [first.pk, "lesion/0.png", "P-0000", "lesion", "lesion", 0.9, 0.1, True],
        [second.pk, "lesion/1.png", "P-0000", "normal", "lesion", 0.6, 0.4, False],
        [third.pk, "normal/0.png", "P-0002", "normal", "normal", 0.2, 0.8, True],
    ]


def test_a_prediction_whose_sample_was_deleted_keeps_its_row_without_a_file(evaluation):
    evaluation.predictions.filter(truth="lesion").update(sample=None)
    rows = list(predictions_table(evaluation))
    assert [None, None, "P-0000", "lesion"] in [row[:4] for row in rows] and len(rows) == 4


def test_metric_points_are_one_row_per_epoch_and_a_column_per_subset_and_metric(evaluation):
    run = evaluation.run
    MetricPoint.objects.bulk_create([
        MetricPoint(run=run, epoch=1, subset="train", name="loss", value=0.9),
        MetricPoint(run=run, epoch=1, subset="validation", name="loss", value=1.1),
        MetricPoint(run=run, epoch=2, subset="train", name="loss", value=0.5),
        MetricPoint(run=run, epoch=2, subset="validation", name="accuracy", value=0.75),
    ])
    assert list(metric_points_table(run)) == [
        ["epoch", "train.loss", "validation.accuracy", "validation.loss"],
        [1, 0.9, None, 1.1],
        [2, 0.5, 0.75, None],  # not measured: an empty cell
    ]


def test_each_format_holds_the_same_rows():
    rows = list(metrics_table(RESULTS))
    from_csv = list(csv.reader(io.StringIO(table_file(rows, "csv").decode())))
    assert from_csv[0] == rows[0] and from_csv[2] == ["auc", "", "0.5", "", ""]
    assert float(from_csv[1][2]) == pytest.approx(2 / 3, abs=1e-15), "full precision, not rounded for show"

    book = load_workbook(io.BytesIO(table_file(rows, "xlsx", title="Metrics", about=[["what", "value"], ["run", "x"]])))
    assert book.sheetnames == ["Metrics", "About"]
    assert [list(row) for row in book["Metrics"].iter_rows(values_only=True)] == rows

    objects = json.loads(table_file(rows, "json"))
    assert objects[0] == {"metric": "accuracy", "class": None, "value": 2 / 3, "ci_low": 0.0, "ci_high": 1.0}
    assert len(objects) == 4


def test_json_writes_an_undefined_number_as_null():
    assert json.loads(table_file([["metric", "value"], ["auc", math.nan]], "json")) == [{"metric": "auc", "value": None}]

"""Exports of a run's results through the API (docs/results.md, "Export"): an evaluation's metrics and predictions and
a run's metric points as CSV, XLSX and JSON, with file names that say what they are; bad choices refused with the
allowed values; an unfinished evaluation refused; another project's reader gets 404; and the run report, one HTML
file with the spec embedded as JSON and nothing fetched from elsewhere."""
import csv
import io
import json
import re

import pytest
from openpyxl import load_workbook
from rest_framework.test import APIClient

from backend.runs.export import metric_points_table, metrics_table, predictions_table
from backend.runs.models import Evaluation
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import results, store_predictions

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluation(user):
    run = a_finished_run(user, name="Chest X-ray run")
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    store_predictions(evaluation, list(run.partition.dataset.samples.order_by("pk")))
    return evaluation


def attachment_name(response) -> str:
    return re.search(r'filename="([^"]+)"', response["Content-Disposition"]).group(1)


def rounded(rows):
    """Numbers to 12 significant digits: XLSX keeps about 15 (Excel's own precision), not Python's 17."""
    return [[float(f"{cell:.12g}") if isinstance(cell, float) else cell for cell in row] for row in rows]


def cells(rows):
    """Rows as CSV writes them (what a reader of the file gets back)."""
    return [["" if cell is None else str(cell) for cell in row] for row in rows]


def test_an_evaluations_tables_download_in_each_format(api, evaluation):
    base = f"/api/evaluations/{evaluation.pk}/export/"
    response = api.get(f"{base}?table=metrics&file=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert attachment_name(response) == f"Chest-X-ray-run-run{evaluation.run_id}-test-metrics.csv"
    assert list(csv.reader(io.StringIO(response.content.decode()))) == cells(metrics_table(evaluation.results))
    assert api.get(base).content == response.content, "metrics as CSV by default"

    response = api.get(f"{base}?table=predictions&file=json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert attachment_name(response).endswith("-test-predictions.json")
    header, *rows = predictions_table(evaluation)
    assert response.json() == [dict(zip(header, row, strict=True)) for row in rows] and len(rows) == 5

    response = api.get(f"{base}?table=predictions&file=xlsx")
    assert attachment_name(response).endswith("-test-predictions.xlsx")
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Predictions", "About"]
    assert rounded(book["Predictions"].iter_rows(values_only=True)) == rounded([header, *rows]), "as stored, to Excel's precision"
    about = dict(book["About"].iter_rows(values_only=True))
    assert about["samples"] == 20 and about["measured on"] == f"the test subset of partition {evaluation.run.partition_id}"


def test_a_runs_metric_points_download_in_each_format(api, evaluation):
    run = evaluation.run
    response = api.get(f"/api/runs/{run.pk}/export/?file=csv")
    assert response.status_code == 200 and attachment_name(response) == f"Chest-X-ray-run-run{run.pk}-metric-points.csv"
    read = list(csv.reader(io.StringIO(response.content.decode())))
    assert read == cells(metric_points_table(run)) and len(read) == 1 + 6, "a header and six epochs"
    assert read[0][:3] == ["epoch", "system.images_per_second", "system.learning_rate"]
    as_json = api.get(f"/api/runs/{run.pk}/export/?table=metric_points&file=json").json()
    assert as_json[0]["epoch"] == 1 and as_json[0]["validation.loss"] == pytest.approx(1.05)


@pytest.mark.parametrize("query, field, allowed", [
    ("table=curves", "table", "metrics, predictions"),
    ("file=pdf", "file", "csv, xlsx, json"),
    ("table=predictions&file=", "file", "csv, xlsx, json"),
])
def test_a_bad_choice_is_refused_with_the_allowed_values(api, evaluation, query, field, allowed):
    response = api.get(f"/api/evaluations/{evaluation.pk}/export/?{query}")
    assert response.status_code == 400 and response.json()["field"] == field
    assert allowed in response.json()["message"]


def test_a_bad_run_table_is_refused(api, evaluation):
    response = api.get(f"/api/runs/{evaluation.run_id}/export/?table=metrics")
    assert response.status_code == 400 and response.json()["field"] == "table" and "metric_points" in response.json()["message"]


def test_an_unfinished_evaluation_has_no_tables_yet(api, evaluation):
    Evaluation.objects.filter(pk=evaluation.pk).update(status="running")
    response = api.get(f"/api/evaluations/{evaluation.pk}/export/?table=predictions")
    assert response.status_code == 409 and "running" in response.json()["message"]


def test_another_projects_reader_gets_not_found(outsider, evaluation):
    client = APIClient()
    client.force_authenticate(outsider)
    assert client.get(f"/api/evaluations/{evaluation.pk}/export/").status_code == 404
    assert client.get(f"/api/runs/{evaluation.run_id}/export/").status_code == 404
    assert client.get(f"/api/runs/{evaluation.run_id}/report/").status_code == 404


def test_the_report_is_one_file_with_the_spec_embedded_and_nothing_from_elsewhere(api, evaluation):
    run = evaluation.run
    response = api.get(f"/api/runs/{run.pk}/report/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert attachment_name(response) == f"run-{run.pk}-report.html"
    html = response.content.decode()
    spec = re.search(r'<script id="spec" type="application/json">(.*?)</script>', html, re.S).group(1)
    assert json.loads(spec) == run.spec
    # Self-contained: no element loads anything by address (plotly.js is inlined, the page has no links out).
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)=', html), "nothing loaded from an address"
    assert "Plotly.newPlot" in html and len(html) > 1_000_000, "plotly.js inside the file"
    metrics = evaluation.results["metrics"]
    assert f"{metrics['accuracy']['value']:.4f}" in html and f"{metrics['accuracy']['low']:.4f}" in html
    confusion = re.search(r'<table id="report-confusion">(.*?)</table>', html, re.S).group(1)
    counts = [int(n) for n in re.findall(r'<td class="number">(\d+)</td>', confusion)]
    assert counts == [n for row in evaluation.results["confusion"]["counts"] for n in row]
    assert 'id="report-operating-points"' in html and "Youden" in html
    charts = json.loads(re.search(r'<script id="charts" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert set(charts["curves"]) == {"loss", "accuracy", "balanced_accuracy", "learning_rate", "images_per_second", "memory_mb"}
    assert charts["curves"]["loss"]["validation"]["epochs"] == [1, 2, 3, 4, 5, 6]
    assert charts["roc"] == evaluation.results["roc"]
    # The three rules chose one threshold here: one mark on the ROC curve, named by all three.
    assert charts["operating_marks"] == [{"x": pytest.approx(0.1), "y": 0.8, "names": ["Youden", "High sensitivity", "High specificity"]}]
    for package in ("torch", "numpy"):
        assert f"<th>{package}</th>" in html, "package versions"
    assert 'id="heat-maps"' in html and "No sample has been explained with this run yet" in html


def test_a_report_shows_heat_maps_inside_the_file_only(api, evaluation):
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    evaluation.results["heat_maps"] = [{"image": pixel, "caption": "Sample 3: lesion, 0.97"},
                                       {"image": "https://example.org/map.png", "caption": "from elsewhere"}]
    evaluation.save(update_fields=["results"])
    html = api.get(f"/api/runs/{evaluation.run_id}/report/").content.decode()
    assert "Sample 3: lesion, 0.97" in html and pixel in html
    assert "example.org" not in html, "an image from elsewhere would make the report need a network"


def test_the_report_reads_as_words_with_charts_titled_and_an_explanations_heat_map(api, evaluation):
    """Issue 22 (Results, 7, 2, 3): the curves titled in words ("Balanced accuracy", not balanced_accuracy), no "(…
    loss.)." doubled stop, dates as a person writes them (not ISO text), the positive class named, the bootstrap's unit
    as the data allow, and a run's explanation's heat map drawn in the report (inside the file) instead of "none"."""
    import numpy as np

    from backend.runs.models import Explanation, TrainingRun

    run = evaluation.run
    provenance = {**run.provenance, "dataset": {"name": "X-rays", "id": run.partition.dataset_id, "samples": 20,
                                                "classes": ["lesion", "normal"], "created_at": "2026-03-04T09:05:06.123456+00:00"}}
    TrainingRun.objects.filter(pk=run.pk).update(provenance=provenance)
    sample = run.partition.dataset.samples.order_by("pk").first()
    explanation = Explanation.objects.create(run=run, sample=sample, status="done", results={
        "classes": ["lesion", "normal"], "probabilities": [0.91, 0.09], "predicted": "lesion", "explained_class": "lesion",
        "heat_map_shape": [1, sample.height, sample.width]})
    explanation.heat_map_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(explanation.heat_map_path, np.linspace(0, 1, sample.height * sample.width, dtype=np.float16).reshape(1, sample.height, sample.width))
    html = api.get(f"/api/runs/{run.pk}/report/").content.decode()

    charts = json.loads(re.search(r'<script id="charts" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert charts["titles"] == {"loss": "Loss", "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
                                "learning_rate": "Learning rate", "images_per_second": "Speed (images per second)",
                                "memory_mb": "Memory (MB)"}
    assert charts["subsets"]["train"] == "Training"
    words = html[:html.index('<script id="spec"')]  # the report's text, before the data and plotly.js
    assert ".)." not in words, "a doubled full stop"
    assert "lowest validation loss)." in html
    data = re.search(r'<section id="data">(.*?)</section>', html, re.S).group(1)
    assert "2026-03-04T09:05" not in data and "made 4 March 2026, 09:05" in data, "the provenance's raw record stays in its own section"
    assert re.search(r"report made \d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d", html)
    assert 'Positive class: <strong>normal</strong>' in html
    assert "20 test samples of 10 patients (evaluation" in html and "bootstrap resamples of patients" in html
    heat = re.search(rf'<figure data-explanation="{explanation.pk}">(.*?)</figure>', html, re.S).group(1)
    assert heat.count('src="data:image/png;base64,') == 2, "the sample's plane and the heat map over it, inside the file"
    assert f"Sample {sample.pk}" in heat and "predicted lesion (0.91)" in heat
    assert "No sample has been explained" not in html
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)=(?!"data:)', html), "nothing loaded from an address"


def test_without_patient_ids_the_report_says_the_bootstrap_drew_images(api, evaluation):
    from tests.browser.test_run_results import CLASSES, TEST_P1, TEST_TRUTH
    from workers.engine.tasks.classification.results import Predictions, classification_results

    made = classification_results(Predictions.of([[1 - p, p] for p in TEST_P1], TEST_TRUTH, [""] * len(TEST_P1), CLASSES), resamples=50)
    Evaluation.objects.filter(pk=evaluation.pk).update(results=made)
    html = api.get(f"/api/runs/{evaluation.run_id}/report/").content.decode()
    words = re.search(r'<p class="muted" id="report-samples">(.*?)</p>', html, re.S).group(1)
    assert "without patient IDs" in words and "bootstrap resamples of images" in words and "patients," not in words, words

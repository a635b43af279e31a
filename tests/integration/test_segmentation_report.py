"""A segmentation run's report (docs/results.md, "The run report"): downloaded as the classification report is, it shows
each label's Dice, IoU, HD95 and NSD with their 95% intervals, the mean Dice and IoU, how empty references were scored,
the five worst cases and the postprocessing choice in words; and none of the classification parts (metrics table,
positive class, confusion matrix, operating points, ROC, reliability diagram, heat maps), not even as empty headings.

The results are made by the engine's own `segmentation_results` from hand-written case scores, so the numbers the report
must show are known: the per-label means by hand below, the intervals as the results hold them."""
import hashlib
import json
import re
from html import unescape

import pytest

from backend.datasets.models import Dataset, Partition, Sample
from backend.runs.models import Evaluation, SegmentationCase, TrainingRun
from tests.factories import training_spec
from workers.engine.tasks.segmentation.results import CaseScores, segmentation_results

pytestmark = pytest.mark.django_db

CLASSES = ["background", "liver", "tumour"]
# Per case: liver Dice, tumour Dice, how the tumour's emptiness was scored. Case 5 is the best: left out of the worst five.
CASES = [(0.90, 0.50, ""), (0.80, 1.00, "both"), (0.85, 0.00, "missed"), (0.70, 0.00, "false_alarm"), (0.95, 0.70, ""),
         (0.96, 0.92, "")]
LIVER_DICE = (0.90 + 0.80 + 0.85 + 0.70 + 0.95 + 0.96) / 6  # 0.86
POSTPROCESSING = {"largest_component": [2], "dice_before": {"liver": 0.91, "tumour": 0.62}, "dice_after": {"liver": 0.9, "tumour": 0.66}}


def case_scores(liver: float, tumour: float, empty: str, tolerance: float) -> CaseScores:
    hd95 = {"": 4.0, "both": 0.0}.get(empty, 300.0)
    return CaseScores(dice={"liver": liver, "tumour": tumour}, iou={"liver": liver / (2 - liver), "tumour": tumour / (2 - tumour)},
                      hd95={"liver": 2.5, "tumour": hd95}, nsd={"liver": 0.9, "tumour": 1.0 if empty == "both" else tumour},
                      predicted_volume={"liver": 1500.0, "tumour": 0.0 if empty in ("both", "missed") else 12.0},
                      reference_volume={"liver": 1480.0, "tumour": 0.0 if empty in ("both", "false_alarm") else 10.0},
                      empty={"liver": "", "tumour": empty}, mean_dice=(liver + tumour) / 2, tolerance_mm=tolerance)


@pytest.fixture
def segmentation_evaluation(project) -> Evaluation:
    dataset = Dataset.objects.create(project=project, name="Livers", status=Dataset.Status.READY, sample_count=len(CASES),
                                     task=Dataset.Task.SEGMENTATION, channels=1, height=64, width=64, modalities="CT",
                                     mask_values=[1, 2], label_names={"1": "liver", "2": "tumour"}, masked_count=len(CASES))
    samples = [Sample.objects.create(dataset=dataset, source_dataset=dataset, label="", kind=Sample.Kind.VOLUME, modality="CT",
                                     source_path=f"liver-{k}.nii.gz", files=[f"liver-{k}.nii.gz"], array=f"a/{k}.npy",
                                     mask=f"a/{k}-mask.npy", depth=20, height=64, width=64, channels=1, dtype="int16",
                                     spacing=[2.0, 0.8, 0.8], patient=f"P-{k:03d}", sha256=hashlib.sha256(b"liver %d" % k).hexdigest())
               for k in range(len(CASES))]
    partition = Partition.objects.create(dataset=dataset, name="all", train_percent=60, validation_percent=20, test_percent=20, seed=1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="Liver run", status="succeeded",
                                     spec=training_spec(task="segmentation", epochs=1),
                                     results={"classes": CLASSES, "postprocessing": POSTPROCESSING})
    scores = [case_scores(*case, tolerance=2.0 if k == 3 else 1.0) for k, case in enumerate(CASES)]
    results = segmentation_results(scores, [s.patient for s in samples], CLASSES, dims=3, resamples=200)
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=results)
    for sample, score in zip(samples, scores, strict=True):
        fields = score.as_dict()
        SegmentationCase.objects.create(evaluation=evaluation, sample=sample, patient=sample.patient, mask=f"m/{sample.pk}.npy",
                                        **{name: fields[name] for name in ("dice", "iou", "hd95", "nsd", "predicted_volume",
                                                                           "reference_volume", "empty", "mean_dice", "tolerance_mm")})
    return evaluation


def table(html: str, name: str) -> str:
    return re.search(rf'<table id="{name}">(.*?)</table>', html, re.S).group(1)


def row_of(table_html: str, label: str) -> str:
    return re.search(rf"<tr><th>{label}</th>(.*?)</tr>", table_html, re.S).group(1)


def interval(entry: dict, digits: int) -> str:
    return f"{entry['value']:.{digits}f} <span class=\"muted interval\">({entry['low']:.{digits}f} – {entry['high']:.{digits}f})</span>"


def entry_of(results: dict, measure: str, label: str) -> dict:
    return next(entry for entry in results["per_class"][measure] if entry["class"] == label)


def test_a_segmentation_runs_report_shows_its_labels_cases_and_postprocessing(api, segmentation_evaluation):
    evaluation, results = segmentation_evaluation, segmentation_evaluation.results
    response = api.get(f"/api/runs/{evaluation.run_id}/report/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert re.search(r'filename="run-\d+-report\.html"', response["Content-Disposition"])
    html = response.content.decode()
    words = html[html.index("<body>"):html.index('<script id="spec"')]  # the report's text, not its styles or scripts

    assert entry_of(results, "dice", "liver")["value"] == pytest.approx(LIVER_DICE), "the hand-worked mean"
    labels = table(html, "report-labels")
    assert '<th class="number">NSD at 1–2 mm</th>' in labels, "the tolerances the cases used"
    assert "within 1–2 mm of the other (1 mm, or a case's finest voxel side where that is wider)" in " ".join(unescape(words).split())
    liver = row_of(labels, "liver")
    assert f"{LIVER_DICE:.4f}" in liver
    for measure, digits in (("dice", 4), ("iou", 4), ("hd95", 2), ("nsd", 4), ("reference_volume", 2), ("predicted_volume", 2)):
        for label in ("liver", "tumour"):
            assert interval(entry_of(results, measure, label), digits) in row_of(labels, label), (measure, label)
    means = table(html, "report-mean-scores")
    assert interval(results["metrics"]["mean_dice"], 4) in row_of(means, "Mean Dice")
    assert interval(results["metrics"]["mean_iou"], 4) in row_of(means, "Mean IoU")
    assert f"{sum((a + b) / 2 for a, b, _ in CASES) / len(CASES):.4f}" in row_of(means, "Mean Dice")
    data = re.search(r'<section id="data">(.*?)</section>', html, re.S).group(1)
    assert "6 samples;\n      labels 0 background, 1 liver, 2 tumour" in data, "the mask's labels, not an empty list of classes"
    assert "(ml)" in labels and "bootstrap resamples of patients." in words, "no stratification by class claimed"

    empty = re.search(r'<ul id="report-empty">(.*?)</ul>', html, re.S).group(1)
    assert "liver: in the reference and the prediction of every case (6); none was scored as empty." in empty
    assert ("tumour: 1 case with it in neither the reference nor the prediction (scored as perfect), 1 case where the "
            "model missed it (in the reference, not predicted) and 1 false alarm (predicted, not in the reference)") in empty

    worst = table(html, "report-worst-cases")
    rows = re.findall(r"<tr><th>(\d+) \((liver-\d)\.nii\.gz\)</th><td>(P-\d+)</td>\s*<td class=\"number\">([\d.]+)</td>(.*?)</tr>", worst, re.S)
    by_mean = sorted(range(len(CASES)), key=lambda k: (CASES[k][0] + CASES[k][1]) / 2)[:5]
    assert [name for _, name, _, _, _ in rows] == [f"liver-{k}" for k in by_mean], "the five lowest mean Dice, worst first"
    assert [patient for _, _, patient, _, _ in rows] == [f"P-{k:03d}" for k in by_mean]
    assert [float(mean) for *_, mean, _ in rows] == [pytest.approx((CASES[k][0] + CASES[k][1]) / 2, abs=1e-4) for k in by_mean]
    missed = rows[[name for _, name, _, _, _ in rows].index("liver-2")][4]
    assert "0.8500</td>" in missed and '0.0000 <span class="muted">(missed)</span>' in missed, "per-label Dice, the empty kind said"
    assert "liver-5" not in worst

    postprocessing = re.search(r'<section id="postprocessing">(.*?)</section>', html, re.S).group(1)
    assert ("tumour: only its largest connected component is kept (mean validation Dice 0.6200 as predicted, 0.6600 with "
            "its largest component only).") in postprocessing
    assert "liver: kept as predicted; its largest component alone did not raise its Dice (mean validation Dice 0.9100" in postprocessing

    for classification_part in ('id="report-metrics"', "report-confusion", "Confusion matrix", "report-operating-points",
                                "Operating points", "report-roc", "report-calibration", "Positive class", 'id="heat-maps"',
                                "Example heat maps", "stratified by class"):
        assert classification_part not in words, classification_part
    charts = json.loads(re.search(r'<script id="charts" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert set(charts) == {"curves", "titles", "subsets"}, "no ROC or calibration data to draw"
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)=', html), "nothing loaded from an address"


def test_every_heading_of_a_segmentation_report_has_something_under_it(api, segmentation_evaluation):
    """No empty heading: each h2/h3 is followed by text or a table before the next heading (or the section's end)."""
    html = api.get(f"/api/runs/{segmentation_evaluation.run_id}/report/").content.decode()
    words = html[html.index("<body>"):html.index('<script id="spec"')]
    parts = re.split(r"<h[23][^>]*>.*?</h[23]>", words)[1:]
    headings = re.findall(r"<h[23][^>]*>(.*?)</h[23]>", words)
    for heading, after in zip(headings, parts, strict=True):
        body = re.sub(r"<[^>]+>", "", after.split("</section>")[0]).strip()
        assert body, f"the heading {heading!r} has nothing under it"
    assert "Per label" in headings and "The 5 worst cases" in headings and "Postprocessing" in headings


@pytest.mark.parametrize("choice, said", [
    (None, "The run recorded no postprocessing choice: its test predictions were scored as the network gave them."),
    ({"largest_component": [], "dice_before": {}, "dice_after": {}}, "No postprocessing: the run had no validation samples"),
])
def test_a_report_says_when_no_postprocessing_was_tried(api, segmentation_evaluation, choice, said):
    run = segmentation_evaluation.run
    results = {"classes": CLASSES, **({"postprocessing": choice} if choice is not None else {})}
    TrainingRun.objects.filter(pk=run.pk).update(results=results)
    html = api.get(f"/api/runs/{run.pk}/report/").content.decode()
    postprocessing = re.search(r'<section id="postprocessing">(.*?)</section>', html, re.S).group(1)
    assert said in postprocessing and "was tried on the validation subset" not in postprocessing


def test_a_segmentation_run_not_yet_evaluated_gets_no_classification_sections(api, segmentation_evaluation):
    Evaluation.objects.filter(pk=segmentation_evaluation.pk).update(status="running")
    html = api.get(f"/api/runs/{segmentation_evaluation.run_id}/report/").content.decode()
    words = html[html.index("<body>"):html.index('<script id="spec"')]
    assert "This run has no finished evaluation on its test subset" in words
    assert 'id="heat-maps"' not in words and "report-labels" not in words, "chosen by the run's task until an evaluation says"
    assert 'id="postprocessing"' in words

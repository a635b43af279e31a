"""A segmentation run's results on the run page (js/segmentation_results.js) and a case's overlay on the sample page
(js/segmentation_case.js): per label Dice, IoU, HD95 and NSD with their intervals and the empty references counted;
the cases worst first and by a label's HD95; the classifier's cards (ROC, calibration, confusion) hidden; a case opening
its sample with the predicted outline over the reference mask. Screenshots at 1366, 1920 and 390 px."""
import hashlib

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import no_sideways_scroll
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHAPE, SPACING = (12, 48, 48), [2.5, 0.8, 0.8]
CLASSES = ["background", "liver", "tumour"]


def organ_volumes(project, count=8):
    """CT-like volumes with a liver (label 1) and, in all but the last two, a tumour (label 2) inside it."""
    from backend.datasets.models import Dataset, Sample

    dataset = Dataset.objects.create(project=project, name="Livers", status=Dataset.Status.READY, sample_count=count,
                                     task=Dataset.Task.SEGMENTATION, channels=1, height=SHAPE[1], width=SHAPE[2], modalities="CT",
                                     class_counts={"scan": count}, masked_count=count, mask_values=[0, 1, 2],
                                     label_names={"1": "liver", "2": "tumour"}, patient_count=count)
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    samples = []
    for index in range(count):
        mask = np.zeros(SHAPE, np.uint8)
        mask[2:10, 8:38, 6:34] = 1
        if index < count - 2:
            z, y, x = int(rng.integers(3, 6)), int(rng.integers(12, 24)), int(rng.integers(10, 20))
            mask[z:z + 3, y:y + 8, x:x + 8] = 2
        volume = (rng.normal(0, 15, SHAPE) + np.choose(mask, [-80, 60, 120])).astype(np.int16)
        np.save(arrays / f"{index:04d}.npy", volume)
        np.save(arrays / f"{index:04d}-mask.npy", mask)
        samples.append(Sample(dataset=dataset, source_dataset=dataset, label="scan", kind=Sample.Kind.VOLUME, modality="CT",
                              source_path=f"liver-{index}.nii.gz", files=[f"liver-{index}.nii.gz"],
                              array=f"datasets/{dataset.pk}/arrays/{index:04d}.npy",
                              mask=f"datasets/{dataset.pk}/arrays/{index:04d}-mask.npy", depth=SHAPE[0], height=SHAPE[1],
                              width=SHAPE[2], channels=1, dtype="int16", spacing=SPACING, patient=f"P-{index // 2:03d}",
                              sha256=hashlib.sha256(f"{dataset.pk} liver {index}".encode()).hexdigest()))
    Sample.objects.bulk_create(samples)
    return dataset


def predicted_like(mask, index):
    """A prediction as a model might give it: the liver shifted, the tumour grown, missed or imagined."""
    predicted = np.roll(np.where(mask == 1, 1, 0), shift=index % 3, axis=2).astype(np.uint8)
    tumour = mask == 2
    if index == 1:
        tumour[:] = False  # a missed tumour: the worst case
    elif index == 7:
        tumour[4:6, 20:24, 20:24] = True  # a false alarm where the reference has none
    elif tumour.any():
        tumour = np.roll(tumour, 1, axis=1) | tumour
    predicted[tumour] = 2
    return predicted


def an_evaluated_segmentation_run(user):
    """A succeeded segmentation run evaluated on all its samples, the cases scored by the evaluation job's own code."""
    from backend.projects.models import Project
    from backend.runs.models import Evaluation, SegmentationCase
    from workers.engine.tasks.segmentation.results import case_scores, segmentation_results
    from workers.evaluation import case_row, label_map, reference_classes

    project = Project.objects.create(owner=user, name="Abdomen")
    dataset = organ_volumes(project)
    run = a_finished_run(user, project, name="U-Net on livers")
    run.spec["task"], run.spec["monitor"] = "segmentation", "validation.mean_dice"
    run.results = {"test": {"mean_dice": 0.842, "loss": 0.21}, "kept": {"epoch": 5, "reason": "Epoch 5: the highest validation mean_dice."}}
    run.save(update_fields=["spec", "results"])
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done")
    values = np.array([0, 1, 2])
    folder = evaluation.storage_dir / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    cases, rows = [], []
    for index, sample in enumerate(dataset.samples.order_by("pk")):
        reference = reference_classes(sample, values)
        predicted = predicted_like(reference, index)
        scores = case_scores(predicted, reference, sample.spacing, CLASSES)
        np.save(folder / f"{sample.pk}.npy", label_map(predicted, values))
        cases.append(scores)
        rows.append(case_row(evaluation, sample, scores, (folder / f"{sample.pk}.npy").relative_to(project.storage_dir)))
    SegmentationCase.objects.bulk_create(rows)
    evaluation.results = segmentation_results(cases, [row.patient for row in rows], CLASSES, dims=3, resamples=300)
    evaluation.save(update_fields=["results"])
    return run, evaluation, cases


def test_a_segmentation_runs_results_and_a_cases_overlay(page, live_server, clinician):
    from backend.runs.models import MetricPoint

    run, evaluation, cases = an_evaluated_segmentation_run(clinician)
    results = evaluation.results
    # Its curves: the monitored mean Dice and the Dice of each label, which the page draws in one chart.
    MetricPoint.objects.bulk_create([MetricPoint(run=run, epoch=epoch, subset="validation", name=name, value=value)
                                     for epoch in range(1, 4) for name, value in (("mean_dice", 0.3 * epoch),
                                                                                  ("class_dice.liver", 0.3 * epoch),
                                                                                  ("class_dice.tumour", 0.2 * epoch))])
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#metric-chart-mean_dice .scatterlayer .point")).to_have_count(3)
    labels = page.evaluate("document.getElementById('metric-chart-class_dice').data.map((trace) => trace.name)")
    assert labels == ["liver (validation)", "tumour (validation)"], labels
    expect(page.locator('#metric-picker input[value="class_dice"]')).to_be_checked()
    expect(page.locator("#metric-picker")).to_contain_text("Dice per label")
    page.locator("#metric-charts").screenshot(path=str(ARTIFACTS / "segmentation-curves-1366.png"))
    section = page.locator("#evaluation")
    expect(page.locator("#test-metric")).to_have_text("mean Dice")
    expect(page.locator("#test-accuracy")).to_have_text("0.842")
    expect(section.locator('[data-part="summary"]')).to_have_text(
        "8 test cases of 4 patients; 95% intervals from 300 bootstrap resamples of patients.")
    rows = page.locator("#segmentation-per-class tbody tr")
    expect(rows).to_have_count(2)
    tumour = results["per_class"]["dice"][1]
    expect(rows.nth(1).locator('[data-measure="dice"]')).to_have_text(
        f"{tumour['value']:.3f} ({tumour['low']:.3f}–{tumour['high']:.3f})")
    hd95 = results["per_class"]["hd95"][1]
    expect(rows.nth(1).locator('[data-measure="hd95"]')).to_contain_text(f"{hd95['value']:.2f} mm")
    expect(rows.nth(1)).to_contain_text("1 missed, 1 false alarm, 1 in neither (correctly empty)")
    # The classifier's cards are not drawn for a segmentation.
    for hidden in ("#evaluation-roc", "#evaluation-confusion", "#evaluation-reliability", "#evaluation-predictions"):
        expect(page.locator(hidden)).to_be_hidden()

    # Each case, worst first; then by the tumour's HD95, largest first.
    case_rows = page.locator("#segmentation-cases tbody tr")
    expect(case_rows).to_have_count(8)
    shown = [float(v) for v in page.locator("#segmentation-cases tbody td:nth-child(3)").evaluate_all(
        "(cells) => cells.map((cell) => cell.dataset.value)")]
    assert shown == sorted(c.mean_dice for c in cases), shown
    expect(case_rows.first).to_contain_text("missed")
    page.select_option("#case-order", "hd95")
    expect(page.locator("#case-class")).to_be_visible()
    page.select_option("#case-class", "tumour")
    worst_distance = max(c.hd95["tumour"] for c in cases)
    tumour_hd95 = case_rows.first.locator("td").nth(3 + 5 + 2)  # after the sample, patient, mean and the liver's five
    expect(tumour_hd95).to_contain_text(f"{worst_distance:.2f} mm")
    page.select_option("#case-order", "worst")
    expect(case_rows.first).to_contain_text("missed")
    link = page.locator("#segmentation-cases-downloads a[data-format='csv']")
    expect(link).to_have_attribute("href", f"/api/evaluations/{evaluation.pk}/export/?table=cases&file=csv")

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        section.screenshot(path=str(ARTIFACTS / f"segmentation-results-{width}.png"))
        if width == 390:
            no_sideways_scroll(page)
    page.set_viewport_size({"width": 1366, "height": 768})

    # The worst case opens its sample with the predicted outline over the reference mask.
    worst = min(evaluation.cases.all(), key=lambda case: case.mean_dice)
    case_rows.first.locator("a").click()
    expect(page).to_have_url(f"{live_server.url}/samples/{worst.sample_id}/?evaluation={evaluation.pk}")
    card = page.locator("#case-card")
    expect(card).to_be_visible()
    expect(page.locator("#back-to-run")).to_have_attribute("href", f"/runs/{run.pk}/")
    expect(page.locator("#case-scores tbody tr")).to_have_count(2)
    expect(page.locator('#case-scores tr[data-label="tumour"]')).to_contain_text("missed")
    expect(page.locator("#case-status")).to_contain_text(f"Mean foreground Dice {worst.mean_dice:.3f}")
    predicted = page.locator("#predicted")
    expect(predicted).to_be_visible()
    expect(predicted).to_have_attribute("src", f"/api/evaluations/{evaluation.pk}/cases/{worst.sample_id}/mask/?axis=axial&index=6&style=outline")
    page.wait_for_function("() => document.getElementById('predicted').complete && document.getElementById('predicted').naturalWidth > 0")
    sizes = page.evaluate("() => ['plane', 'predicted'].map((id) => { const r = document.getElementById(id).getBoundingClientRect(); return [r.width, r.height]; })")
    assert sizes[0] == sizes[1], f"the prediction lies exactly over the plane: {sizes}"
    page.select_option('#case-controls [name="style"]', "fill")
    expect(predicted).to_have_attribute("src", f"/api/evaluations/{evaluation.pk}/cases/{worst.sample_id}/mask/?axis=axial&index=6&style=fill")
    loaded = "() => document.getElementById('predicted').complete && document.getElementById('predicted').naturalWidth > 0"
    page.wait_for_function(loaded)
    page.select_option('#case-controls [name="style"]', "outline")
    page.wait_for_function(loaded)
    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"segmentation-case-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    page.uncheck('#case-controls [name="show-predicted"]')
    expect(predicted).to_be_hidden()
    page.wait_for_load_state("networkidle")
    assert not problems, problems

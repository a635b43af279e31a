"""The run page's results on the test subset (js/evaluation.js): the headline metrics with their intervals, the
confusion matrix, the per-class measures, the ROC curve with the operating points and the reliability diagram, and
the per-sample predictions worst errors first (and least confident first when asked); an evaluation still queued is
announced and shown once it has finished. Screenshots at 1366, 1920 and 390 px, with no sideways scroll on a phone
outside the tables' own scroll boxes."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLASSES = ["lesion", "normal"]
# Twenty test samples of ten patients (two each), the probability of "normal" (the positive class) and the truth.
TEST_P1 = [0.9, 0.45, 0.52, 0.2, 0.97, 0.1, 0.3, 0.15, 0.6, 0.05, 0.8, 0.85, 0.7, 0.35, 0.92, 0.25, 0.65, 0.4, 0.88, 0.12]
TEST_TRUTH = [0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0]
VALIDATION_P1 = [0.1, 0.3, 0.55, 0.8, 0.9, 0.2, 0.65, 0.4, 0.75, 0.05]
VALIDATION_TRUTH = [0, 0, 1, 1, 1, 0, 1, 0, 1, 0]


def predictions(p1, truth):
    from workers.engine.tasks.classification.results import Predictions

    return Predictions.of([[1 - p, p] for p in p1], truth, [f"P{k // 2:02d}" for k in range(len(truth))], CLASSES)


def results():
    from workers.engine.tasks.classification.results import classification_results

    return classification_results(predictions(TEST_P1, TEST_TRUTH), predictions(VALIDATION_P1, VALIDATION_TRUTH), resamples=200)


def store_predictions(evaluation, samples):
    """Five of the test samples' predictions, in an order that neither sort keeps."""
    from backend.runs.models import SamplePrediction

    rows = []
    for k, sample in zip(range(5), samples, strict=False):
        p1, truth = TEST_P1[k], TEST_TRUTH[k]
        probabilities = [1 - p1, p1]
        rows.append(SamplePrediction(
            evaluation=evaluation, sample=sample, patient=f"P{k // 2:02d}", truth=CLASSES[truth],
            predicted=CLASSES[int(p1 >= 0.5)], probabilities=probabilities, truth_probability=probabilities[truth],
            confidence=max(probabilities), correct=int(p1 >= 0.5) == truth))
    SamplePrediction.objects.bulk_create(rows[::-1])


def interval(metric, percent=True):
    as_text = (lambda x: f"{x * 100:.1f}") if percent else (lambda x: f"{x:.3f}")
    unit = "%" if percent else ""
    return f"{as_text(metric['value'])}{unit} (95% CI {as_text(metric['low'])}–{as_text(metric['high'])}{unit})"


def shown_column(page, column):
    return [float(value) for value in page.locator(f"#evaluation-predictions tbody td:nth-child({column})").evaluate_all(
        "(cells) => cells.map((cell) => cell.dataset.value)")]


def no_sideways_scroll(page):
    """Nothing wider than the window, except what sits inside a table's scroll box."""
    wide = page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        return [...document.querySelectorAll("body *")].filter((node) => !node.closest(".table-scroll")
            && node.getBoundingClientRect().right > width + 1).map((node) => node.id || node.className || node.tagName).slice(0, 5);
    }""")
    scrolls = page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    assert not wide and not scrolls, wide


def test_a_runs_results_are_shown_and_its_predictions_sorted(page, live_server, clinician):
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    made = results()
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=made)
    store_predictions(evaluation, list(run.partition.dataset.samples.order_by("pk")))

    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    section = page.locator("#evaluation")
    expect(section.locator('[data-metric="accuracy"]')).to_have_text(interval(made["metrics"]["accuracy"]))
    expect(section.locator('[data-metric="auc"]')).to_have_text(interval(made["metrics"]["auc"], percent=False))
    expect(section.locator('[data-part="summary"]')).to_have_text(
        "20 test samples of 10 patients; 95% intervals from 200 bootstrap resamples of patients, stratified by class.")
    expect(section.locator("#evaluation-metrics")).to_contain_text("The mean of each class's recall")
    # The confusion matrix: counts and each row's share.
    counts = made["confusion"]["counts"]
    for row in range(2):
        for column in range(2):
            share = made["confusion"]["normalised"][row][column]
            expect(page.locator(f'#evaluation-confusion [data-cell="{row},{column}"]')).to_have_text(
                f"{counts[row][column]} ({share * 100:.0f}%)")
    expect(page.locator("#evaluation-per-class tbody tr")).to_have_count(2)
    # The ROC curve with the operating points marked, and their table.
    expect(page.locator("#evaluation-roc .main-svg").first).to_be_visible()
    expect(page.locator("#evaluation-roc .scatterlayer .textpoint").first).to_contain_text("Youden")
    expect(page.locator("#evaluation-points tbody tr")).to_have_count(len(made["operating_points"]))
    expect(page.locator("#evaluation-points tbody tr").first).to_contain_text("Youden")
    expect(page.locator("#evaluation-reliability .main-svg").first).to_be_visible()
    # The predictions: worst errors first, then least confident first.
    expect(page.locator("#evaluation-predictions tbody tr")).to_have_count(5)
    worst = shown_column(page, 5)
    assert worst == sorted(worst) and worst[0] == pytest.approx(0.1), worst
    expect(page.locator("#evaluation-predictions tbody tr").first).to_have_class("wrong")
    page.select_option("#prediction-order", "least_confident")
    expect(page.locator("#evaluation-predictions tbody tr td:nth-child(6)").first).to_have_text("0.520")
    confidence = shown_column(page, 6)
    assert confidence == sorted(confidence) and confidence[0] == pytest.approx(0.52), confidence
    page.check("#prediction-wrong")
    expect(page.locator("#evaluation-predictions tbody tr")).to_have_count(2)
    page.uncheck("#prediction-wrong")
    expect(page.locator("#evaluation-predictions tbody tr")).to_have_count(5)

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)  # Plotly follows the new width a moment later
        section.screenshot(path=str(ARTIFACTS / f"run-results-{width}.png"))
        if width == 390:
            no_sideways_scroll(page)
    page.wait_for_load_state("networkidle")
    assert not problems, problems


def test_an_evaluation_under_way_is_announced_then_shown(page, live_server, clinician):
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    evaluation = Evaluation.objects.create(run=run, subset="test", status="queued")
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    status = page.locator('#evaluation [data-part="status"]')
    expect(status).to_have_text("Evaluating on the test subset…")
    made = results()
    Evaluation.objects.filter(pk=evaluation.pk).update(status="done", results=made)
    expect(page.locator('#evaluation [data-metric="accuracy"]')).to_have_text(interval(made["metrics"]["accuracy"]), timeout=10_000)
    expect(status).to_be_hidden()
    expect(page.locator("#evaluation-predictions")).to_be_hidden()  # none stored
    expect(page.locator('#evaluation [data-part="predictions-note"]')).to_have_text("No predictions were stored.")
    # A failed one says why; polling has ended (no request is left when the page is closed).
    Evaluation.objects.filter(pk=evaluation.pk).update(status="failed", message="The kept checkpoint is missing.")
    page.reload()
    expect(status).to_have_text("The evaluation failed: The kept checkpoint is missing.")
    page.wait_for_load_state("networkidle")
    assert not [problem for problem in problems if not ("/events/" in problem and "ERR_ABORTED" in problem)], problems

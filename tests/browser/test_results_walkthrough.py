"""Issue 22, "Results": what a new user's walkthrough of the results pages found, in the browser (the API's half:
tests/integration/test_results_walkthrough.py). The run page has one Results card; an evaluation on another dataset
names what it was measured on (operating points, ROC legend), says when no patient was known (the bootstrap drew
images), and names the positive class; the Evaluate card shows the evaluation queued (its place), running (its
progress) and done, Evaluate disabled meanwhile and pressed twice queues one; a dataset of the run's own images is
refused beside the field and one sharing some is warned of; wide tables show a shadow where they scroll on; a sample
opened from the predictions links back to the run; the group page's bands stay where the quantity can go and one run
is shown as one run. Screenshots at 1366, 1920 and 390 px."""
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import (
    CLASSES,
    TEST_P1,
    TEST_TRUTH,
    VALIDATION_P1,
    VALIDATION_TRUTH,
    no_sideways_scroll,
    results,
    store_predictions,
)
from tests.browser.test_walkthrough import log_in
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = ((1366, 768), (1920, 1080), (390, 844))


def results_without_patients():
    """The same predictions as results(), their samples without patient IDs (each image its own unit)."""
    from workers.engine.tasks.classification.results import Predictions, classification_results

    def of(p1, truth):
        return Predictions.of([[1 - p, p] for p in p1], truth, [""] * len(truth), CLASSES)

    return classification_results(of(TEST_P1, TEST_TRUTH), of(VALIDATION_P1, VALIDATION_TRUTH), resamples=200)


def fitted(page):
    """Wait until nothing is wider than the window outside a table's scroll box: the Plotly charts follow a new width a
    moment later (later still on a loaded machine)."""
    page.wait_for_function("""() => {
        const width = document.documentElement.clientWidth;
        return document.documentElement.scrollWidth <= width && [...document.querySelectorAll("body *")].every(
            (node) => node.closest(".table-scroll") || node.getBoundingClientRect().right <= width + 1);
    }""")


def legend(page, chart):
    return page.locator(f"{chart} .legendtext").all_text_contents()


def test_the_run_pages_results_card_and_an_external_evaluation_followed_to_its_end(page, live_server, clinician):
    from backend.datasets.models import Sample
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    run.weights_path.write_bytes(b"weights")
    test = Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    store_predictions(test, list(run.partition.dataset.samples.order_by("pk")))
    other = ready_dataset(run.project, labels=("lesion", "normal"), per_class=6, name="Hospital B")
    copy = ready_dataset(run.project, name="X-rays again")
    partial = ready_dataset(run.project, name="Part of X-rays")
    own = list(run.partition.dataset.samples.order_by("pk").values_list("sha256", flat=True))
    for k, sample in enumerate(copy.samples.order_by("pk")):
        Sample.objects.filter(pk=sample.pk).update(sha256=own[k])
    for k, sample in enumerate(partial.samples.order_by("pk")[:4]):
        Sample.objects.filter(pk=sample.pk).update(sha256=own[k])

    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    section = page.locator("#evaluation")
    # One Results card: the kept model's downloads and its evaluations together.
    expect(page.locator("#run-root > section.card h2", has_text="Results")).to_have_count(1)
    expect(section.locator("#results")).to_be_visible()
    expect(section.locator("#report-download")).to_be_visible()
    expect(section.locator('[data-part="summary"]')).to_have_text(
        "20 test samples of 10 patients; 95% intervals from 200 bootstrap resamples of patients, stratified by class.")
    expect(section.locator('[data-part="positive"]')).to_contain_text("Positive class: normal")
    expect(section.locator('[data-part="points-measured"]')).to_have_text("Test")
    page.wait_for_function("() => document.querySelectorAll('#evaluation-roc .legendtext').length >= 3")
    assert "ROC (positive class: normal)" in legend(page, "#evaluation-roc")
    assert "Operating points (test)" in legend(page, "#evaluation-roc")

    # The run's own images under another name: refused beside the field; some of them: a warning, still allowed.
    page.select_option("#external-dataset", str(copy.pk))
    expect(page.locator('#external-evaluation [data-error-for="dataset"]')).to_contain_text("holds the same 20 images as dataset X-rays")
    expect(page.locator("#external-submit")).to_be_disabled()
    page.select_option("#external-dataset", str(partial.pk))
    expect(page.locator("#external-dataset-warning")).to_contain_text("4 of this dataset's 20 samples are images of the run's own dataset")
    expect(page.locator("#external-submit")).to_be_enabled()
    page.select_option("#external-dataset", str(other.pk))
    expect(page.locator("#external-dataset-warning")).to_be_hidden()
    expect(page.locator("#external-submit")).to_be_enabled()

    # Evaluate, pressed twice: one evaluation, the button disabled at once, the card says it is queued and where.
    page.locator("#external-submit").dblclick()
    expect(page.locator("#external-submit")).to_be_disabled()
    card = page.locator("#external-job")
    expect(card.locator("#external-status")).to_have_text("Queued")
    expect(card.locator("#external-queue")).to_have_text("Next in the train-cpu queue: it starts when a worker of that queue is free.")
    expect(card.locator("#external-what")).to_have_text("Evaluation on dataset Hospital B")
    assert Evaluation.objects.filter(run=run, dataset=other).count() == 1
    page.locator("#external-evaluation").screenshot(path=str(ARTIFACTS / "results-external-card-queued-1366.png"))
    queued = Evaluation.objects.get(run=run, dataset=other)
    # Running, with its progress; Evaluate stays disabled, also after the page is opened again.
    Evaluation.objects.filter(pk=queued.pk).update(status="running", progress_done=5, progress_total=12,
                                                   progress_message="Predicting dataset Hospital B")
    expect(card.locator("#external-status")).to_have_text("Running")
    expect(card.locator("#external-progress .label")).to_contain_text("5 of 12")
    expect(card.locator("#external-queue")).to_be_hidden()
    expect(page.locator("#external-submit")).to_be_disabled()
    page.reload()
    expect(card.locator("#external-status")).to_have_text("Running")
    page.select_option("#external-dataset", str(other.pk))
    expect(page.locator("#external-mapping-box")).to_be_visible()
    expect(page.locator("#external-submit")).to_be_disabled()
    page.select_option("#evaluation-choice", str(queued.pk))
    # Done: measured on samples without patient IDs, so the words say images; the points are the other dataset's.
    Evaluation.objects.filter(pk=queued.pk).update(status="done", results=results_without_patients(),
                                                   finished_at=queued.created_at)
    expect(card.locator("#external-status")).to_have_text("Done", timeout=10_000)
    expect(page.locator("#external-submit")).to_be_enabled()
    summary = section.locator('[data-part="summary"]')
    expect(summary).to_have_text("20 samples of dataset Hospital B, without patient IDs (each image is its own unit); "
                                 "95% intervals from 200 bootstrap resamples of images, stratified by class.", timeout=10_000)
    expect(section.locator('[data-part="points-measured"]')).to_have_text("Hospital B")
    expect(section.locator('[data-part="points-hint"]')).to_contain_text("applied to dataset Hospital B")
    expect(section.locator('[data-part="positive"]')).to_contain_text("Positive class: normal")
    page.wait_for_function("() => [...document.querySelectorAll('#evaluation-roc .legendtext')].some((t) => t.textContent.includes('Hospital B'))")
    shown = legend(page, "#evaluation-roc")
    assert "Operating points (Hospital B)" in shown and not any("(test)" in name for name in shown), shown

    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        fitted(page)
        section.screenshot(path=str(ARTIFACTS / f"results-card-{width}.png"))
        page.locator("#external-evaluation").screenshot(path=str(ARTIFACTS / f"results-external-card-{width}.png"))
        if width == 390:
            no_sideways_scroll(page)
    page.wait_for_load_state("networkidle")
    refused = f"400: {live_server.url}/api/evaluations/class-mapping/?run={run.pk}&dataset={copy.pk}"
    assert problems[:1] == [refused] and all("400" in problem for problem in problems), problems  # the refusal, nothing else


def test_wide_tables_show_where_they_scroll_on_a_phone(page, live_server, clinician):
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    test = Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    store_predictions(test, list(run.partition.dataset.samples.order_by("pk")))
    log_in(page, live_server.url)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    box = page.locator("#evaluation-predictions").locator("xpath=..")
    expect(page.locator("#evaluation-predictions tbody tr")).to_have_count(5)
    assert box.evaluate("(node) => node.scrollWidth > node.clientWidth"), "the predictions table is wider than a phone"
    cue = box.evaluate("(node) => getComputedStyle(node).backgroundImage")
    assert cue.count("linear-gradient") == 4, cue
    attachment = box.evaluate("(node) => getComputedStyle(node).backgroundAttachment")
    assert attachment.replace(" ", "") == "local,local,scroll,scroll", attachment
    box.screenshot(path=str(ARTIFACTS / "table-scroll-cue-390-start.png"))
    # The shadow on the right, where more of the table lies, is darker than the page's white; scrolled to the end it goes.
    right_edge = box.evaluate("""(node) => { const r = node.getBoundingClientRect(); return { x: r.right - 2, y: r.top + r.height / 2 }; }""")
    first = page.screenshot(clip={"x": right_edge["x"], "y": right_edge["y"], "width": 1, "height": 1})
    box.evaluate("(node) => { node.scrollLeft = node.scrollWidth; }")
    page.wait_for_timeout(100)
    last = page.screenshot(clip={"x": right_edge["x"], "y": right_edge["y"], "width": 1, "height": 1})
    box.screenshot(path=str(ARTIFACTS / "table-scroll-cue-390-end.png"))
    assert shade(first) < shade(last) - 8, (shade(first), shade(last))


def shade(png: bytes) -> int:
    import io

    from PIL import Image

    return sum(Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))) // 3


def test_a_sample_opened_from_the_predictions_leads_back_to_its_run(page, live_server, clinician):
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician)
    test = Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    store_predictions(test, list(run.partition.dataset.samples.order_by("pk")))
    log_in(page, live_server.url)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.locator("#evaluation-predictions tbody tr a").first.click()
    back = page.locator("#back-to-run")
    expect(back).to_have_text("← Back to run finished")
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTIFACTS / f"sample-back-to-run-{width}.png"))
    back.click()
    expect(page).to_have_url(f"{live_server.url}/runs/{run.pk}/")


def a_group(user, factors):
    """A group of len(factors) succeeded runs, each run's loss multiplied by its factor and its accuracy 0.99 (0.3 where
    the factor is above 1): a spread wide enough that mean - SD is below 0 (loss) and mean + SD above 1 (accuracy)."""
    from backend.experiments.models import GroupMember, RunGroup
    from backend.runs.models import Evaluation, MetricPoint

    first = a_finished_run(user, name="seed 0")
    runs = [first] + [a_finished_run(user, project=first.project, name=f"seed {k}") for k in range(1, len(factors))]
    for run, factor in zip(runs, factors, strict=True):
        for point in MetricPoint.objects.filter(run=run, name__in=["loss", "accuracy"]):
            point.value = point.value * factor if point.name == "loss" else (0.99 if factor <= 1 else 0.3)
            point.save(update_fields=["value"])
        Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    group = RunGroup.objects.create(project=first.project, partition=first.partition, kind=RunGroup.Kind.SEEDS,
                                    name="Seeds", seeds=len(runs), spec=first.spec)
    for seed, run in enumerate(runs):
        GroupMember.objects.create(group=group, run=run, seed=seed)
    RunGroup.objects.filter(pk=group.pk).update(pooled={
        "evaluations": sorted(e.pk for e in Evaluation.objects.filter(run__in=runs)), "runs": sorted(r.pk for r in runs),
        "subset": "test", "results": results()})
    return group


BAND = """(metric) => {
  const chart = document.querySelector(`#group-charts [data-metric="${metric}"]`);
  return chart.data.map((trace) => ({ name: trace.name || "", fill: trace.fill || "", y: [...trace.y] }));
}"""


def test_the_group_pages_bands_stay_where_the_quantity_can_go(page, live_server, clinician):
    group = a_group(clinician, (0.1, 1.0, 4.0))
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/groups/{group.pk}/")
    expect(page.locator('#group-charts [data-metric="accuracy"] .main-svg').first).to_be_visible()
    expect(page.locator('#group-charts [data-metric="loss"] .main-svg').first).to_be_visible()
    loss = page.evaluate(BAND, "loss")
    lows = [trace for trace in loss if trace["fill"] == "tonexty"]
    assert lows and all(min(trace["y"]) >= 0 for trace in lows), lows
    assert any(min(trace["y"]) == 0 for trace in lows), "the spread reached below 0 and was cut there"
    accuracy = page.evaluate(BAND, "accuracy")
    highs = [trace for trace in accuracy if not trace["fill"] and not trace["name"]]
    assert highs and all(max(trace["y"]) <= 1 for trace in highs), highs
    assert any(max(trace["y"]) == 1 for trace in highs), "the spread reached above 1 and was cut there"
    expect(page.locator("#group-metrics thead th").nth(1)).to_have_text("Mean ± SD across runs")
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        fitted(page)
        page.locator("#group-charts").screenshot(path=str(ARTIFACTS / f"group-bands-{width}.png"))
    page.wait_for_load_state("networkidle")
    assert not problems, problems


def test_a_group_of_one_run_shows_its_values_alone(page, live_server, clinician):
    group = a_group(clinician, (1.0,))
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/groups/{group.pk}/")
    expect(page.locator('#group-charts [data-metric="loss"] .main-svg').first).to_be_visible()
    loss = page.evaluate(BAND, "loss")
    assert [trace["name"] for trace in loss] == ["train (1 run)", "validation (1 run)"], loss
    assert "mean ± SD" not in " ".join(page.locator("#group-charts .legendtext").all_text_contents())
    expect(page.locator("#group-metrics thead th").nth(1)).to_have_text("Value (1 run)")
    row = page.locator('#group-metrics tr[data-metric="accuracy"]')
    expect(row.locator("td").nth(1)).not_to_contain_text("±")
    expect(page.locator("#group-metrics-note")).to_contain_text("One run measured on the test subset so far: its value alone")
    expect(page.locator("#group-metrics-note")).not_to_contain_text("Mean ± SD")
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        fitted(page)
        page.screenshot(path=str(ARTIFACTS / f"group-one-run-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    page.wait_for_load_state("networkidle")
    assert not problems, problems


# Every chart of the report: its box, and its drawing's; what is wrong: a drawing past its box, two charts over each
# other (their boxes or their legends), a chart past the page's edge.
REPORT_LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const charts = [...document.querySelectorAll(".chart")].filter((chart) => chart.querySelector(".main-svg"));
  const box = (node) => node.getBoundingClientRect();
  const problems = [];
  for (const chart of charts) {
    const own = box(chart);
    for (const part of chart.querySelectorAll(".main-svg, .legend")) {
      const drawn = box(part);
      if (drawn.right > own.right + 1 || drawn.bottom > own.bottom + 1 || drawn.left < own.left - 1 || drawn.top < own.top - 1)
        problems.push(`${chart.id}: its ${part.getAttribute("class")} runs out of its box`);
    }
    if (own.right > width + 1) problems.push(`${chart.id} runs past the page (${Math.round(own.right)} > ${width})`);
  }
  for (const [k, one] of charts.entries()) for (const other of charts.slice(k + 1)) {
    const [a, b] = [box(one), box(other)];
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) problems.push(`${one.id} covers ${other.id}`);
  }
  return { count: charts.length, problems, titles: [...document.querySelectorAll(".chart .gtitle")].map((t) => t.textContent) };
}"""


def test_the_report_lays_its_charts_out_without_overlap_and_titles_them_in_words(page, live_server, clinician, tmp_path):
    from backend.runs.models import Evaluation
    from backend.runs.report import run_report

    run = a_finished_run(clinician, name="Chest X-ray run")
    Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    html, _ = run_report(run)
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    problems = record_problems(page)
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(path.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.chart .main-svg').length >= 8")
        page.wait_for_timeout(300)
        layout = page.evaluate(REPORT_LAYOUT)
        assert layout["count"] == 8 and not layout["problems"], layout
        assert {"Balanced accuracy", "Speed (images per second)", "Memory (MB)", "Learning rate", "ROC curve"} <= set(layout["titles"]), layout
        assert not any("_" in title for title in layout["titles"]), layout["titles"]
        page.screenshot(path=str(ARTIFACTS / f"run-report-layout-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    assert not problems, problems

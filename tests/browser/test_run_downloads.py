"""The run page's downloads (docs/results.md, "Export"): the metrics and the predictions as CSV, XLSX and JSON beside
their tables, the metric points beside the curves, the report; and every chart as PNG (Plotly's own button) and as a
standalone HTML file that draws the same chart with the network off. Screenshots at 1366, 1920 and 390 px."""
import csv
import io
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import results, store_predictions
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def downloaded(page, link, folder: Path) -> tuple[str, Path]:
    """(the file's suggested name, where it was saved under that name) of what clicking the link downloads."""
    with page.expect_download() as info:
        link.click()
    download = info.value
    saved = folder / download.suggested_filename
    download.save_as(saved)
    return download.suggested_filename, saved


def opened_offline(page, path: Path):
    """A page of the same browser showing a downloaded HTML file, with the network off: it needs nothing from a server."""
    page.context.set_offline(True)
    offline = page.context.new_page()
    offline_problems = record_problems(offline)
    offline.goto(path.as_uri())
    return offline, offline_problems


def test_the_tables_the_report_and_each_chart_download(page, live_server, clinician, tmp_path):
    from backend.runs.models import Evaluation

    run = a_finished_run(clinician, name="Chest X-ray run")
    made = results()
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=made)
    store_predictions(evaluation, list(run.partition.dataset.samples.order_by("pk")))
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator('#evaluation [data-metric="accuracy"]')).not_to_have_text("")

    name, path = downloaded(page, page.locator('#metrics-downloads a[data-format="csv"]'), tmp_path)
    assert name == f"Chest-X-ray-run-run{run.pk}-test-metrics.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["metric", "class", "value", "ci_low", "ci_high"]
    assert rows[1][0] == "accuracy" and float(rows[1][2]) == pytest.approx(made["metrics"]["accuracy"]["value"])
    name, path = downloaded(page, page.locator('#predictions-downloads a[data-format="xlsx"]'), tmp_path)
    assert name == f"Chest-X-ray-run-run{run.pk}-test-predictions.xlsx" and path.read_bytes()[:2] == b"PK", "a zip: XLSX"
    name, path = downloaded(page, page.locator('#predictions-downloads a[data-format="json"]'), tmp_path)
    assert name.endswith("-test-predictions.json") and len(json.loads(path.read_text())) == 5
    name, path = downloaded(page, page.locator('#metric-points-downloads a[data-format="json"]'), tmp_path)
    assert name == f"Chest-X-ray-run-run{run.pk}-metric-points.json" and [row["epoch"] for row in json.loads(path.read_text())] == [1, 2, 3, 4, 5, 6]

    # The chart as PNG (Plotly's button) and as HTML (the toolkit's), both named after the chart.
    roc = page.locator("#evaluation-roc")
    roc.hover()
    # plotly.js offers "Share chart..." (an upload to Plotly Cloud) unless told not to: no chart of ours has it.
    expect(roc.locator(".modebar-btn[data-title]").first).to_be_visible()
    assert page.locator('.modebar-btn[data-title^="Share chart"]').count() == 0
    name, path = downloaded(page, roc.locator('.modebar-btn[data-title="Download plot as a PNG"]'), tmp_path)
    assert name == "roc-curve.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    roc.hover()
    name, chart_path = downloaded(page, roc.locator('.modebar-btn[data-title^="Download plot as a standalone HTML"]'), tmp_path)
    assert name == "roc-curve.html"
    name, report_path = downloaded(page, page.locator("#report-download"), tmp_path)
    assert name == f"run-{run.pk}-report.html"

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)  # Plotly follows the new width a moment later
        page.locator("#evaluation").screenshot(path=str(ARTIFACTS / f"run-downloads-{width}.png"))
    page.wait_for_load_state("networkidle")
    # A link the browser turns into a download may be reported as an aborted request (as in test_run_export.py).
    downloads = ("/export/", "/report/")
    assert [p for p in problems if not (p.endswith("net::ERR_ABORTED") and any(d in p for d in downloads))] == [], problems

    chart, chart_problems = opened_offline(page, chart_path)
    expect(chart.locator("#chart .main-svg").first).to_be_visible()
    chart.locator("#chart").hover()
    expect(chart.locator(".modebar-btn[data-title]").first).to_be_attached()
    assert chart.locator('.modebar-btn[data-title^="Share chart"]').count() == 0
    expect(chart.locator("#chart .scatterlayer .textpoint").first).to_contain_text("Youden")
    assert chart.title() == "ROC curve" and not chart_problems, chart_problems
    chart.close()

    report, report_problems = opened_offline(page, report_path)
    expect(report.locator("#report-roc .main-svg").first).to_be_visible()
    expect(report.locator("#report-roc .modebar-btn[data-title]").first).to_be_attached()
    assert report.locator('.modebar-btn[data-title^="Share chart"]').count() == 0
    expect(report.locator("#curve-charts .chart")).to_have_count(6)
    expect(report.locator("#report-metrics")).to_contain_text("Balanced accuracy")
    spec = json.loads(report.locator("#spec").text_content())
    assert spec == run.spec and re.search(r"Run \d+ of the project", report.locator("header").inner_text())
    report.set_viewport_size({"width": 1366, "height": 768})
    report.screenshot(path=str(ARTIFACTS / "run-report-1366.png"), full_page=True)
    pdf = report.pdf(path=str(ARTIFACTS / "run-report.pdf"), format="A4")  # what printing to PDF makes
    assert pdf[:5] == b"%PDF-" and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page/") >= 2
    assert not report_problems, report_problems
    report.close()
    page.context.set_offline(False)

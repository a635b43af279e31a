"""A segmentation run's report opened in Chromium with the network off (docs/results.md, "The run report"): its script
draws the curves and stops at no missing ROC or calibration data (a classification's only), no error in the console,
and its tables stay inside the page at 1366, 1920 and 390 px (screenshots in test-artifacts/)."""
import pytest
from playwright.sync_api import expect

from backend.runs.models import MetricPoint
from backend.runs.report import run_report
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.integration.test_segmentation_report import segmentation_evaluation  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


def test_a_segmentation_report_draws_its_curves_offline_at_each_width(page, segmentation_evaluation, tmp_path):  # noqa: F811
    run = segmentation_evaluation.run
    MetricPoint.objects.bulk_create([MetricPoint(run=run, epoch=epoch, subset=subset, name=name, value=value / epoch)
                                     for epoch in (1, 2, 3) for subset, name, value in
                                     (("train", "loss", 0.9), ("validation", "loss", 1.0), ("validation", "dice", 0.3 * epoch))])
    html, filename = run_report(run)
    path = tmp_path / filename
    path.write_text(html, encoding="utf-8")
    page.context.set_offline(True)
    problems = record_problems(page)
    page.goto(path.as_uri())
    expect(page.locator("#curve-charts .main-svg").first).to_be_visible()
    assert page.locator("#curve-charts .chart").count() == 2, "loss and Dice"
    assert page.locator("#report-roc, #report-calibration, #heat-maps").count() == 0
    for width in (1366, 1920, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        page.locator("#results").screenshot(path=str(ARTIFACTS / f"segmentation-report-results-{width}.png"))
    page.set_viewport_size({"width": 1366, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "segmentation-report-1366.png"), full_page=True)
    assert problems == []

"""The dataset page of volumes shows the plan a run starts from, each value with why, before anything is trained;
a dataset of 2D images shows none. The card fits a phone's width."""
import pytest
from playwright.sync_api import expect

from backend.projects.models import Project
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_run_form_volumes import ct_volumes
from tests.browser.test_walkthrough import log_in
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_dataset_page_shows_the_plan_of_its_volumes_with_the_reasons(page, live_server, clinician):
    project = Project.objects.create(owner=clinician, name="Scans")
    volumes, images = ct_volumes(project), ready_dataset(project, per_class=5, name="X-rays")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{volumes.pk}/")
    card = page.locator("#plan-card")
    expect(card).to_be_visible()
    expect(card).to_contain_text("Worked out from this dataset's 20 volumes")
    rows = {row.get_attribute("data-plan"): row.locator("td").all_inner_texts() for row in card.locator("tbody tr").all()}
    assert list(rows) == ["target_spacing", "normalisation", "patch_size", "batch_size"]
    assert rows["target_spacing"] == ["2 × 0.8 × 0.8", "the median spacing of the samples along each axis"]
    assert rows["normalisation"][0] == "CT: clip, then one z-score" and "Hounsfield units clipped" in rows["normalisation"][1]
    assert rows["patch_size"][0] == "16 × 24 × 24" and "within the smallest" in rows["patch_size"][1]
    page.set_viewport_size({"width": 1280, "height": 900})
    card.screenshot(path=str(ARTIFACTS / "dataset-plan-1280.png"))
    page.set_viewport_size({"width": 390, "height": 900})
    # The class chart follows the new width once the page has laid out again: wait for it, then nothing is wider.
    page.wait_for_function("document.documentElement.scrollWidth <= document.documentElement.clientWidth", timeout=10_000)
    card.screenshot(path=str(ARTIFACTS / "dataset-plan-390.png"))
    page.goto(f"{live_server.url}/datasets/{images.pk}/")
    expect(page.locator("#dataset-status")).to_have_text("Ready")
    assert page.locator("#plan-card").count() == 0, "2D images have no plan"

"""The Labels card of a segmentation dataset: each value its masks hold, its name and how many masks hold it; an
unnamed value is flagged; a refused name is said beside the names, and a good one is saved. At 1366, 1920 and 390 px."""
import pytest
from playwright.sync_api import expect

from backend.datasets.models import Dataset
from backend.projects.models import Project
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_walkthrough import log_in
from tests.factories import ready_dataset, volumes_with_masks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def liver_volumes(project) -> Dataset:
    dataset = volumes_with_masks(project)
    for sample, values in zip(dataset.samples.exclude(mask="").order_by("id"), [[0, 1, 2], [0, 1], [0, 1, 2]]):
        sample.meta = {"mask_values": values}
        sample.save(update_fields=["meta"])
    Dataset.objects.filter(pk=dataset.pk).update(mask_values=[0, 1, 2], masked_count=3, label_names={"1": "liver"})
    return dataset


def rows_of(card) -> list[list[str]]:
    return [[row.locator("th").inner_text(), row.locator("input").input_value(), row.locator("td.number").inner_text()]
            for row in card.locator("tbody tr").all()]


def test_the_labels_card_names_the_values_refuses_a_duplicate_beside_the_names_and_saves(page, live_server, clinician):
    project = Project.objects.create(owner=clinician, name="Livers")
    dataset, images = liver_volumes(project), ready_dataset(project, per_class=3, name="X-rays")
    log_in(page, live_server.url)
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    card = page.locator("#labels-card")
    expect(card).to_be_visible()
    assert rows_of(card) == [["0", "", "3"], ["1", "liver", "3"], ["2", "", "2"]]
    expect(card.locator('input[data-value="0"]')).to_have_attribute("placeholder", "background")
    expect(card.locator('tr[data-value="2"] .badge-unnamed')).to_have_text("label 2 has no name")
    assert card.locator(".badge-unnamed").count() == 1, "0 is background without a name; 1 is named"
    expect(page.locator("#labels-unnamed")).to_have_text('Label 2 has no name: runs and results call it "label 2" until it is named.')
    card.screenshot(path=str(ARTIFACTS / "dataset-labels-1366.png"))

    # The same name for two values: refused beside the names, nothing saved.
    card.locator('input[data-value="2"]').fill("Liver")
    card.locator("#labels-save").click()
    error = card.locator('[data-error-for="label_names"]')
    expect(error).to_have_text("Labels 1 and 2 are both named 'Liver'; give each label its own name.")
    card.screenshot(path=str(ARTIFACTS / "dataset-labels-refused-1366.png"))
    dataset.refresh_from_db()
    assert dataset.label_names == {"1": "liver"}

    card.locator('input[data-value="2"]').fill("tumour")
    card.locator('input[data-value="0"]').fill("outside the body")
    card.locator("#labels-save").click()
    expect(card.locator("#labels-saved")).to_have_text("Saved.")
    expect(error).to_have_text("")
    expect(card.locator(".badge-unnamed")).to_have_count(0)
    expect(page.locator("#labels-unnamed")).to_be_hidden()
    dataset.refresh_from_db()
    assert dataset.label_names == {"0": "outside the body", "1": "liver", "2": "tumour"}

    page.reload()
    expect(card).to_be_visible()
    assert rows_of(card) == [["0", "outside the body", "3"], ["1", "liver", "3"], ["2", "tumour", "2"]]
    page.set_viewport_size({"width": 1920, "height": 1000})
    page.screenshot(path=str(ARTIFACTS / "dataset-labels-1920.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 900})
    page.wait_for_function("document.documentElement.scrollWidth <= document.documentElement.clientWidth", timeout=10_000)
    card.screenshot(path=str(ARTIFACTS / "dataset-labels-390.png"))
    box = card.locator('input[data-value="2"]').bounding_box()
    assert box["x"] + box["width"] <= 390, "the names fit a phone's width"

    page.goto(f"{live_server.url}/datasets/{images.pk}/")
    expect(page.locator("#dataset-status")).to_have_text("Ready")
    expect(page.locator("#labels-card")).to_be_hidden()  # classes, no masks: nothing to name

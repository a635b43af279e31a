"""2D images with real intensities (CT slices in Hounsfield units, each its own series) have a plan of two axes: the
dataset page shows it (row × column spacing and patch, CT normalisation), and the run form shows its values as two
fields per axis pair (row, column) under "Plan for images with real intensities", keeps a 2D network, and puts the
server's refusal of a patch larger than the images beside the patch field before any run starts. The form fits a
laptop's, a wide screen's and a phone's width (test-artifacts/run-form-images-plan-<width>.png)."""
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_run_form import field
from tests.browser.test_run_form_volumes import error_beside
from tests.browser.test_walkthrough import log_in
from tests.conftest import make_zip
from tests.medical import dicom_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIDE = 64          # pixels a side
PER_CLASS = 6
PIXEL_SPACING = 0.7  # mm: tests/medical.py's PixelSpacing


def ct_slices(project, user):
    """A ready dataset of 2D CT slices as the ingest stores them (int16, rescaled to HU by the meta): air around a body of
    soft tissue, the "lesion" class with a brighter blob; every slice a series of its own, so each is an image."""
    from backend.datasets.models import Dataset
    from backend.datasets.services import create_dataset_from_upload
    from workers.ingest import INGEST

    rng = np.random.default_rng(7)
    y, x = np.indices((SIDE, SIDE))
    body = ((y - 32) / 26) ** 2 + ((x - 32) / 26) ** 2 < 1
    files = {}
    for label in ("lesion", "normal"):
        for i in range(PER_CLASS):
            hu = np.where(body, 40, -1000) + rng.normal(0, 10, (SIDE, SIDE))
            if label == "lesion":
                hu[(y - 30) ** 2 + (x - 34) ** 2 < 36] = 150
            pixels = (hu + 1024).astype(np.int16)  # the file's intercept is -1024
            files[f"{label}/slice_{i}.dcm"] = dicom_bytes(pixels, patient_id=f"MRN-{label}-{i}", instance=1)
    dataset, _ = create_dataset_from_upload(project, "CT slices", [SimpleUploadedFile("slices.zip", make_zip(files))], user)
    INGEST.run(dataset.pk, "test")
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.READY, dataset.message
    return dataset


@pytest.fixture
def slices(clinician):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Slices")
    dataset = ct_slices(project, clinician)
    return {"project": project, "dataset": dataset, "partition": create_partition(clinician, dataset, "", 60, 20, 20, 7)}


def axes(page, key) -> list[str]:
    return [field(page, f"data.plan.{key}.{axis}").input_value() for axis in range(2)]


def screenshot(page, width, height):
    """The plan's fieldset (and the form around it) at this width: the whole page from its top, as
    test_run_form_volumes.py takes its own."""
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_function("(w) => document.documentElement.scrollWidth <= w", arg=width, timeout=15_000)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"run-form-images-plan-{width}.png"), full_page=True)


def test_a_dataset_of_ct_slices_has_a_two_axis_plan_on_its_page_and_in_the_run_form(page, live_server, slices):
    from backend.datasets.planning import NORMALISATION_WORDS, plan_of
    from backend.runs.models import TrainingRun

    plan = plan_of(slices["dataset"])
    assert plan["dims"] == 2 and plan["normalisation"] == "ct", plan
    assert plan["target_spacing"] == [PIXEL_SPACING] * 2 and plan["patch_size"] == [SIDE, SIDE], plan

    # The dataset page: the plan card names images, not volumes, and its values have two axes.
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{slices['dataset'].pk}/")
    card = page.locator("#plan-card")
    expect(card).to_contain_text(f"Worked out from this dataset's {2 * PER_CLASS} images with real intensities")
    expect(card).not_to_contain_text("volume")
    rows = {row.get_attribute("data-plan"): row.locator("td").all_inner_texts() for row in card.locator("tbody tr").all()}
    assert rows["target_spacing"][0] == f"{PIXEL_SPACING:g} × {PIXEL_SPACING:g}"
    assert rows["patch_size"][0] == f"{SIDE} × {SIDE}"
    assert rows["normalisation"][0] == "CT: clip, then one z-score" and "Hounsfield units clipped" in rows["normalisation"][1]

    # The run form: the plan's values, two per axis pair (row, column), each with its reason; a 2D network kept.
    page.goto(f"{live_server.url}/projects/{slices['project'].pk}/runs/new/?partition={slices['partition'].pk}")  # logged in above
    expect(page.locator("#schedule-chart .plot-container")).to_be_visible()
    group = page.locator("#plan")
    expect(group.locator("legend")).to_have_text("Plan for images with real intensities")
    expect(group.locator(".hint")).to_contain_text("This dataset holds 2D images with real intensities")
    expect(group.locator(".hint")).to_contain_text(f"the median image is {SIDE}×{SIDE} pixels")
    expect(group).not_to_contain_text("voxel")
    expect(field(page, "model.architecture")).to_have_value("small_cnn")
    assert page.locator('select[name="model.architecture"] optgroup').first.get_attribute("label") == "For 2D images"
    expect(page.locator('input[name="model.input_size"]')).to_have_count(1)  # a 2D network may resize inside itself
    for key in ("target_spacing", "patch_size"):
        expect(field(page, f"data.plan.{key}.2")).to_have_count(0)
        expect(group.locator(".axes-names")).to_have_text(["row · column"] * 2)
    assert axes(page, "target_spacing") == [f"{PIXEL_SPACING:g}"] * 2
    assert axes(page, "patch_size") == [str(SIDE)] * 2
    expect(group.locator(".param-label", has_text="Patch size")).to_have_text("Patch size (pixels)")
    expect(field(page, "data.plan.normalisation")).to_have_value("ct")
    # The choices say the backend's words (backend/datasets/planning.py NORMALISATION_WORDS), capitalised.
    words = field(page, "data.plan.normalisation").locator("option").all_inner_texts()
    assert words == [text[0].upper() + text[1:] for text in NORMALISATION_WORDS.values()]
    expect(field(page, "data.plan.mean")).to_have_value(f"{plan['mean']:g}")
    for key in ("target_spacing", "normalisation", "patch_size"):
        expect(group).to_contain_text(plan["reasons"][key])
    page.locator("#advanced summary").click()
    expect(field(page, "batch_size")).to_have_value(str(plan["batch_size"]))
    expect(page.locator("#advanced-fields")).to_contain_text("Images per training step")
    page.locator("#advanced summary").click()

    # A patch wider than the images: refused beside the patch field at launch, no run started.
    field(page, "data.plan.patch_size.1").fill(str(2 * SIDE))
    with page.expect_request(lambda request: request.url.endswith("/api/runs/") and request.method == "POST") as launched:
        page.click("#launch")
    assert launched.value.post_data_json["data"]["plan"] == {"patch_size": [SIDE, 2 * SIDE]}
    expect(error_beside(page, "data.plan.patch_size")).to_contain_text(
        f"The patch ({SIDE}×{2 * SIDE} pixels) is larger than every image")
    expect(page.locator("#error-summary")).to_be_visible()
    assert not TrainingRun.objects.exists()
    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        screenshot(page, width, height)
    page.set_viewport_size({"width": 1280, "height": 1000})

    # The patch as planned: the run starts, a 2D network on the plan of two axes.
    field(page, "data.plan.patch_size.1").fill(str(SIDE))
    expect(error_beside(page, "data.plan.patch_size")).to_be_empty()
    page.click("#launch")
    page.wait_for_url(f"{live_server.url}/runs/**")
    run = TrainingRun.objects.get()
    assert run.spec["model"]["architecture"] == "small_cnn"
    assert run.spec["data"]["plan"]["patch_size"] == [SIDE, SIDE] and run.spec["data"]["plan"]["dims"] == 2

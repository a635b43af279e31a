"""The pipeline editor in the browser: find operations, fill their forms, reorder, see real samples
before and after, draw again, and save versions."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_build_a_pipeline_by_pointing_and_clicking_with_a_live_preview(page, live_server, clinician):
    from backend.pipelines.models import Pipeline
    from backend.pipelines.services import mark_used
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    ready_dataset(project, per_class=10, name="X-rays")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.get_by_role("link", name="New pipeline").click()
    page.wait_for_url(re.compile(r"/pipelines/new/$"))

    page.fill("#operation-search", "invert")
    expect(page.locator("#operation-list li")).to_have_count(1)
    page.locator(".add-operation").first.click()
    page.fill("#operation-search", "gaussian noise")
    page.locator('.add-operation[data-op="additive_gaussian_noise"]').click()
    expect(page.locator("#steps .step")).to_have_count(2)
    expect(page.locator("#preview .preview-pair")).to_have_count(8)
    expect(page.locator("#preview .preview-pair img")).to_have_count(16)

    # A wrong value is named beside its field, from the same validation the API does.
    page.locator('input[name="steps[0].probability"]').fill("2")
    expect(page.locator('[data-error-for="steps[0].probability"]')).to_contain_text("between 0 and 1")
    page.locator('input[name="steps[0].probability"]').fill("1")
    # The first preview that runs a MONAI operation imports MONAI and torch in the web worker (once per worker).
    expect(page.locator('[data-error-for="steps[0].probability"]')).to_have_text("", timeout=30_000)

    # "Sample again" draws new noise on the same samples.
    expect(page.locator("#preview-state")).to_have_text("seed 0")
    first = page.locator("#preview .preview-pair img").nth(1).get_attribute("src")
    page.click("#sample-again")
    expect(page.locator("#preview-state")).to_have_text("seed 1")
    assert page.locator("#preview .preview-pair img").nth(1).get_attribute("src") != first

    # Reorder: noise first, then invert.
    page.locator("#steps .step").nth(1).get_by_role("button", name="Move up").click()
    expect(page.locator("#steps .step").first).to_have_attribute("data-op", "additive_gaussian_noise")
    page.fill('input[name="name"]', "Noisy negatives")
    page.click("#pipeline-save")
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    expect(page.locator("#pipeline-versions")).to_contain_text("Version 1 · not used yet")
    expect(page.locator("#steps .step")).to_have_count(2)
    shot(page, "p1-pipeline-editor")

    pipeline = Pipeline.objects.get(name="Noisy negatives")
    assert [s["op"] for s in pipeline.latest.steps] == ["additive_gaussian_noise", "invert"]
    mark_used(pipeline.latest)  # as a training run would
    page.reload()
    page.locator("#steps .step").nth(1).get_by_role("button", name="Remove").click()
    page.click("#pipeline-save")
    expect(page.locator("#save-state")).to_have_text("Saved as version 2.")
    expect(page.locator("#pipeline-versions")).to_contain_text("kept unchanged: v1")
    assert [v.steps[-1]["op"] for v in pipeline.versions.order_by("number")] == ["invert", "additive_gaussian_noise"]
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("#pipeline-table")).to_contain_text("Noisy negatives")


@pytest.mark.worker
def test_run_a_preprocessing_pipeline_and_follow_the_derived_dataset_back(page, live_server, clinician, celery_worker_process):
    from backend.pipelines.services import create_pipeline
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    source = ready_dataset(project, per_class=6, name="X-rays")
    pipeline = create_pipeline(clinician, project, "Normalise", "preprocessing",
                               [{"op": "z_score", "params": {"scope": "dataset"}}, {"op": "center_crop", "params": {"fraction": 0.5}}])
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/pipelines/{pipeline.pk}/")
    expect(page.locator("#preview .preview-pair img")).to_have_count(16)
    page.locator('#run-form input[name="name"]').fill("X-rays, normalised")
    page.locator('#run-form button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#lineage")).to_contain_text("Made from X-rays by the pipeline Normalise, version 1")
    expect(page.locator("#dataset-shape")).to_contain_text("32×32")
    page.locator("#thumbnails img").last.scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.querySelectorAll('#thumbnails img')).every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "p2-derived-dataset")
    page.get_by_role("link", name="X-rays").first.click()
    page.wait_for_url(re.compile(rf"/datasets/{source.pk}/$"))


@pytest.mark.worker
def test_measure_every_sample_and_read_the_table_charts_and_downloads(page, live_server, clinician, celery_worker_process):
    from backend.projects.models import Project
    from tests.factories import volumes_with_masks

    project = Project.objects.create(owner=clinician, name="Liver")
    volumes_with_masks(project, masked_voxels=((40, 120, 90, 60, 150), (300, 500, 420, 380, 610)))
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/pipelines/new/")
    page.select_option('select[name="kind"]', "aggregation")
    expect(page.locator("#measures-field")).to_be_visible()
    page.fill('input[name="name"]', "Lesion burden")
    # A preview still being drawn when the save is refused must not wipe the refusal when it arrives (it did, now
    # and then on a loaded machine): hold the previews until the refusal is shown.
    held, holding = [], [True]
    page.route("**/api/pipelines/preview/", lambda route: held.append(route) if holding[0] else route.continue_())
    page.evaluate("document.getElementById('preview-dataset').dispatchEvent(new Event('change'))")
    page.wait_for_function("() => document.getElementById('preview-state').textContent === 'Drawing…'")
    page.click("#pipeline-save")
    expect(page.locator('[data-error-for="measures"]')).to_contain_text("Choose at least one measure")
    assert held, "a preview was being drawn when the save was refused"
    holding[0] = False
    with page.expect_response("**/api/pipelines/preview/"):
        for route in held:
            route.continue_()
    expect(page.locator("#preview-state")).to_contain_text("seed")
    expect(page.locator('[data-error-for="measures"]')).to_contain_text("Choose at least one measure")
    page.get_by_role("checkbox", name="Mean intensity", exact=True).check()
    page.get_by_role("checkbox", name=re.compile(r"^Mask volume \(ml\)")).check()
    page.get_by_role("checkbox", name=re.compile(r"^Lesion area")).check()
    page.get_by_role("checkbox", name=re.compile(r"^Intensity histogram")).check()
    page.click("#pipeline-save")
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    expect(page.locator('#measure-choices input[value="mask_volume"]')).to_be_checked()
    expect(page.locator("#preview .preview-pair img")).to_have_count(16)
    shot(page, "p3-aggregation-editor")

    page.locator('#measure-form button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/aggregations/\d+/$"))
    expect(page.locator("#aggregation-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#aggregation-message")).to_have_text("11 of 11 samples measured.")
    expect(page.locator("#aggregation-rows tbody tr")).to_have_count(11)
    expect(page.locator("#aggregation-rows thead")).to_contain_text("Mask volume (ml)")
    expect(page.locator("#aggregation-rows tbody tr").last).to_contain_text("mask_volume: this sample has no mask")
    page.select_option("#chart-measure", "mask_volume")
    expect(page.locator("#box-chart .boxlayer .trace")).to_have_count(2)
    expect(page.locator("#box-chart .gtitle")).to_have_text("Mask volume per label")
    expect(page.locator("#intensity-chart .scatterlayer .trace")).to_have_count(2)
    page.select_option("#row-label", "grade-1")
    expect(page.locator("#aggregation-rows tbody tr")).to_have_count(6)
    expect(page.locator("#rows-shown")).to_have_text("1–6 of 6")
    with page.expect_download() as download:
        page.click("#export-xlsx")
    assert download.value.suggested_filename == "Lesion-burden-v1-Volumes.xlsx"
    shot(page, "p4-table-of-measures")
    page.get_by_role("link", name="Volumes").first.click()
    expect(page.locator("#dataset-measures")).to_contain_text("Lesion burden v1 · Volumes")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("#aggregation-table")).to_contain_text("Lesion burden v1 · Volumes")

"""Importing models in the browser: from the project page to "Import a model"; a pickle is refused with the reason
beside the file field; an ONNX file of a zoo network and one with control flow are imported by the worker (weights
copied; prediction only, with the reason); the model's page predicts an image; the list shows opset, inputs, mode
and reason."""
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_walkthrough import log_in, shot
from tests.conftest import png_bytes
from tests.model_files import if_onnx, malicious_pickle, zoo_onnx

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_import_a_model_predict_and_see_the_list(page, live_server, clinician, celery_worker_process, tmp_path):
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest X-rays")
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(malicious_pickle(tmp_path / "pwned"))
    _, zoo = zoo_onnx(tmp_path / "small_cnn.onnx", "small_cnn", channels=1, classes=2, size=32)
    branchy = if_onnx(tmp_path / "branchy.onnx")
    picture = tmp_path / "chest.png"
    picture.write_bytes(png_bytes((np.indices((40, 40)).sum(axis=0) * 3 % 256).astype(np.uint8)))

    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("#imported-models")).to_contain_text("Models trained elsewhere")
    page.get_by_role("link", name="Import a model").click()
    page.wait_for_url(re.compile(rf"/projects/{project.pk}/models/$"))
    form = page.locator("#import-form")

    # A pickle is refused before anything is kept, with the reason beside the file field.
    form.locator('input[name="file"]').set_input_files(str(pickled))
    form.locator('button[type="submit"]').click()
    expect(form.locator('[data-error-for="file"]')).to_contain_text("pickled files can run code when loaded")
    assert not (tmp_path / "pwned").exists()
    shot(page, "m1-import-refused")

    # A zoo network exported by the toolkit: its weights are copied back.
    form.locator('input[name="file"]').set_input_files(str(zoo))
    form.locator('input[name="name"]').fill("Our small CNN")
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/imported-models/\d+/$"))
    expect(page.locator("#import-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#import-mode")).to_have_text("Weights copied")
    expect(page.locator("#import-reason")).to_contain_text("Recognised as Small CNN")
    expect(page.locator("#import-train")).to_contain_text('"weights": "imported"')

    # A model with control flow: prediction only, and the page predicts an image.
    page.goto(f"{live_server.url}/projects/{project.pk}/models/")
    page.locator('#import-form input[name="file"]').set_input_files(str(branchy))
    page.locator('#import-form button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/imported-models/\d+/$"))
    expect(page.locator("#import-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#import-mode")).to_have_text("Prediction only")
    expect(page.locator("#import-reason")).to_contain_text("no converter for the operation 'If'")
    page.locator('#predict-form input[name="image"]').set_input_files(str(picture))
    page.locator('#predict-form button[type="submit"]').click()
    # The first prediction starts an engine process (onnxruntime's import): seconds, more on a loaded machine.
    expect(page.locator("#prediction tbody tr")).to_have_count(2, timeout=90_000)
    expect(page.locator("#prediction-note")).to_contain_text("1 × 16 × 16")
    shot(page, "m2-imported-model-predicts")

    # The project page lists them too.
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("#imported-models tbody tr")).to_have_count(2)
    page.locator("#imported-models").screenshot(path=str(ARTIFACTS / "m0-project-imported-models.png"))

    # The list: opset, inputs, mode and reason of each.
    page.goto(f"{live_server.url}/projects/{project.pk}/models/")
    rows = page.locator("#imported-table tbody tr")
    expect(rows).to_have_count(2)
    branchy_row, zoo_row = rows.nth(0), rows.nth(1)
    expect(branchy_row).to_contain_text("17")
    expect(branchy_row).to_contain_text("image: batch × 1 × 16 × 16")
    expect(branchy_row).to_contain_text("Prediction only")
    expect(branchy_row).to_contain_text("'If'")
    expect(zoo_row).to_contain_text("20")
    expect(zoo_row).to_contain_text("Weights copied")
    expect(zoo_row).to_contain_text("small_cnn")
    shot(page, "m3-imported-models-list")


def test_an_import_waiting_for_a_worker_is_stopped_from_its_page(page, live_server, clinician):
    from backend.projects.models import Project
    from backend.zoo.models import ImportedModel

    project = Project.objects.create(owner=clinician, name="Chest X-rays")
    waiting = ImportedModel.objects.create(project=project, name="Big ResNet", kind="onnx", created_by=clinician, status="queued")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/imported-models/{waiting.pk}/")
    expect(page.locator("#import-stop")).to_be_visible()
    page.click("#import-stop")
    expect(page.locator("#import-status")).to_have_text(re.compile("Stopped"))
    waiting.refresh_from_db()
    assert waiting.status == "stopped"

"""Steps 1-7 of the foundation path, in headless Chromium, against the live server and a
real worker process: log in, create a project, upload, partition, launch, watch, stop, export."""
import re

import numpy as np
import onnxruntime
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.conftest import demo_entries, make_zip

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
PASSWORD = "clinician-password-1"


def shot(page, name):
    # Chromium leaves a full-page capture scrolled to the bottom while its focus handling keeps the old place:
    # the next click's focus would scroll the page under the pointer. Put the page back where it was.
    scrolled = page.evaluate("window.scrollY")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.evaluate("(y) => window.scrollTo(0, y)", scrolled)


def log_in(page, base):
    page.goto(f"{base}/")
    page.fill('input[name="username"]', "clinician")
    page.fill('input[name="password"]', "wrong")
    page.click('button[type="submit"]')
    expect(page.locator(".error")).to_contain_text("did not match")
    page.fill('input[name="username"]', "clinician")
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page.locator("h1")).to_have_text("Projects")
    page.wait_for_load_state("networkidle")  # the home page's modules, which the next page.goto would cut short


def upload_dataset(page, tmp_path):
    form = page.locator("#upload-form")
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("this is not an archive")
    form.locator('input[name="files"]').set_input_files(str(not_zip))
    form.locator('button[type="submit"]').click()
    expect(form.locator('[data-error-for="__all__"]')).to_contain_text("not a zip archive")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(make_zip({}))
    form.locator('input[name="files"]').set_input_files(str(empty))
    form.locator('button[type="submit"]').click()
    expect(form.locator('[data-error-for="__all__"]')).to_contain_text("holds no files")
    entries = demo_entries(per_class=60)
    entries["normal/corrupt.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    entries["../outside.png"] = entries["lesion/lesion_000.png"]
    archive = tmp_path / "lesions.zip"
    archive.write_bytes(make_zip(entries))
    form.locator('input[name="name"]').fill("Lesions")
    form.locator('input[name="files"]').set_input_files(str(archive))
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))


def check_dataset_page(page):
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#class-chart .plot-container")).to_be_visible()
    expect(page.locator("#class-chart")).to_contain_text("120 samples")
    expect(page.locator("#thumbnails img")).to_have_count(48)
    page.wait_for_function("Array.from(document.querySelectorAll('#thumbnails img')).every(i => i.complete && i.naturalWidth > 0)")
    expect(page.locator("#report")).to_contain_text("normal/corrupt.png")
    expect(page.locator("#report")).to_contain_text("leaves the archive")
    expect(page.locator("#ingest-stop")).to_be_hidden()
    page.select_option("#label-filter", "lesion")
    expect(page.locator("#thumbnails figcaption").first).to_have_text("lesion")
    shot(page, "3-dataset")


def create_partition(page):
    form = page.locator("#partition-form")
    form.locator('input[name="test_percent"]').fill("10")
    form.locator('button[type="submit"]').click()
    expect(form.locator('[data-error-for="test_percent"], [data-error-for="__all__"]').first).to_contain_text("add up to 95")
    form.locator('input[name="test_percent"]').fill("15")
    form.locator('input[name="seed"]').fill("7")
    form.locator('button[type="submit"]').click()
    row = page.locator("#partition-table tbody tr").first
    expect(row).to_contain_text("84 (lesion 42, normal 42)")
    shot(page, "4-partition")
    row.get_by_text("Train a model").click()
    page.wait_for_url(re.compile(r"/runs/new/"))


def launch(page, epochs: int, batch_size: int = 32):
    form = page.locator("#run-form")
    expect(page.locator("#resources-hint")).to_contain_text("No GPU worker is online")
    expect(form.locator('input[name="resources.device"][value="gpu"]')).to_be_disabled()
    expect(page.locator("#schedule-chart .plot-container")).to_be_visible()  # the learning rate along the run
    form.locator('input[name="epochs"]').fill(str(epochs))
    form.locator("#advanced summary").click()
    form.locator('input[name="batch_size"]').fill(str(batch_size))
    form.locator('input[name="optimizer.learning_rate"]').fill("-1")
    form.locator('button[type="submit"]').click()
    expect(form.locator('[data-error-for="optimizer.learning_rate"]')).to_contain_text("greater than 0")
    expect(form.locator("#error-summary")).to_contain_text("Learning rate must be greater than 0")
    expect(page.locator("#schedule-chart")).to_have_class(re.compile(r"\bstale\b"))  # drawn for other settings
    shot(page, "5-run-form-error")
    form.locator('input[name="optimizer.learning_rate"]').fill("0.002")
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    page.evaluate("window.__sameDocument = true")


def chart_points(page) -> int:
    """Markers drawn on the loss chart (what a person sees, not the chart's data)."""
    return page.evaluate("document.querySelectorAll('#metric-chart-loss .scatterlayer .point').length")


def test_clinician_walks_from_upload_to_onnx(page, live_server, clinician, celery_worker_process, tmp_path):
    base = live_server.url
    log_in(page, base)
    page.fill('#project-form input[name="name"]', "Lesion triage")
    shot(page, "1-home")
    page.click("#project-form button[type=submit]")
    page.wait_for_url(re.compile(r"/projects/\d+/$"))
    project_url = page.url
    shot(page, "2-project")
    upload_dataset(page, tmp_path)
    check_dataset_page(page)
    create_partition(page)

    # A run watched live: points arrive on the chart while it runs, without reloading.
    launch(page, epochs=20, batch_size=4)
    page.wait_for_function("document.getElementById('run-status').textContent === 'Running'", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#metric-chart-loss .scatterlayer .point').length >= 2", timeout=60_000)
    early = chart_points(page)
    assert page.locator("#run-status").text_content() == "Running", "the chart must fill while the run goes on"
    expect(page.locator("#run-eta")).to_contain_text("left")
    shot(page, "6-run-live")
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=480_000)  # a wait, not a timing: slow under load
    assert page.evaluate("window.__sameDocument") is True
    assert chart_points(page) == 20 * 2 > early
    expect(page.locator("#run-stop")).to_be_hidden()
    expect(page.locator("#test-accuracy")).to_have_text(re.compile(r"\d+\.\d%"))
    page.click("#run-public")
    expect(page.locator("#public-state")).to_contain_text("Public: every user")
    expect(page.locator("#run-public")).to_have_text("Make private")
    shot(page, "7-run-finished")
    with page.expect_download() as download_info:
        page.click("#model-download")
    model_path = tmp_path / "model.onnx"
    download_info.value.save_as(model_path)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": np.zeros((3, 1, 64, 64), dtype=np.float32)})[0]
    assert logits.shape == (3, 2)

    # A long run, cloned from the first, stopped from its page keeps what it did.
    page.get_by_role("link", name="Clone").click()
    page.wait_for_url(re.compile(r"/runs/new/\?from=\d+$"))
    expect(page.locator('#run-form input[name="name"]')).to_have_value(re.compile(r"^Copy of "))
    launch(page, epochs=300, batch_size=8)
    page.wait_for_function("document.querySelectorAll('#metric-chart-loss .scatterlayer .point').length >= 4", timeout=90_000)
    page.click("#run-stop")
    expect(page.locator("#run-status")).to_have_text("Stopped", timeout=60_000)
    expect(page.locator("#run-message")).to_contain_text("Stopped by the user")
    expect(page.locator("#model-download")).to_be_visible()
    expect(page.locator("#test-accuracy")).to_have_text(re.compile(r"\d+\.\d%"))
    shot(page, "7-run-stopped")

    # The owner sees what happened in the project.
    page.goto(project_url)
    expect(page.locator("#activity")).to_contain_text("Downloaded")
    expect(page.locator("#activity")).to_contain_text("clinician")
    shot(page, "8-project-activity")


def test_launch_on_a_single_class_dataset_explains_why_in_the_page(page, live_server, clinician):
    from backend.datasets.services import create_partition as partition_dataset
    from backend.projects.models import Project
    from tests.factories import ready_dataset

    project = Project.objects.create(owner=clinician, name="Normals only")
    partition = partition_dataset(clinician, ready_dataset(project, labels=("normal",)), "", 70, 15, 15, 1)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/runs/new/?partition={partition.pk}")
    page.click("#run-form button[type=submit]")
    message = page.locator('#run-form [data-error-for="partition"]')
    expect(message).to_contain_text("only one class ('normal')")
    expect(message).to_contain_text("at least two")
    assert "/runs/new/" in page.url
    shot(page, "5-run-form-one-class")


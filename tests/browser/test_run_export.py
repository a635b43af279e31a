"""The run page says, beside the downloads, whether the exported ONNX file was checked against the toolkit and what
the check found, in words: passed, failed (the download stays), or the older runs' check of the export example."""
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_page_modules import record_problems
from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset, training_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def finished_runs(user, checks: dict[str, dict]) -> dict[str, int]:
    """One succeeded run per entry, with these results, an ONNX file (unless its export failed) and safetensors
    (unless it is "old")."""
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun

    project = Project.objects.create(owner=user, name="Chest")
    partition = create_partition(user, ready_dataset(project, per_class=6, name="X-rays"), "", 75, 25, 0, 7)
    ids = {}
    for name, results in checks.items():
        run = TrainingRun.objects.create(project=project, partition=partition, name=name, spec=training_spec(epochs=1),
                                         status="succeeded", finished_at=timezone.now(), results=results)
        run.storage_dir.mkdir(parents=True, exist_ok=True)
        if "error" not in results.get("onnx", {}):
            run.onnx_path.write_bytes(b"onnx")
        if name != "old":
            run.safetensors_path.write_bytes(b"weights")
        ids[name] = run.pk
    return ids


def check(images=64, difference=3e-6, same=True, passed=True):
    return {"onnx": {"images": images, "subset": "validation", "max_abs_difference": difference, "same_predictions": same,
                     "tolerance": 1e-4, "passed": passed}}


def test_the_run_page_says_what_the_export_check_found(page, live_server, clinician):
    runs = finished_runs(clinician, {
        "passed": check(),
        "other classes": check(difference=0.25, same=False, passed=False),
        "drifted": check(difference=2e-3, passed=False),
        "old": {"onnx_max_abs_difference": 4e-7},
        "too large": {"onnx": {"error": "the model's weights take 2.1 GiB; one ONNX file holds less than 2 GiB. The "
                                        "weights are kept as safetensors.", "passed": False}},
    })
    log_in(page, live_server.url)
    problems = record_problems(page)

    page.goto(f"{live_server.url}/runs/{runs['passed']}/")
    line = page.locator("#model-check")
    expect(line).to_have_text("Checked: onnxruntime gives the same classes as the toolkit on 64 validation images; "
                              "largest difference 3e-6.")
    expect(line).to_have_class("ok")
    expect(page.locator("#model-download")).to_have_attribute("href", f"/api/runs/{runs['passed']}/model.onnx/")
    expect(page.locator("#weights-download")).to_have_attribute("href", f"/api/runs/{runs['passed']}/model.safetensors/")
    shot(page, "run-export-checked")
    with page.expect_download() as download:
        page.click("#weights-download")
    assert download.value.suggested_filename == f"run-{runs['passed']}-small_cnn.safetensors"

    page.goto(f"{live_server.url}/runs/{runs['other classes']}/")
    expect(line).to_have_text(re.compile(r"^Check failed: onnxruntime gives a different class than the toolkit for some of the 64 "
                                         r"validation images \(largest difference 0\.25\)\..*stays available to download\.$"))
    expect(line).to_have_class("failed")
    expect(page.locator("#model-download")).to_be_visible()
    shot(page, "run-export-check-failed")

    page.goto(f"{live_server.url}/runs/{runs['drifted']}/")
    expect(line).to_contain_text("Check failed: it gives the same classes on 64 validation images, but its outputs differ by "
                                 "up to 2e-3 (at most 1e-4 is expected)")

    page.goto(f"{live_server.url}/runs/{runs['old']}/")
    expect(line).to_have_text("Checked when exported: onnxruntime's outputs differ from the toolkit's by at most 4e-7 on the "
                              "example images.")
    expect(page.locator("#weights-download")).to_be_hidden()
    page.goto(f"{live_server.url}/runs/{runs['too large']}/")
    expect(line).to_have_text(re.compile(r"^No ONNX file: the model's weights take 2\.1 GiB"))
    expect(line).to_have_class("failed")
    expect(page.locator("#model-download")).to_be_hidden()
    expect(page.locator("#weights-download")).to_be_visible()
    # A download is a navigation Chromium ends as it turns into a file: its "request failed" is no problem.
    assert [p for p in problems if not p.endswith("model.safetensors/ net::ERR_ABORTED")] == [], problems

"""Explaining an uploaded file in the browser (js/explain_upload.js, issue 22): on a run's page the chosen file is
checked at once (a colour picture for a grayscale model: the reason beside the field, Explain stays off; a fitting one:
what it is and how it reaches the model), explained with its progress shown, then its probabilities and the heat map
over its own picture; a volume gets the three-plane viewer, the map following the plane. An imported model that can
only predict says why there is no heat map. No worker here: the test finishes the job as the worker would (its results
and a heat map file on the upload's grid). Screenshots at 1366 and 390 px."""
import io

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import no_sideways_scroll
from tests.browser.test_walkthrough import log_in
from tests.real_data import mni_brain, nifti

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READ = 20_000  # ms: the check reads the file in a child process (about 1 s; several on a loaded machine)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def finish(explanation, classes=("lesion", "normal"), probabilities=(0.3, 0.7), heat_map=True):
    """Done as the worker leaves it: its results, and a heat map with one hot spot on the upload's own grid."""
    from backend.runs.models import Explanation

    explanation.refresh_from_db()
    grid = [explanation.upload["depth"], explanation.upload["height"], explanation.upload["width"]]
    predicted = classes[int(np.argmax(probabilities))]
    results = {"classes": list(classes), "probabilities": list(probabilities), "predicted": predicted, "explained_class": predicted,
               "method": "Grad-CAM (MONAI)" if heat_map else "", "layer": "network.block3" if heat_map else "", "input_shape": [1, 64, 64],
               "windows": 1, "heat_map_shape": grid if heat_map else None,
               "note": "" if heat_map else "This model is for prediction only (onnx2torch could not convert its If): it runs in "
                                           "onnxruntime, which gives no gradients, so there is no heat map, only the prediction."}
    if heat_map:
        axes = np.meshgrid(*[np.linspace(0, 1, n) for n in grid], indexing="ij")
        heat = np.exp(-sum((axis - 0.3) ** 2 for axis in axes) / 0.02)
        explanation.heat_map_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(explanation.heat_map_path, heat.astype(np.float16))
    words = f"Predicted {predicted} ({max(probabilities):.1%})" + ("; the heat map shows where." if heat_map else "; no heat map.")
    Explanation.objects.filter(pk=explanation.pk).update(status="done", results=results, progress_done=3, progress_total=3, message=words)


def kept_model(run):
    run.weights_path.parent.mkdir(parents=True, exist_ok=True)
    run.weights_path.write_bytes(b"kept weights")  # what the service checks is there; no worker reads it here


def unexpected(problems: list[str], refusals: int = 1) -> list[str]:
    """The problems but the refusals the test asks for (a 400 of the check, and the console's line about it)."""
    expected = [p for p in problems if "/api/explanations/check/" in p or "status of 400 (Bad Request)" in p]
    assert len(expected) == 2 * refusals, problems
    return [p for p in problems if p not in expected]


def loaded(page, *ids):
    page.wait_for_function("(ids) => ids.every((id) => { const img = document.getElementById(id); "
                           "return img.complete && img.naturalWidth > 0; })", arg=list(ids))


def test_an_upload_is_checked_when_chosen_then_explained_over_its_own_picture(page, live_server, clinician, tmp_path):
    from backend.runs.models import Explanation

    run = a_finished_run(clinician)
    kept_model(run)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    card = page.locator("#explain-upload")
    expect(card).to_be_visible()
    field = card.locator('input[name="file"]')

    colour = tmp_path / "colour.png"
    colour.write_bytes(png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    field.set_input_files(str(colour))
    error = card.locator('[data-error-for="file"]')
    expect(error).to_contain_text("3 channels (colour)", timeout=READ)
    expect(error).to_contain_text("save it in grayscale")
    expect(card.locator("#explain-upload-button")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "explain-upload-refused-1366.png"), full_page=True)

    grey = tmp_path / "chest.png"
    grey.write_bytes(png(np.random.default_rng(1).integers(0, 255, (80, 96), dtype=np.uint8)))
    field.set_input_files(str(grey))
    expect(card.locator("#explain-upload-facts")).to_contain_text("PNG image 80 × 96, 1 channel: it fits", timeout=READ)
    expect(error).to_have_text("")
    card.locator("#explain-upload-button").click()
    expect(card.locator("#explain-upload-progress")).to_contain_text("Waiting for a worker", timeout=READ)
    explanation = Explanation.objects.get(run=run)
    assert explanation.upload["name"] == "chest.png" and explanation.sample_id is None
    assert page.evaluate("() => new URLSearchParams(window.location.search).get('explain')") == str(explanation.pk)

    finish(explanation)
    rows = card.locator("#upload-probabilities tbody tr")
    expect(rows.nth(1)).to_contain_text("normal (predicted)")
    expect(rows.nth(1)).to_contain_text("70.0%")
    expect(card.locator("#upload-legend")).to_contain_text("Grad-CAM of the class “normal”")
    expect(card.locator("#explain-upload-progress")).to_be_hidden()
    loaded(page, "upload-plane", "upload-heat")
    sizes = page.evaluate("() => ['upload-plane', 'upload-heat'].map((id) => { const img = document.getElementById(id); "
                          "return [img.naturalWidth, img.naturalHeight, img.clientWidth, img.clientHeight]; })")
    assert sizes[0] == sizes[1] and sizes[0][:2] == [96, 80], f"the map lies over the upload's own picture: {sizes}"
    expect(card.locator('#upload-viewer [name="axis"]')).to_be_hidden()
    page.fill('#upload-heat-controls [name="opacity"]', "0.3")
    expect(card.locator("#upload-heat")).to_have_css("opacity", "0.3")

    for width, height in ((1366, 768), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"explain-upload-{width}.png"), full_page=True)
        card.screenshot(path=str(ARTIFACTS / f"explain-upload-card-{width}.png"))
        if width == 390:
            no_sideways_scroll(page)
    page.wait_for_load_state("networkidle")
    assert not unexpected(problems), problems
    page.reload()  # the address opens the explanation again (leaving aborts the run's event stream: not a problem)
    expect(page.locator("#upload-probabilities tbody tr").nth(1)).to_contain_text("70.0%")


def test_a_volume_upload_gets_the_three_plane_viewer_with_its_heat_map(page, live_server, clinician, tmp_path):
    from backend.runs.models import Explanation, TrainingRun

    run = a_finished_run(clinician)
    kept_model(run)
    spec = {**run.spec, "data": {**run.spec.get("data", {}), "plan": {"dims": 3, "target_spacing": [6.0, 6.0, 6.0],
                                                                        "normalisation": "zscore", "patch_size": [16, 16, 16]}}}
    TrainingRun.objects.filter(pk=run.pk).update(spec=spec)
    brain = tmp_path / "t1.nii.gz"
    brain.write_bytes(nifti(*mni_brain(step=3)[::2]))  # a real T1 MR brain, 66 x 78 x 63 voxels of 3 mm
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    card = page.locator("#explain-upload")
    card.locator('input[name="file"]').set_input_files(str(brain))
    expect(card.locator("#explain-upload-facts")).to_contain_text("NIfTI volume", timeout=READ)
    expect(card.locator("#explain-upload-facts")).to_contain_text("at the model's spacing (6 × 6 × 6 mm)")
    card.locator("#explain-upload-button").click()
    expect(card.locator("#explain-upload-progress")).to_contain_text("Waiting for a worker", timeout=READ)
    explanation = Explanation.objects.get(run=run)
    finish(explanation)

    axis = card.locator('#upload-viewer [name="axis"]')
    expect(axis).to_be_visible()
    expect(axis.locator("option")).to_have_count(3)
    planes = explanation.upload["depth"], explanation.upload["height"], explanation.upload["width"]
    for name, count in zip(("axial", "coronal", "sagittal"), planes):
        axis.select_option(name)
        expect(card.locator("#upload-index-label")).to_have_text(f"{count // 2 + 1} of {count}")
        page.wait_for_function("(name) => document.getElementById('upload-heat').src.includes('axis=' + name) && "
                               "document.getElementById('upload-plane').src.includes('axis=' + name)", arg=name)
        loaded(page, "upload-plane", "upload-heat")
        sizes = page.evaluate("() => ['upload-plane', 'upload-heat'].map((id) => { const img = document.getElementById(id); "
                              "return [img.naturalWidth, img.naturalHeight]; })")
        assert sizes[0] == sizes[1], (name, sizes)
    card.locator('#upload-viewer [name="index"]').fill("3")
    page.wait_for_function("() => document.getElementById('upload-heat').src.includes('index=3')")
    card.screenshot(path=str(ARTIFACTS / "explain-upload-volume-1366.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    card.screenshot(path=str(ARTIFACTS / "explain-upload-volume-390.png"))
    no_sideways_scroll(page)
    page.wait_for_load_state("networkidle")
    assert not unexpected(problems, refusals=0), problems


def test_a_prediction_only_imported_model_says_why_there_is_no_heat_map(page, live_server, clinician, tmp_path):
    from backend.projects.models import Project
    from backend.runs.models import Explanation
    from backend.zoo.models import ImportedModel

    project = Project.objects.create(owner=clinician, name="Imported")
    model = ImportedModel.objects.create(project=project, name="branchy", kind="onnx", status="ready", mode="prediction_only",
                                         reason="onnx2torch could not convert its If.", channels=1, classes=["lesion", "normal"],
                                         inputs=[{"name": "image", "type": "float", "shape": ["batch", 1, 16, 16]}], class_count=2)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/imported-models/{model.pk}/")
    card = page.locator("#explain-upload")
    expect(card).to_contain_text("there is no heat map")
    brain = tmp_path / "t1.nii.gz"
    brain.write_bytes(nifti(*mni_brain(step=6)[::2]))
    card.locator('input[name="file"]').set_input_files(str(brain))
    expect(card.locator('[data-error-for="file"]')).to_contain_text("takes 2D images", timeout=READ)
    picture = tmp_path / "slice.png"
    picture.write_bytes(png(np.random.default_rng(2).integers(0, 255, (40, 40), dtype=np.uint8)))
    card.locator('input[name="file"]').set_input_files(str(picture))
    expect(card.locator("#explain-upload-facts")).to_contain_text("resized to 16 × 16 pixels", timeout=READ)
    card.locator("#explain-upload-button").click()
    expect(card.locator("#explain-upload-progress")).to_contain_text("Waiting for a worker", timeout=READ)
    finish(Explanation.objects.get(imported_model=model), heat_map=False)
    expect(card.locator("#upload-legend")).to_contain_text("No heat map: This model is for prediction only")
    expect(card.locator("#upload-heat-controls")).to_be_hidden()
    expect(card.locator("#upload-heat")).to_be_hidden()
    loaded(page, "upload-plane")
    card.screenshot(path=str(ARTIFACTS / "explain-upload-imported-1366.png"))
    page.wait_for_load_state("networkidle")
    assert not unexpected(problems), problems

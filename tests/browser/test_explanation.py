"""The sample viewer's heat map (js/explain.js): a run's explanation of a sample opened by its address shows the class
probabilities and the heat map over the plane, its hot spot where the map's peak is (read back from a screenshot),
with an opacity slider and a legend; opened with ?run= (the evaluation table's link) the explanation is queued, its
progress shown, and the result drawn once the worker is done. Screenshots at 1366, 1920 and 390 px."""
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_page_layout import a_finished_run
from tests.browser.test_run_results import no_sideways_scroll
from tests.browser.test_walkthrough import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PEAK = (20, 44)  # row, column of the heat map's peak on the 64x64 sample


def heat_map_file(explanation, shape=(1, 64, 64)):
    """A heat map like the worker's: one smooth hot spot at PEAK, 1 at its top, on the sample's grid."""
    rows, columns = np.mgrid[:shape[1], :shape[2]]
    heat = np.exp(-((rows - PEAK[0]) ** 2 + (columns - PEAK[1]) ** 2) / (2 * 5.0 ** 2))[None]
    explanation.heat_map_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(explanation.heat_map_path, heat.astype(np.float16))


def done(explanation, probabilities=(0.18, 0.82)):
    """The explanation as the worker leaves it: done, its results, its heat map file."""
    from backend.runs.models import Explanation

    predicted = ["lesion", "normal"][int(np.argmax(probabilities))]
    results = {"classes": ["lesion", "normal"], "probabilities": list(probabilities), "predicted": predicted,
               "explained_class": predicted, "method": "Grad-CAM (MONAI)", "layer": "network.block3", "input_shape": [1, 64, 64],
               "windows": 1, "heat_map_shape": [1, 64, 64], "note": ""}
    heat_map_file(explanation)
    Explanation.objects.filter(pk=explanation.pk).update(status="done", results=results, progress_done=3, progress_total=3,
                                                         message=f"Predicted {predicted}; the heat map shows where the model "
                                                                 f"found evidence for {predicted}.")


def hottest_point(path, box) -> tuple[float, float]:
    """Where the screenshot of the plane is reddest, as a fraction of the plane's box (row, column)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    redness = pixels[..., 0] - (pixels[..., 1] + pixels[..., 2]) / 2
    row, column = np.unravel_index(int(np.argmax(redness)), redness.shape)
    return row / box["height"], column / box["width"]


def test_an_explanation_shows_its_probabilities_and_its_heat_map_over_the_plane(page, live_server, clinician):
    from backend.runs.models import Explanation

    run = a_finished_run(clinician)
    sample = run.partition.dataset.samples.order_by("pk").first()
    explanation = Explanation.objects.create(run=run, sample=sample, queue=run.queue, created_by=clinician)
    done(explanation)
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/samples/{sample.pk}/?explain={explanation.pk}")

    rows = page.locator("#probabilities tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("normal (predicted)")
    expect(rows.nth(1)).to_contain_text("82.0%")
    expect(rows.nth(0)).to_contain_text("18.0%")
    expect(page.locator("#heat-legend-words")).to_contain_text("Grad-CAM of the class “normal” at the layer network.block3")
    heat = page.locator("#heat")
    expect(heat).to_be_visible()
    page.wait_for_function("() => document.getElementById('heat').complete && document.getElementById('heat').naturalWidth > 0"
                           " && document.getElementById('plane').complete && document.getElementById('plane').naturalWidth > 0")
    sizes = page.evaluate("() => ['plane', 'heat'].map((id) => { const img = document.getElementById(id); "
                          "return [img.naturalWidth, img.naturalHeight, img.clientWidth, img.clientHeight]; })")
    assert sizes[0] == sizes[1], f"the overlay is drawn the size of the plane and lies over it: {sizes}"

    # The hot spot in the picture a person sees is where the map's peak is (columns 44/64, rows 20/64 of the plane).
    stack = page.locator(".plane-stack")
    box = page.locator("#plane").bounding_box()
    shot = ARTIFACTS / "explanation-overlay.png"
    page.locator("#plane").screenshot(path=str(shot))
    row, column = hottest_point(shot, box)
    assert abs(row - (PEAK[0] + 0.5) / 64) < 0.06 and abs(column - (PEAK[1] + 0.5) / 64) < 0.06, (row, column)

    page.fill('#heat-controls [name="opacity"]', "0.2")
    expect(heat).to_have_css("opacity", "0.2")
    page.uncheck('#heat-controls [name="show-heat"]')
    expect(heat).to_be_hidden()
    page.check('#heat-controls [name="show-heat"]')
    expect(heat).to_be_visible()
    page.fill('#heat-controls [name="opacity"]', "0.6")

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
        page.screenshot(path=str(ARTIFACTS / f"explanation-{width}.png"), full_page=True)
        if width == 390:
            no_sideways_scroll(page)
    assert stack.is_visible()
    page.wait_for_load_state("networkidle")
    assert not problems, problems


def test_a_sample_opened_from_a_run_is_explained_with_its_progress_shown(page, live_server, clinician):
    from backend.runs.models import Explanation

    run = a_finished_run(clinician)
    run.weights_path.parent.mkdir(parents=True, exist_ok=True)
    run.weights_path.write_bytes(b"kept weights")  # what the service checks is there; no worker reads it here
    sample = run.partition.dataset.samples.order_by("pk").last()
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/samples/{sample.pk}/?run={run.pk}")

    expect(page.locator("#explain-status")).to_contain_text(f"by run {run.pk} is queued")
    expect(page.locator("#explain-progress")).to_contain_text("Waiting for a worker")
    explanation = Explanation.objects.get(run=run, sample=sample)
    assert page.evaluate("() => new URLSearchParams(window.location.search).get('explain')") == str(explanation.pk)
    expect(page.locator('#explain-form [name="run"]')).to_have_value(str(run.pk))

    done(explanation, probabilities=(0.93, 0.07))
    expect(page.locator("#probabilities tbody tr").nth(0)).to_contain_text("93.0%")
    expect(page.locator("#explain-progress")).to_be_hidden()
    expect(page.locator("#heat")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "explanation-queued-then-done.png"), full_page=True)
    page.wait_for_load_state("networkidle")
    assert not problems, problems


def test_a_volumes_heat_map_follows_the_three_plane_viewer(page, live_server, clinician):
    from backend.runs.models import Explanation
    from tests.factories import volumes_with_masks

    run = a_finished_run(clinician)
    sample = volumes_with_masks(run.project).samples.order_by("pk").first()  # 6 x 16 x 16 voxels of 2 x 0.5 x 0.5 mm
    # Tissue-like noise in HU (the factory's middle slices are flat, and a flat plane has no window to draw it with).
    np.save(sample.project_dir / sample.array, np.random.default_rng(0).normal(40, 20, (6, 16, 16)).astype(np.int16))
    explanation = Explanation.objects.create(run=run, sample=sample, queue=run.queue, created_by=clinician)
    done(explanation)
    depth, rows, columns = np.mgrid[:6, :16, :16]
    hot = np.exp(-((depth - 4) ** 2 + (rows - 4) ** 2 + (columns - 12) ** 2) / 8.0)  # a hot spot at slice 4, row 4, column 12
    np.save(explanation.heat_map_path, hot.astype(np.float16))
    explanation.refresh_from_db()
    Explanation.objects.filter(pk=explanation.pk).update(results={**explanation.results, "heat_map_shape": [6, 16, 16],
                                                                  "input_shape": [1, 6, 16, 16]})
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/samples/{sample.pk}/?explain={explanation.pk}")
    expect(page.locator("#probabilities tbody tr")).to_have_count(2)
    heat = page.locator("#heat")
    expect(heat).to_have_attribute("src", f"/api/explanations/{explanation.pk}/heat-map/?axis=axial&index=3")
    # A picture replaced while it loads is a cancelled request: each plane is let load before the next is asked.
    loaded = ("(plane) => ['plane', 'heat'].every((id) => { const img = document.getElementById(id); "
              "return img.complete && img.naturalWidth > 0 && img.src.includes(plane); })")
    page.wait_for_function(loaded, arg="axis=axial&index=3")
    page.select_option('#viewer-controls [name="axis"]', "coronal")
    expect(heat).to_have_attribute("src", f"/api/explanations/{explanation.pk}/heat-map/?axis=coronal&index=8")
    page.wait_for_function(loaded, arg="axis=coronal&index=8")
    page.fill('#viewer-controls [name="index"]', "4")  # the coronal plane through the hot spot's row
    expect(heat).to_have_attribute("src", f"/api/explanations/{explanation.pk}/heat-map/?axis=coronal&index=4")
    page.wait_for_function(loaded, arg="axis=coronal&index=4")
    sizes = page.evaluate("() => ['plane', 'heat'].map((id) => { const img = document.getElementById(id); "
                          "return [img.naturalWidth, img.naturalHeight]; })")
    assert sizes[0] == sizes[1] == [16, 24], f"a coronal plane of 2 mm slices drawn 4x taller, the overlay alike: {sizes}"
    shot = ARTIFACTS / "explanation-volume-coronal.png"
    page.locator("#plane").screenshot(path=str(shot))
    row, column = hottest_point(shot, page.locator("#plane").bounding_box())
    # Coronal planes are shown head up: slice 4 of 6 is row (6 - 1 - 4 + 0.5) / 6 from the top; column 12 of 16.
    assert abs(row - 1.5 / 6) < 0.1 and abs(column - 12.5 / 16) < 0.08, (row, column)
    page.screenshot(path=str(ARTIFACTS / "explanation-volume-1366.png"), full_page=True)
    page.wait_for_load_state("networkidle")
    assert not problems, problems


def test_a_row_of_the_runs_predictions_opens_its_sample_explained_by_the_run(page, live_server, clinician):
    from backend.runs.models import Evaluation, Explanation
    from tests.browser.test_run_results import results, store_predictions

    run = a_finished_run(clinician)
    run.weights_path.parent.mkdir(parents=True, exist_ok=True)
    run.weights_path.write_bytes(b"kept weights")
    evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=results())
    store_predictions(evaluation, list(run.partition.dataset.samples.order_by("pk")))
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.locator("#results")).to_be_visible()  # the finished run's stream has ended: leaving aborts nothing
    first = page.locator("#evaluation-predictions tbody tr").first.locator("a")
    expect(first).to_have_attribute("title", "Open the sample with this model's heat map")
    sample_id = int(first.text_content().lstrip("#"))
    first.click()
    expect(page.locator("#explain-status")).to_contain_text(f"by run {run.pk} is queued")
    explanation = Explanation.objects.get(run=run, sample_id=sample_id)
    expect(page).to_have_url(f"{live_server.url}/samples/{sample_id}/?explain={explanation.pk}")
    page.wait_for_load_state("networkidle")
    # Leaving a page cancels what it still asked (the run's event stream, a poll): that is no fault of the page.
    assert not [problem for problem in problems if "ERR_ABORTED" not in problem], problems

"""Segmenting an uploaded file in the browser (issue 23): a segmentation run's page has "Segment a file" instead of
"Explain an image"; the chosen file is checked at once (a 2D DICOM slice for a model of volumes: the reason beside the
field, Segment stays off; a real LAS NIfTI volume: what it is and how it reaches the model), segmented, then shown in
the three-plane viewer with the predicted mask over it, the ground truth beside it (the file is the dataset's own
sample), each class's volume in ml and the mask's downloads; the NIfTI download keeps the input's affine. No Celery
worker: the test runs the explanation job's own code in-process, as the worker would. Screenshots at 1366, 1920 and
390 px."""
import gzip

import nibabel as nib
import numpy as np
import pytest
from playwright.sync_api import expect
from pydicom.data import get_testdata_file

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_explain_upload import READ, loaded, unexpected
from tests.browser.test_page_modules import record_problems
from tests.browser.test_run_results import no_sideways_scroll
from tests.browser.test_walkthrough import log_in
from tests.factories import segmentation_run
from tests.real_data import NIBABEL_DATA, anatomical

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_volume_is_segmented_and_shown_beside_its_ground_truth_with_volumes_and_downloads(page, live_server, clinician, tmp_path):
    from backend.projects.models import Project
    from backend.runs.models import Explanation
    from workers.explanation import EXPLANATION

    upload = NIBABEL_DATA / "anatomical.nii"
    run = segmentation_run(Project.objects.create(owner=clinician, name="Brains"), upload.read_bytes(), "anatomical.nii")
    log_in(page, live_server.url)
    problems = record_problems(page)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    card = page.locator("#explain-upload")
    expect(card.locator("h2")).to_have_text("Segment a file")
    expect(card.locator("#explain-upload-button")).to_have_text("Segment")
    field = card.locator('input[name="file"]')

    field.set_input_files(get_testdata_file("CT_small.dcm"))
    error = card.locator('[data-error-for="file"]')
    expect(error).to_contain_text("takes volumes", timeout=READ)
    expect(card.locator("#explain-upload-button")).to_be_disabled()

    field.set_input_files(str(upload))
    expect(card.locator("#explain-upload-facts")).to_contain_text("NIfTI volume 25 × 41 × 33, 1 channel: it fits", timeout=READ)
    expect(error).to_have_text("")
    card.locator("#explain-upload-button").click()
    expect(card.locator("#explain-upload-progress")).to_contain_text("Waiting for a worker", timeout=READ)
    explanation = Explanation.objects.get(run=run)
    EXPLANATION.run(explanation.pk, "browser-test")  # the worker's job, here
    explanation.refresh_from_db()
    assert explanation.status == "done", explanation.message

    rows = card.locator("#upload-volumes tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("tissue")
    expect(card.locator("#upload-volume-unit")).to_have_text("Volume (ml)")
    sizes = explanation.results["sizes"]
    expect(rows.nth(2)).to_contain_text(f"{sizes[2]['voxels']:,}")
    expect(card.locator("#upload-truth")).to_be_visible()
    expect(card.locator("#upload-plane-caption")).to_have_text("Predicted mask")
    expect(card.locator("#upload-probabilities")).to_be_hidden()
    loaded(page, "upload-plane", "upload-heat", "upload-truth-plane")
    shown = page.evaluate("() => ['upload-plane', 'upload-heat', 'upload-truth-plane'].map((id) => { "
                          "const img = document.getElementById(id); return [img.naturalWidth, img.naturalHeight]; })")
    assert shown[0] == shown[1] == shown[2] == [33, 41], f"mask and ground truth on the upload's own plane: {shown}"

    axis = card.locator('#upload-viewer [name="axis"]')
    axis.select_option("coronal")
    page.wait_for_function("() => ['upload-plane', 'upload-heat', 'upload-truth-plane'].every((id) => "
                           "document.getElementById(id).src.includes('axis=coronal'))")
    loaded(page, "upload-plane", "upload-heat", "upload-truth-plane")

    with page.expect_download() as downloading:
        card.locator('#upload-downloads a[data-kind="nifti"]').click()
    saved = tmp_path / "mask.nii.gz"
    downloading.value.save_as(saved)
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(saved.read_bytes()))
    np.testing.assert_allclose(mask.affine, anatomical().affine, atol=1e-5)
    assert card.locator('#upload-downloads a[data-kind="seg"]').count() == 0, "no DICOM SEG of a NIfTI file"

    for width, height in ((1366, 768), (1920, 1080), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(ARTIFACTS / f"segment-upload-card-{width}.png"))
        if width == 390:
            no_sideways_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "segment-upload-390.png"), full_page=True)
    page.wait_for_load_state("networkidle")
    assert not unexpected(problems), problems

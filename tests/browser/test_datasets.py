"""Datasets in the browser: a folder of DICOM series and a NIfTI come in de-identified, the viewer
scrubs and windows them, a table gives labels after a preview, and two datasets merge."""
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.test_walkthrough import log_in, shot
from tests.medical import dicom_bytes, nifti_bytes, series

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def write_folder(root, files: dict[str, bytes]):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_folder_of_dicom_and_nifti_browsed_viewed_labelled_by_table_and_merged(page, live_server, clinician, celery_worker_process, tmp_path):
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="CT study")
    folder = tmp_path / "scans"
    files = {f"scans/MRN-1/ct/{name}": data for name, data in series(9, patient_id="MRN-1").items()}
    files.update({f"scans/MRN-2/ct/{name}": data for name, data in series(6, patient_id="MRN-2").items()})
    files["scans/MRN-3/xray.dcm"] = dicom_bytes(patient_id="MRN-3", burned_in="YES")
    volume = np.zeros((24, 20, 12), np.int16)
    volume[8:16, 6:14, 3:9] = 300
    files["scans/MRN-4/brain.nii.gz"] = nifti_bytes(volume, zooms=(1.0, 1.0, 2.0), compressed=True)
    files["scans/notes.txt"] = b"not an image"
    write_folder(tmp_path, files)

    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    form = page.locator("#upload-form")
    form.locator('select[name="labels_from"]').select_option("none")
    form.locator('input[name="folder"]').set_input_files(str(folder))
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#dataset-shape")).to_contain_text("2 patients")
    expect(page.locator("#report-summary")).to_contain_text("1 quarantined")
    expect(page.locator("#report")).to_contain_text("BurnedInAnnotation")
    expect(page.locator("#report")).to_contain_text("a document that describes the data, not an image")
    expect(page.locator("#thumbnails img")).to_have_count(3)
    page.wait_for_function("Array.from(document.querySelectorAll('#thumbnails img')).every(i => i.complete && i.naturalWidth > 0)")
    expect(page.locator("#thumbnails figcaption").first).to_contain_text("slices")
    shot(page, "d1-dicom-dataset")

    # Labels from a table of real patient IDs: pseudonymised with the project's mapping, so they still join.
    table = tmp_path / "labels.csv"
    table.write_text("mrn,finding\nMRN-1,tumour\nMRN-2,healthy\nMRN-9,healthy\n")
    table_form = page.locator("#table-form")
    table_form.locator('input[name="table"]').set_input_files(str(table))
    expect(table_form.locator('select[name="column"] option')).to_have_count(2)
    table_form.locator('select[name="column"]').select_option("mrn")
    table_form.locator('select[name="image_key"]').select_option("patient")
    table_form.locator('select[name="label_column"]').select_option("finding")
    page.click("#table-preview")
    result = page.locator("#table-result")
    expect(result).to_contain_text("2 of 3 samples matched a row")
    expect(result).to_contain_text("Rows without a sample: 1")
    expect(result).not_to_contain_text("MRN-9")  # examples are shown pseudonymised
    shot(page, "d2-table-preview")
    page.click("#table-apply")
    expect(page.locator("#class-chart")).to_contain_text("tumour", timeout=30_000)

    # The viewer: scrub slices, window presets, tags after de-identification.
    page.locator("#thumbnails a").first.click()
    page.wait_for_url(re.compile(r"/samples/\d+/$"))
    expect(page.locator("#sample-facts")).to_contain_text("volume")
    page.wait_for_function("document.getElementById('plane').complete && document.getElementById('plane').naturalWidth > 0")
    first_src = page.locator("#plane").get_attribute("src")
    page.locator('input[name="index"]').fill("0")
    page.locator('input[name="index"]').dispatch_event("input")
    expect(page.locator("#index-label")).to_contain_text("1 of 9")
    page.get_by_role("button", name="Lung").click()
    expect(page.locator('input[name="center"]')).to_have_value("-600")
    assert page.locator("#plane").get_attribute("src") != first_src
    page.locator('select[name="axis"]').select_option("coronal")
    page.wait_for_function("document.getElementById('plane').complete && document.getElementById('plane').naturalWidth > 0")
    expect(page.locator("#tags")).to_contain_text("Patient Identity Removed")
    expect(page.locator("#tags")).not_to_contain_text("MRN-1")
    expect(page.locator('#tags td.tag-name[data-depth="1"]').first).to_have_text("Code Value")
    shot(page, "d3-viewer")

    # Merge with a second dataset, mapping a label.
    from backend.datasets.models import Dataset

    first = Dataset.objects.get(project=project)
    other_files = {f"more/Healthy/p{k}/{name}": data for k in range(3) for name, data in series(3, patient_id=f"MRN-{10 + k}").items()}
    write_folder(tmp_path, other_files)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.locator('#upload-form input[name="folder"]').set_input_files(str(tmp_path / "more"))
    page.locator('#upload-form button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=120_000)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    merge = page.locator("#merge-form")
    merge.locator('button[type="submit"]').click()
    expect(merge.locator('[data-error-for="__all__"]')).to_contain_text("at least two")
    for box in merge.locator('input[name="datasets"]').all():
        box.check()
    merge.locator('input[name="name"]').fill("Merged")
    merge.locator("textarea").fill("Healthy -> healthy")
    merge.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#class-chart")).to_contain_text("healthy")
    merged = Dataset.objects.get(name="Merged")
    assert merged.class_counts.get("healthy") == 4 and "Healthy" not in merged.class_counts
    page.select_option("#source-filter", str(first.pk))
    expect(page.locator("#page-info")).to_contain_text("of 3")
    shot(page, "d4-merged")


def test_the_transfer_and_the_ingest_show_their_progress(page, live_server, clinician, tmp_path):
    from backend.datasets.models import Dataset
    from backend.projects.models import Project
    from tests.conftest import png_bytes

    project = Project.objects.create(owner=clinician, name="Progress")
    rng = np.random.default_rng(5)
    write_folder(tmp_path, {f"xrays/{'ab'[k % 2]}/img_{k:03d}.png": png_bytes(rng.integers(0, 255, (100, 100), dtype=np.uint8))
                            for k in range(40)})
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    # About 400 KB at 100 KB/s: long enough to watch the transfer as a person on a slow line would.
    network.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 100 * 1024})
    form = page.locator("#upload-form")
    form.locator('input[name="folder"]').set_input_files(str(tmp_path / "xrays"))
    form.locator('button[type="submit"]').click()
    bar = form.locator(".progress")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text(re.compile(r"Uploading 40 file\(s\): \d+\.\d of 0\.\d MB · .+ left"))
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9][0-9]?$"), timeout=10_000)  # part-way, not done
    shot(page, "d5-upload-progress")
    network.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    page.wait_for_url(re.compile(r"/datasets/\d+/$"), timeout=30_000)
    # No worker serves this test: the dataset waits in the queue, and its progress is what a worker
    # writes into the database as it goes.
    dataset = Dataset.objects.get(project=project)
    expect(page.locator("#dataset-status")).to_contain_text("Queued")
    expect(page.locator("#ingest-progress")).to_contain_text("Waiting for a worker")
    Dataset.objects.filter(pk=dataset.pk).update(status=Dataset.Status.INGESTING, progress_done=30, progress_total=80)
    expect(page.locator("#ingest-progress")).to_contain_text("38% · 30 of 80 steps")
    Dataset.objects.filter(pk=dataset.pk).update(progress_done=50)
    expect(page.locator("#ingest-progress")).to_contain_text(re.compile(r"63% · 50 of 80 steps · \d+ s left"))
    shot(page, "d6-ingest-progress")


def test_a_segmentation_upload_says_which_mask_went_where(page, live_server, clinician, celery_worker_process, tmp_path):
    """Real MR slices of three subjects, all named slice.png, and their tissue masks at the same places under
    masks/ (one missing, one for a subject with no image): the page counts masks, the report pairs them."""
    from backend.datasets.models import Dataset
    from backend.projects.models import Project
    from tests.conftest import png_bytes
    from tests.real_data import mni_brain

    t1, labels, _ = mni_brain()
    files = {f"brains/images/sub-0{k}/slice.png": png_bytes(t1[:, :, 25 + 6 * k]) for k in (1, 2, 3)}
    files.update({f"brains/masks/sub-0{k}/slice.png": png_bytes(labels[:, :, 25 + 6 * k]) for k in (1, 2)})
    files["brains/masks/sub-09/slice.png"] = png_bytes(labels[:, :, 60])
    write_folder(tmp_path, files)
    project = Project.objects.create(owner=clinician, name="Brains")

    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    form = page.locator("#upload-form")
    form.locator('input[name="folder"]').set_input_files(str(tmp_path / "brains"))
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=120_000)
    expect(page.locator("#dataset-shape")).to_contain_text("segmentation · 2 of 3 samples have a mask (labels 0, 1, 2), 1 has none")
    expect(page.locator("#report")).to_contain_text("no image at the place this mask names (an image 'sub-09/slice.*'")
    expect(page.locator("#report")).to_have_attribute("open", "")  # one file needs attention: the report is open on it
    page.locator('#report-outcomes [data-outcome="accepted"]').click()
    for k in (1, 2):
        first_cell = page.locator("td:first-child", has_text=re.compile(rf"^brains/masks/sub-0{k}/slice\.png$"))
        mask = page.locator("#report tbody tr").filter(has=first_cell)
        expect(mask).to_contain_text(f"mask of brains/images/sub-0{k}/slice.png (labels 0, 1, 2)")
    shot(page, "d7-segmentation-masks")
    for width in (390, 1920):  # a phone and a wide screen: the line of facts wraps inside its card
        page.set_viewport_size({"width": width, "height": 900})
        facts = page.locator("#dataset-shape").bounding_box()
        assert facts["x"] >= 0 and facts["x"] + facts["width"] <= width
        shot(page, f"d7-segmentation-masks-{width}")
    dataset = Dataset.objects.get(project=project)
    for k in (1, 2):
        sample = dataset.samples.get(source_path=f"brains/images/sub-0{k}/slice.png")
        assert np.array_equal(np.load(sample.project_dir / sample.mask), labels[:, :, 25 + 6 * k])

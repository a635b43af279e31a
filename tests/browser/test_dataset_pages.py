"""What a new user meets on the dataset pages: the ingest report of a large upload is paged and filtered by
outcome (its counts at the top), the project's table of datasets stays inside its box on a laptop, a
segmentation dataset says so with its masks and label values, and the sample viewer shows only the controls
and panels that apply to the sample."""
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.test_datasets import write_folder
from tests.browser.test_walkthrough import log_in, shot
from tests.conftest import make_zip, png_bytes
from tests.medical import dicom_bytes, nifti_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPORT_ROWS = 50  # dataset.js
PAGE_HEIGHT = "document.documentElement.scrollHeight"


def upload(page, base, project, path, labels_from="folders"):
    """Upload files or a folder through the project page's form, and wait for the dataset to be ready."""
    page.goto(f"{base}/projects/{project.pk}/")
    form = page.locator("#upload-form")
    form.locator('select[name="labels_from"]').select_option(labels_from)
    form.locator(f'input[name="{"folder" if path.is_dir() else "files"}"]').set_input_files(str(path))
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-status")).to_have_text("Ready", timeout=180_000)


def report_outcomes(page) -> set[str]:
    return set(page.locator("#report tbody tr td:nth-child(2)").all_inner_texts())


@pytest.mark.worker
def test_a_large_ingest_report_is_paged_and_filtered_by_outcome(page, live_server, clinician, celery_worker_process, tmp_path):
    """300 files (260 pictures, 25 damaged, 12 notes, 3 DICOM files with burned-in text): the report shows
    the count of each outcome, each a filter, and 50 rows at a time, so the page stays short."""
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Large upload")
    rng = np.random.default_rng(3)
    entries = {f"xrays/{'ab'[k % 2]}/img_{k:03d}.png": png_bytes(rng.integers(0, 255, (24, 24), dtype=np.uint8)) for k in range(260)}
    entries.update({f"xrays/a/damaged_{k:02d}.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40 for k in range(25)})
    entries.update({f"xrays/notes_{k:02d}.txt": b"not an image" for k in range(12)})
    entries.update({f"xrays/b/burned_{k}.dcm": dicom_bytes(patient_id=f"MRN-{k}", burned_in="YES") for k in range(3)})
    archive = tmp_path / "xrays.zip"
    archive.write_bytes(make_zip(entries))

    log_in(page, live_server.url)
    upload(page, live_server.url, project, archive)
    expect(page.locator("#report-summary")).to_have_text("300 files: 260 accepted, 25 rejected, 12 skipped, 3 quarantined")
    outcomes = page.locator("#report-outcomes button")
    expect(outcomes).to_have_text(["All files 300", "Needing attention 40", "Accepted 260", "Rejected 25", "Skipped 12",
                                   "Quarantined (for review) 3"])
    report = page.locator("#report")
    expect(report).not_to_have_attribute("open", "")  # 40 files need attention: closed until asked for
    page.locator("#report summary").click()
    # It opens on the files that need attention: one page of them.
    expect(page.locator('#report-outcomes [aria-pressed="true"]')).to_have_text("Needing attention 40")
    expect(page.locator("#report tbody tr")).to_have_count(40)
    assert report_outcomes(page) == {"rejected", "skipped", "quarantined"}
    expect(page.locator("#report-shown")).to_have_text("1–40 of 40 needing attention")
    expect(page.locator("#report-next")).to_be_hidden()

    # Every file: 50 rows a page; the page stays short (500 rows of the old report made it about 17,000 px tall).
    page.locator('#report-outcomes [data-outcome=""]').click()
    expect(page.locator("#report-shown")).to_have_text("1–50 of 300 files")
    expect(page.locator("#report tbody tr")).to_have_count(REPORT_ROWS)
    assert report.bounding_box()["height"] < 2200
    assert page.evaluate(PAGE_HEIGHT) < 4000
    first_file = page.locator("#report tbody td:first-child").first
    first = first_file.inner_text()
    expect(page.locator("#report-prev")).to_be_disabled()
    shot(page, "d8-report-all-files")
    page.locator("#report-next").click()
    expect(page.locator("#report-shown")).to_have_text("51–100 of 300 files")
    expect(first_file).not_to_have_text(first)
    assert 0 <= page.locator("#report-outcomes").bounding_box()["y"] < 100  # the new page is read from its top
    page.locator("#report-prev").click()
    expect(first_file).to_have_text(first)

    # A count is a filter: the rejected files alone, then the accepted ones to their last page.
    page.locator('#report-outcomes [data-outcome="rejected"]').click()
    expect(page.locator("#report-shown")).to_have_text("1–25 of 25 rejected")
    expect(page.locator("#report tbody tr")).to_have_count(25)
    assert report_outcomes(page) == {"rejected"}
    expect(page.locator("#report tbody")).to_contain_text("xrays/a/damaged_00.png")
    page.locator('#report-outcomes [data-outcome="accepted"]').click()
    expect(page.locator('#report-outcomes [aria-pressed="true"]')).to_have_text("Accepted 260")
    for shown in ("51–100", "101–150", "151–200", "201–250", "251–260"):
        page.locator("#report-next").click()
        expect(page.locator("#report-shown")).to_have_text(f"{shown} of 260 accepted")
    expect(page.locator("#report tbody tr")).to_have_count(10)
    expect(page.locator("#report-next")).to_be_disabled()
    assert report_outcomes(page) == {"accepted"}
    page.locator('#report-outcomes [data-outcome="quarantined"]').click()
    expect(page.locator("#report tbody tr")).to_have_count(3)
    expect(page.locator("#report tbody")).to_contain_text("BurnedInAnnotation")
    shot(page, "d8-report-quarantined")
    for width in (390, 1920):  # a phone and a wide screen: the report stays inside the page's width
        page.set_viewport_size({"width": width, "height": 900})
        page.locator('#report-outcomes [data-outcome=""]').click()
        expect(page.locator("#report tbody tr")).to_have_count(REPORT_ROWS)
        # The charts follow their boxes once the resize reaches them (a ResizeObserver, then Plotly): wait for it.
        page.wait_for_function("(w) => document.documentElement.scrollWidth <= w", arg=width, timeout=15_000)
        shot(page, f"d8-report-{width}")


def test_the_datasets_table_fits_or_scrolls_inside_its_box_on_a_laptop(page, live_server, clinician):
    """At 1280 px every column of the project's datasets is visible, or the table scrolls inside its own box:
    the page itself never scrolls sideways."""
    from backend.datasets.models import Dataset
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Many datasets")
    for k, name in enumerate(["chest_xray_pediatric_pneumonia_guangzhou_women_and_children_2018",
                              "brain_tumour_segmentation_BraTS_2021_training_subset", "Lung CT (LIDC-IDRI, 1,018 scans)"]):
        Dataset.objects.create(project=project, name=name, status=Dataset.Status.READY, modalities="CT, DICOM, MR, NIfTI, PNG",
                               class_counts={"COVID-19": 5, "NORMAL": 1583, "PNEUMONIA (bacterial)": 2780, "PNEUMONIA (viral)": 1493},
                               sample_count=5861 + k, patient_count=1204, size_bytes=1_234_000_000)
    log_in(page, live_server.url)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/projects/{project.pk}/")
        card = page.locator("#datasets-card").bounding_box()
        box = page.locator("#dataset-table-box")
        assert box.bounding_box()["x"] + box.bounding_box()["width"] <= card["x"] + card["width"]
        fits = page.evaluate("""() => { const box = document.getElementById('dataset-table-box');
            return box.scrollWidth <= box.clientWidth; }""")
        if fits:  # every column inside the box
            for header in page.locator("#dataset-table th").all():
                assert header.bounding_box()["x"] + header.bounding_box()["width"] <= card["x"] + card["width"]
        else:  # or the box scrolls
            assert box.evaluate("(node) => getComputedStyle(node).overflowX") in ("auto", "scroll")
        if width == 1280:
            assert fits, "at 1280 px the datasets' table has the card's whole width"
            assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        shot(page, f"d9-project-datasets-{width}")


@pytest.mark.worker
def test_a_segmentation_dataset_says_so_and_the_viewer_shows_what_applies(page, live_server, clinician, celery_worker_process, tmp_path):
    """PNG slices with masks holding 0, 1 and 2 are listed as "segmentation · 3 masks · labels 0, 1, 2", not
    "(unlabelled)"; a PNG's viewer has no plane selector and no tags panel, a NIfTI volume's has both."""
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Segmentation")
    rng = np.random.default_rng(7)
    files = {}
    for k in (1, 2, 3):
        mask = np.zeros((40, 40), np.uint8)
        mask[5:20, 5:20], mask[22:35, 22:35] = 1, 2
        files[f"slices/images/sub-0{k}/slice.png"] = png_bytes(rng.integers(0, 255, (40, 40), dtype=np.uint8))
        files[f"slices/masks/sub-0{k}/slice.png"] = png_bytes(mask)
    volume = np.zeros((24, 20, 12), np.int16)
    volume[8:16, 6:14, 3:9] = 300
    files["volumes/brain.nii.gz"] = nifti_bytes(volume, zooms=(1.0, 1.0, 2.0), compressed=True)
    write_folder(tmp_path, files)

    log_in(page, live_server.url)
    upload(page, live_server.url, project, tmp_path / "slices")
    expect(page.locator("#class-chart-title")).to_have_text("Samples and masks")
    expect(page.locator("#class-chart")).to_contain_text("with a mask")
    expect(page.locator("#class-chart")).not_to_contain_text("unlabelled")
    expect(page.locator("#thumbnails figcaption")).to_have_text(["mask", "mask", "mask"])
    expect(page.locator("#label-filter")).to_be_hidden()  # one label: nothing to filter by
    png_sample = page.locator("#thumbnails a").first.get_attribute("href")
    upload(page, live_server.url, project, tmp_path / "volumes", labels_from="none")
    volume_sample = page.locator("#thumbnails a").first.get_attribute("href")

    page.goto(f"{live_server.url}/projects/{project.pk}/")
    row = page.locator("#dataset-table tr", has_text="slices")
    expect(row).to_contain_text("segmentation · 3 masks · labels 0, 1, 2")
    expect(row).not_to_contain_text("unlabelled")
    expect(page.locator("#merge-form label", has_text="slices")).to_contain_text("segmentation · 3 masks · labels 0, 1, 2")
    shot(page, "d10-segmentation-row")

    page.goto(f"{live_server.url}{png_sample}")
    expect(page.locator("#sample-facts")).to_contain_text("mask (labels 0, 1, 2) · image")
    page.wait_for_function("document.getElementById('plane').complete && document.getElementById('plane').naturalWidth > 0")
    page.wait_for_load_state("networkidle")  # the tags asked for and answered
    expect(page.locator('select[name="axis"]')).to_be_hidden()
    expect(page.locator('input[name="index"]')).to_be_hidden()
    expect(page.locator("#tags-card")).to_be_hidden()
    expect(page.locator('input[name="mask"]')).to_be_visible()
    shot(page, "d10-png-viewer")

    page.goto(f"{live_server.url}{volume_sample}")
    expect(page.locator("#sample-facts")).to_contain_text("volume")
    expect(page.locator('select[name="axis"]')).to_be_visible()
    expect(page.locator('select[name="axis"] option')).to_have_text(["axial", "coronal", "sagittal"])
    expect(page.locator('input[name="index"]')).to_be_visible()
    expect(page.locator("#tags-card")).to_be_visible()  # the NIfTI header's facts
    page.locator('select[name="axis"]').select_option("sagittal")
    page.wait_for_function("document.getElementById('plane').complete && document.getElementById('plane').naturalWidth > 0")
    shot(page, "d10-nifti-viewer")

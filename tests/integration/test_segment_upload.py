"""Segmenting an uploaded file (issue 23) through the API with a real worker: a segmentation run's kept model takes the
upload as an explanation does (checked first, one job lifecycle), and its result is the predicted label map on the
file's own grid, each class's size in ml, and the mask as files. A real LAS NIfTI volume (nibabel's anatomical.nii)
comes back as a NIfTI mask with the input's affine, orientation and qform/sform codes; a real CT slice in DICOM
(pydicom's CT_small.dcm) comes back as a PNG of label values and a DICOM SEG that references the uploaded image.
The file being one of the dataset's samples with a mask, its ground truth is named beside the prediction."""
import gzip
import io

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from pydicom.data import get_testdata_file

from backend.runs.models import Explanation
from backend.runs.segmentations import LABEL_MAP, mask_dir
from tests.factories import segmentation_run
from tests.integration.test_evaluation import finished
from tests.real_data import NIBABEL_DATA, anatomical
from workers.engine.ingest.nifti import read_nifti

pytestmark = pytest.mark.django_db(transaction=True)


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def segmented(api, run, name: str, data: bytes, worker) -> dict:
    response = api.post("/api/explanations/", {"run": run.pk, "file": upload(name, data)}, format="multipart")
    assert response.status_code == 202, response.content
    explanation = finished(Explanation, response.json()["id"])
    assert explanation.status == "done", explanation.message + worker.log_path.read_text()[-3000:]
    return api.get(f"/api/explanations/{explanation.pk}/").json()


def test_an_uploaded_las_nifti_is_segmented_and_its_mask_downloads_with_the_input_affine(api, project, celery_worker_process):
    data = (NIBABEL_DATA / "anatomical.nii").read_bytes()
    run = segmentation_run(project, data, "anatomical.nii")
    checked = api.post("/api/explanations/check/", {"run": run.pk, "file": upload("anatomical.nii", data)}, format="multipart")
    assert checked.status_code == 200 and checked.json()["kind"] == "volume", checked.content
    flat = api.post("/api/explanations/check/", {"run": run.pk, "file": upload("ct.dcm", open(get_testdata_file("CT_small.dcm"), "rb").read())},
                    format="multipart")
    assert flat.status_code == 400 and flat.json()["field"] == "file" and "takes volumes" in flat.json()["message"]

    body = segmented(api, run, "anatomical.nii", data, celery_worker_process)
    results = body["results"]
    assert body["heat_map_url"] is None and body["mask_url"] and set(body["downloads"]) == {"nifti"}
    assert results["classes"] == ["background", "tissue", "bright"] and results["label_values"] == [0, 1, 2]
    assert results["label_map_shape"] == [25, 41, 33], "the upload's own grid (slices, rows, columns as stored)"
    assert sum(size["voxels"] for size in results["sizes"]) == 25 * 41 * 33
    for size in results["sizes"]:  # 2 x 2 x 2 mm voxels: 8 mm³ each
        assert size["ml"] == pytest.approx(size["voxels"] * 8 / 1000)
    sample = run.partition.dataset.samples.get()
    assert results["ground_truth_sample"] == sample.pk, "the same file (SHA-256) as the dataset's sample with its mask"
    assert body["message"].startswith("Segmented")

    image = api.get(f"{body['image_url']}?axis=coronal&index=20")
    overlay = api.get(f"{body['mask_url']}?axis=coronal&index=20")
    assert image.status_code == overlay.status_code == 200 and overlay["X-Plane-Count"] == "41"
    picture, mask_plane = Image.open(io.BytesIO(image.content)), Image.open(io.BytesIO(overlay.content))
    assert picture.size == mask_plane.size and mask_plane.mode == "RGBA", "the mask lies over the image's plane"

    download = api.get(body["downloads"]["nifti"])
    assert download.status_code == 200 and 'filename="anatomical-mask.nii.gz"' in download["Content-Disposition"]
    content = b"".join(download.streaming_content)
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(content))
    source = anatomical()
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    assert nib.aff2axcodes(mask.affine) == ("L", "A", "S") and mask.shape == source.shape
    assert (int(mask.header["qform_code"]), int(mask.header["sform_code"])) == (2, 2), "the input's codes"
    kept = np.load(mask_dir(Explanation.objects.get(pk=body["id"])) / LABEL_MAP)
    assert np.array_equal(read_nifti(content, "mask.nii.gz").pixels, kept), "read back as an upload: the label map, voxel for voxel"

    for kind, words in (("seg", "DICOM"), ("png", "volume"), ("bogus", "as must be one of")):
        refused = api.get(f"/api/explanations/{body['id']}/download/?as={kind}")
        assert refused.status_code == 400 and refused.json()["field"] == "as" and words in refused.json()["message"], refused.content
    again = api.post("/api/explanations/", {"run": run.pk, "file": upload("copy.nii", data)}, format="multipart")
    assert again.json()["id"] == body["id"], "the same file by the same model: one job"


def test_an_uploaded_dicom_slice_gets_a_png_mask_and_a_dicom_seg_referencing_it(api, project, celery_worker_process):
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    run = segmentation_run(project, data, "CT_small.dcm", labels=("soft tissue",), percentiles=(70,), modality="CT")
    body = segmented(api, run, "CT_small.dcm", data, celery_worker_process)
    results = body["results"]
    assert set(body["downloads"]) == {"png", "preview", "seg"} and results["label_map_shape"] == [1, 128, 128]
    assert "mm2" in results["sizes"][1] and results["seg_note"] is None
    png = Image.open(io.BytesIO(b"".join(api.get(body["downloads"]["png"]).streaming_content)))
    labels = np.asarray(png)
    assert labels.shape == (128, 128) and set(np.unique(labels)) <= {0, 1}
    assert sum(size["voxels"] for size in results["sizes"]) == 128 * 128 and results["sizes"][1]["voxels"] == int((labels == 1).sum())

    seg = hd.seg.segread(io.BytesIO(b"".join(api.get(body["downloads"]["seg"]).streaming_content)))
    explanation = Explanation.objects.get(pk=body["id"])
    header = pydicom.dcmread(explanation.project.storage_dir / explanation.upload["original"], force=True)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["soft tissue"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == header.SeriesInstanceUID
    frames = seg.get_pixels_by_source_instance([header.SOPInstanceUID], combine_segments=True)
    assert np.array_equal(frames[0], labels), "the DICOM SEG's frame is the mask, pixel for pixel"
    assert api.get(f"/api/explanations/{body['id']}/download/?as=nifti").status_code == 400
    refused = api.get(f"{body['mask_url']}?axis=coronal")
    assert refused.status_code == 400 and refused.json()["field"] == "axis"

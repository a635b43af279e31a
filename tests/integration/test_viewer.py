"""The sample viewer's API: planes along three axes at true proportions, window/level, masks, refusals."""
import io

import numpy as np
import pytest
from PIL import Image

from backend.datasets.models import Dataset, Sample
from tests.medical import dicom_bytes
from workers.engine.ingest.deid import Deidentifier
from workers.engine.ingest.dicom import read_dicom

pytestmark = pytest.mark.django_db


def volume_sample(project, spacing, shape=(10, 20, 30)) -> Sample:
    dataset = Dataset.objects.create(project=project, name="CT", status=Dataset.Status.READY, sample_count=1, modalities="CT")
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True)
    volume = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    np.save(arrays / "v.npy", volume)
    mask = (volume > volume.mean()).astype(np.uint8)
    np.save(arrays / "m.npy", mask)
    return Sample.objects.create(
        dataset=dataset, source_dataset=dataset, label="x", kind=Sample.Kind.VOLUME, modality="CT", source_path="ct",
        array=f"datasets/{dataset.pk}/arrays/v.npy", mask=f"datasets/{dataset.pk}/arrays/m.npy", depth=shape[0],
        height=shape[1], width=shape[2], channels=1, dtype="int16", spacing=spacing, sha256="a" * 64,
        meta={"rescale_slope": 1.0, "rescale_intercept": -1024.0})


def plane(api, sample, **params):
    response = api.get(f"/api/samples/{sample.pk}/slice/", params)
    assert response.status_code == 200, response.content
    return Image.open(io.BytesIO(response.content)), response


def test_coronal_and_sagittal_planes_are_stretched_to_the_slice_spacing(api, project):
    sample = volume_sample(project, spacing=[3.0, 1.0, 1.0])
    axial, response = plane(api, sample, axis="axial")
    assert axial.size == (30, 20) and response["X-Plane-Count"] == "10" and response["X-Plane-Index"] == "5"
    coronal, response = plane(api, sample, axis="coronal", index=4)
    assert coronal.size == (30, 30), "10 slices 3 mm apart are 30 mm tall, as 30 columns of 1 mm are wide"
    assert response["X-Plane-Index"] == "4" and response["X-Plane-Count"] == "20"
    sagittal, _ = plane(api, sample, axis="sagittal")
    assert sagittal.size == (20, 30)


def test_unknown_spacing_shows_voxels_square_and_masks_overlay_in_colour(api, project):
    sample = volume_sample(project, spacing=[])
    coronal, _ = plane(api, sample, axis="coronal")
    assert coronal.size == (30, 10)
    grey, _ = plane(api, sample, axis="axial")
    overlaid, _ = plane(api, sample, axis="axial", mask="1")
    assert grey.mode == "L" and overlaid.mode == "RGB"


def test_window_changes_the_picture_and_bad_requests_say_why(api, project):
    sample = volume_sample(project, spacing=[1.0, 1.0, 1.0])
    narrow, _ = plane(api, sample, center=-1024 + 3000, width=10)
    wide, _ = plane(api, sample, center=-1024 + 3000, width=6000)
    assert np.asarray(narrow).std() > np.asarray(wide).std()
    for params, field in [({"axis": "oblique"}, "axis"), ({"center": 40}, "width"), ({"center": 40, "width": 0}, "width")]:
        response = api.get(f"/api/samples/{sample.pk}/slice/", params)
        assert response.status_code == 400 and response.json()["field"] == field, response.content


def test_tags_are_the_stored_de_identified_header_with_sequences_nested(api, project):
    sample = volume_sample(project, spacing=[1.0, 1.0, 1.0])
    header = read_dicom(dicom_bytes(patient_id="MRN-77"), Deidentifier(b"t" * 32)).original
    (sample.project_dir / f"datasets/{sample.dataset_id}/h.dcm").write_bytes(header)
    sample.original = f"datasets/{sample.dataset_id}/h.dcm"
    sample.save()
    rows = api.get(f"/api/samples/{sample.pk}/tags/").json()
    by_name = {row["name"]: row for row in rows}
    assert by_name["Patient Identity Removed"]["value"] == "YES" and not any("MRN-77" in row["value"] for row in rows)
    sequence = by_name["De-identification Method Code Sequence"]
    assert sequence["value"] == "2 items" and sequence["depth"] == 0
    codes = [row for row in rows if row["name"] == "Code Value"]
    assert [row["value"] for row in codes] == ["113100", "113107"] and all(row["depth"] == 1 for row in codes)


def test_a_flat_middle_slice_opens_with_the_volumes_window_and_a_flat_volume_with_one_that_can_be_sent_back(api, project):
    """The factory volume of the explanation test: the middle slice one value, other slices not. The window offered
    must be one the plane accepts (a width of 0 is refused), so the viewer draws the volume instead of an error."""
    sample = volume_sample(project, spacing=[1.0, 1.0, 1.0])
    volume = np.full((10, 20, 30), 40, np.int16)
    volume[:3] = np.arange(600, dtype=np.int16).reshape(20, 30)  # the top slices vary, the middle one is flat
    np.save(sample.project_dir / sample.array, volume)
    display = api.get(f"/api/samples/{sample.pk}/").json()["display"]
    assert display["window_width"] > 100, display  # the volume's spread, not the flat slice's
    plane(api, sample, center=display["window_center"], width=display["window_width"])
    np.save(sample.project_dir / sample.array, np.full((10, 20, 30), 40, np.int16))
    display = api.get(f"/api/samples/{sample.pk}/").json()["display"]
    assert display["window_width"] == pytest.approx(0.001), display
    plane(api, sample, center=display["window_center"], width=display["window_width"])

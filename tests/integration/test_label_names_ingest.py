"""An upload of NIfTI image/mask pairs with a Decathlon dataset.json beside them, ingested by a real worker: the
dataset records the names the file gives, and the value the masks hold that it does not name is reported."""
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.datasets.models import Dataset
from tests.conftest import make_zip, wait_for
from tests.medical import nifti_bytes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
DATASET_JSON = b'''{"name": "Liver", "modality": {"0": "CT"}, "numTraining": 2,
 "labels": {"0": "background", "1": "liver", "2": "cancer", "4": "vessel"}}'''


def case(number: int) -> tuple[bytes, bytes]:
    """A CT-like volume and its mask: liver (1) everywhere in a block, cancer (2) inside it, and in the second case a
    spot of 3, a label the dataset.json does not name."""
    rng = np.random.default_rng(number)
    volume = rng.normal(-50, 20, (20, 16, 8)).astype(np.int16)
    mask = np.zeros(volume.shape, np.uint8)
    mask[4:16, 4:12, 2:6] = 1
    mask[8:12, 6:10, 3:5] = 2
    if number == 2:
        mask[1, 1, 1] = 3
    volume[mask > 0] += 120
    zooms = (0.8, 0.8, 2.5)
    return nifti_bytes(volume, zooms, compressed=True), nifti_bytes(mask, zooms, compressed=True)


def test_a_dataset_json_beside_nifti_masks_names_the_labels(api, project, celery_worker_process):
    files = {"Task03_Liver/dataset.json": DATASET_JSON}
    for number in (1, 2):
        image, mask = case(number)
        files[f"Task03_Liver/imagesTr/liver_{number}.nii.gz"] = image
        files[f"Task03_Liver/labelsTr/liver_{number}.nii.gz"] = mask
    response = api.post("/api/datasets/", {"project": project.pk, "name": "Liver",
                                           "files": [SimpleUploadedFile("Task03_Liver.zip", make_zip(files))]}, format="multipart")
    assert response.status_code == 202, response.content
    dataset = wait_for(lambda: Dataset.objects.filter(pk=response.json()["id"], status__in=["ready", "failed"]).first(), 120,
                       "the ingest")
    assert dataset.status == "ready", dataset.message
    assert (dataset.task, dataset.masked_count, dataset.mask_values) == ("segmentation", 2, [0, 1, 2, 3])
    # 4 is named but in no mask: kept, and harmless; 3 is in a mask and unnamed: reported.
    assert dataset.label_names == {"0": "background", "1": "liver", "2": "cancer", "4": "vessel"}
    assert dataset.segmentation_labels == [(0, "background"), (1, "liver"), (2, "cancer"), (3, "label 3")]
    assert dataset.unnamed_label_values == [3]
    assert dataset.message.endswith("Label 3 has no name in the upload's label file; name them in the Labels card.")
    entry = dataset.report.get(path="Task03_Liver/dataset.json")
    assert entry.status == "accepted"
    assert entry.reason == ("names the labels of the masks: 0 background, 1 liver, 2 cancer, 4 vessel; the masks also hold 3, "
                            "which no label file names: name it in the Labels card of the dataset page")
    assert dataset.samples.count() == 2, "the label file is no sample"
    body = api.get(f"/api/datasets/{dataset.pk}/").json()
    assert body["label_names"]["1"] == "liver" and body["unnamed_label_values"] == [3]
    # Named on the dataset page: nothing is left unnamed.
    named = api.patch(f"/api/datasets/{dataset.pk}/", {"label_names": {**dataset.label_names, "3": "cyst"}}, format="json")
    assert named.status_code == 400, "4 is in no mask: the page names only what the masks hold"
    assert named.json()["message"].startswith("value 4 is in no mask; the masks hold 0, 1, 2, 3.")
    named = api.patch(f"/api/datasets/{dataset.pk}/", {"label_names": {"1": "liver", "2": "cancer", "3": "cyst"}}, format="json")
    assert named.status_code == 200 and named.json()["unnamed_label_values"] == []

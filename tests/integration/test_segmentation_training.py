"""Segmentation through the whole toolkit: an upload of NIfTI image/mask pairs, refusals at launch (a classification
network, the task Classification on a dataset of masks), and a real worker that builds the store with the masks,
trains the defaults (a 3D U-Net, Dice + cross-entropy, mean foreground Dice monitored), records Dice per label, and
exports an ONNX file whose sides are dynamic; its test cases are evaluated on their own grids; one of the uploaded
images, segmented as an upload, downloads as a NIfTI mask with the input's affine that matches its own mask; a second
run starts from the first's kept model."""
import gzip
import zipfile

import nibabel as nib
import numpy as np
import pytest

from backend.runs.models import Evaluation, TrainingRun
from tests.conftest import wait_for
from tests.integration.test_evaluation import finished
from tests.integration.test_segment_upload import segmented
from tests.integration.test_volume_training import partition_of, ready_dataset
from workers.engine.demo import write_blob_nifti_zip
from workers.engine.export import onnx_predict

pytestmark = pytest.mark.django_db(transaction=True)


def blob_entries(tmp_path, count: int) -> dict[str, bytes]:
    with zipfile.ZipFile(write_blob_nifti_zip(tmp_path / "blobs.zip", count=count)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_worker_segments_nifti_pairs_with_the_defaults(api, project, celery_worker_process, tmp_path):
    dataset = ready_dataset(api, project, blob_entries(tmp_path, 14), "Blobs")
    assert dataset.task == "segmentation" and dataset.masked_count == 14 and dataset.mask_values == [0, 1, 2]
    assert dataset.planned and dataset.fingerprint["count"] == 14
    partition = partition_of(api, dataset)

    refused = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "small_cnn_3d"}}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "model.architecture", refused.json()
    assert "segmentation network" in refused.json()["message"]
    classify = api.post("/api/runs/", {"partition": partition, "task": "classification"}, format="json")
    assert classify.status_code == 400 and classify.json()["field"] == "task", classify.json()
    assert "choose the task Segmentation" in classify.json()["message"]

    response = api.post("/api/runs/", {"partition": partition, "epochs": 12}, format="json")
    assert response.status_code == 202, response.content
    run = wait_for(lambda: TrainingRun.objects.filter(pk=response.json()["id"], status__in=TrainingRun.finished_statuses()).first(),
                   480, "the run to finish")
    assert run.status == "succeeded", run.message + celery_worker_process.log_path.read_text()[-3000:]
    assert run.spec["task"] == "segmentation" and run.spec["model"]["architecture"] == "unet_3d"
    assert run.spec["monitor"] == "validation.mean_dice" and run.spec["loss"]["name"] == "dice_ce"
    assert run.results["classes"] == ["background", "label 1", "label 2"]
    names = set(run.metrics.filter(subset="validation", epoch=12).values_list("name", flat=True))
    assert {"mean_dice", "class_dice.label 1", "class_dice.label 2", "iou", "pixel_accuracy"} <= names, names
    assert 0 <= run.results["test"]["mean_dice"] <= 1
    assert run.results["onnx"]["passed"], run.results["onnx"]
    # Dynamic sides: the exported network takes a volume larger than the patch it learnt on.
    patch = run.spec["data"]["plan"]["patch_size"]
    larger = [patch[0], patch[1] + 16, patch[2] + 8]
    outputs = onnx_predict(run.onnx_path, np.zeros((1, 1, *larger), dtype=np.float32))
    assert outputs.shape == (1, 3, *larger)

    # Its test cases, evaluated on their own grids (the evaluation starts by itself once the run succeeds).
    evaluation = finished(Evaluation, Evaluation.objects.get(run=run).pk)
    assert evaluation.status == "done", evaluation.message
    assert evaluation.cases.count() == sum(run.partition.counts["test"].values()) and evaluation.results["classes"]

    # An uploaded image segmented: the mask downloads as NIfTI with the input's affine, and lies on the image's blobs.
    entries = blob_entries(tmp_path, 14)
    name = "images/case_003.nii.gz"
    body = segmented(api, run, "case_003.nii.gz", entries[name], celery_worker_process)
    download = api.get(body["downloads"]["nifti"])
    assert download.status_code == 200
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(b"".join(download.streaming_content)))
    image = nib.Nifti1Image.from_bytes(gzip.decompress(entries[name]))
    reference = nib.Nifti1Image.from_bytes(gzip.decompress(entries[name.replace("images/", "masks/")]))
    assert np.allclose(mask.affine, image.affine) and mask.shape == image.shape
    predicted, truth = np.asarray(mask.dataobj), np.asarray(reference.dataobj)
    assert set(np.unique(predicted)) <= {0, 1, 2}
    foreground = (predicted > 0) & (truth > 0)
    assert 2 * foreground.sum() / max(1, (predicted > 0).sum() + (truth > 0).sum()) > 0.3, "the mask lies on the blobs"

    # A second run starts from the first's kept model (the same labels: every tensor carried over).
    again = api.post("/api/runs/", {"partition": partition, "epochs": 1, "model": {"weights": "run", "start_run": run.pk}},
                     format="json")
    assert again.status_code == 202, again.content
    second = wait_for(lambda: TrainingRun.objects.filter(pk=again.json()["id"], status__in=TrainingRun.finished_statuses()).first(),
                      300, "the second run to finish")
    assert second.status == "succeeded", second.message
    assert second.log_lines.filter(text__startswith=f"Starting from run {run.pk}").exists()

"""3D classification through the whole toolkit: a NIfTI upload of CT volumes, its fingerprint and plan (API and page
data), refusals at launch (a 2D network, a patch larger than the volumes, a dataset mixing 2D and 3D), and a real
worker that builds the store, trains, and exports an ONNX file that onnxruntime runs."""
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.datasets.models import Dataset
from backend.runs.models import TrainingRun
from tests.conftest import demo_entries, make_zip, wait_for
from workers.engine.demo import write_demo_volume_zip
from workers.engine.export import onnx_predict

pytestmark = pytest.mark.django_db(transaction=True)


def volume_zip_entries(tmp_path, per_class: int) -> dict[str, bytes]:
    path = write_demo_volume_zip(tmp_path / "volumes.zip", per_class=per_class, shape=(16, 24, 24))
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def ready_dataset(api, project, entries: dict[str, bytes], name: str) -> Dataset:
    response = api.post("/api/datasets/", {"project": project.pk, "name": name,
                                           "files": [SimpleUploadedFile("upload.zip", make_zip(entries))]}, format="multipart")
    assert response.status_code == 202, response.content
    dataset = wait_for(lambda: Dataset.objects.filter(pk=response.json()["id"]).exclude(status__in=["queued", "ingesting"]).first(),
                       180, "the ingest to finish")
    assert dataset.status == "ready", dataset.message
    return dataset


def partition_of(api, dataset: Dataset) -> int:
    response = api.post("/api/partitions/", {"dataset": dataset.pk, "seed": 1, "train_percent": 60, "validation_percent": 20,
                                             "test_percent": 20}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_worker_trains_a_3d_classifier_from_a_nifti_upload_and_exports_onnx(api, project, celery_worker_process, tmp_path):
    dataset = ready_dataset(api, project, volume_zip_entries(tmp_path, per_class=10), "CT volumes")
    assert dataset.fingerprint["count"] == 20 and dataset.fingerprint["spacings"][0] == [2.0, 0.8, 0.8]
    planned = api.get(f"/api/datasets/{dataset.pk}/plan/").json()
    plan = planned["plan"]
    assert plan["normalisation"] == "ct" and plan["patch_size"] == [16, 24, 24] and plan["target_spacing"] == [2.0, 0.8, 0.8]
    assert -100 < plan["mean"] < 100, "the dataset's statistics are in Hounsfield units (tissue near 40 HU), not stored values"
    assert [row["key"] for row in planned["in_words"]] == ["target_spacing", "normalisation", "patch_size", "batch_size"]
    partition = partition_of(api, dataset)

    refused = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "resnet18"}}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "model.architecture"
    assert "2D network and this dataset holds volumes" in refused.json()["message"]
    too_large = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "small_cnn_3d"},
                                         "data": {"plan": {"patch_size": [32, 24, 24]}}}, format="json")
    assert too_large.status_code == 400 and too_large.json()["field"] == "data.plan.patch_size"
    assert "larger than 20 of the volumes" in too_large.json()["message"]

    response = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "small_cnn_3d"}, "epochs": 3},
                        format="json")
    assert response.status_code == 202, response.content
    run = wait_for(lambda: TrainingRun.objects.filter(pk=response.json()["id"], status__in=TrainingRun.finished_statuses()).first(),
                   300, "the run to finish")
    assert run.status == "succeeded", run.message + celery_worker_process.log_path.read_text()[-3000:]
    assert run.spec["data"]["plan"]["patch_size"] == [16, 24, 24], "the run records the plan it used"
    assert run.results["input_shape"] == [1, 16, 24, 24] and run.results["onnx"]["passed"], run.results["onnx"]
    assert run.metrics.filter(subset="validation", name="accuracy").count() == 3
    download = api.get(api.get(f"/api/runs/{run.pk}/").json()["model_url"])
    path = tmp_path / "downloaded.onnx"
    path.write_bytes(b"".join(download.streaming_content))
    outputs = onnx_predict(path, np.zeros((3, 1, 16, 24, 24), dtype=np.float32))
    assert outputs.shape == (3, 2)


def test_a_dataset_mixing_images_and_volumes_is_refused_at_launch(api, project, celery_worker_process, tmp_path):
    entries = {**volume_zip_entries(tmp_path, per_class=3), **demo_entries(per_class=3)}
    dataset = ready_dataset(api, project, entries, "Mixed")
    refused = api.post("/api/runs/", {"partition": partition_of(api, dataset)}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "partition"
    assert "mixes 6 2D images and 6 volumes" in refused.json()["message"]
    assert not TrainingRun.objects.exists(), "nothing was started"


def test_a_worker_trains_2d_ct_slices_from_their_plan_in_hounsfield_units(api, project, celery_worker_process, tmp_path):
    """DICOM CT slices (int16, HU by rescale) get a 2D plan and train from the store; 8-bit PNGs keep the cache."""
    from tests.medical import dicom_bytes
    from tests.unit.test_image_intensities import ct_slice

    rng = np.random.default_rng(5)
    entries = {f"slices/{label}/{label}_{k}.dcm": dicom_bytes(ct_slice(rng, label == "lesion", size=48), patient_id=f"{label}{k}")
               for label in ("lesion", "normal") for k in range(8)}
    dataset = ready_dataset(api, project, entries, "CT slices")
    assert dataset.fingerprint["count"] == 16 and dataset.fingerprint["spacings"][0] == [0.7, 0.7]
    plan = api.get(f"/api/datasets/{dataset.pk}/plan/").json()["plan"]
    assert plan["dims"] == 2 and plan["normalisation"] == "ct" and plan["patch_size"] == [48, 48]
    assert -100 < plan["mean"] < 150, "the slices' statistics are in Hounsfield units"
    assert api.get(f"/api/datasets/{ready_dataset(api, project, demo_entries(per_class=3), 'PNGs').pk}/plan/").json()["plan"] == {}
    partition = partition_of(api, dataset)

    refused = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "small_cnn_3d"}}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "model.architecture"
    too_large = api.post("/api/runs/", {"partition": partition, "data": {"plan": {"patch_size": [64, 48]}}}, format="json")
    assert too_large.status_code == 400 and too_large.json()["field"] == "data.plan.patch_size"
    assert "larger than every image" in too_large.json()["message"]

    response = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "small_cnn"}, "epochs": 2}, format="json")
    assert response.status_code == 202, response.content
    run = wait_for(lambda: TrainingRun.objects.filter(pk=response.json()["id"], status__in=TrainingRun.finished_statuses()).first(),
                   300, "the run to finish")
    assert run.status == "succeeded", run.message + celery_worker_process.log_path.read_text()[-3000:]
    assert run.spec["data"]["plan"]["dims"] == 2 and run.results["input_shape"] == [1, 48, 48]
    assert run.results["onnx"]["passed"], run.results["onnx"]

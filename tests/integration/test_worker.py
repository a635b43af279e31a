"""A real Celery worker process, on the configured broker (Redis in CI) and database
(PostgreSQL in CI), ingests an upload and trains a model; metric points appear in the
database while the run goes on, and Stop ends it after the current batch."""
import io
import json

import numpy as np
import onnx
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors import safe_open

from backend.datasets.models import Dataset
from backend.runs.models import MetricPoint, TrainingRun
from tests.conftest import demo_entries, make_zip, wait_for
from workers.engine.export import PARITY_IMAGES, onnx_predict
from workers.engine.training.evaluation import measured
from workers.engine.training.spec import resolve_spec
from workers.engine.zoo.networks import build_network
from workers.training import subset_images

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def ingested_partition(api, project, per_class=60):
    entries = demo_entries(per_class=per_class)
    entries["normal/corrupt.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    response = api.post("/api/datasets/", {"project": project.pk, "name": "Demo",
                                           "files": [SimpleUploadedFile("demo.zip", make_zip(entries))]}, format="multipart")
    assert response.status_code == 202, response.content
    dataset_id = response.json()["id"]
    dataset = wait_for(lambda: Dataset.objects.filter(pk=dataset_id).exclude(status__in=["queued", "ingesting"]).first(),
                       120, "the ingest to finish")
    assert dataset.status == "ready", dataset.message
    assert dataset.class_counts == {"lesion": per_class, "normal": per_class}
    report = api.get(f"/api/datasets/{dataset_id}/report/?status=rejected").json()["results"]
    assert report[0]["path"] == "normal/corrupt.png" and "corrupt" in report[0]["reason"]
    assert api.get(f"/api/datasets/{dataset_id}/report/").json()["count"] == 2 * per_class + 1, "every file is reported"
    partition = api.post("/api/partitions/", {"dataset": dataset_id, "seed": 5}, format="json")
    assert partition.status_code == 201, partition.content
    return partition.json()["id"]


def test_worker_ingests_trains_and_exports(api, project, celery_worker_process, tmp_path):
    partition_id = ingested_partition(api, project)
    # Small batches make the run last long enough to be seen while it goes on.
    response = api.post("/api/runs/", {"partition": partition_id, "epochs": 12, "batch_size": 4}, format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]

    # Points arrive in the database while the run is still going.
    wait_for(lambda: MetricPoint.objects.filter(run_id=run_id).exists(), 120, "the first metric point")
    seen_while_running = TrainingRun.objects.get(pk=run_id).status in ("running",)
    run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), 300, "the run to finish")
    assert run.status == "succeeded", run.message + celery_worker_process.log_path.read_text()[-3000:]
    assert seen_while_running
    assert MetricPoint.objects.filter(run=run).exclude(subset="system").count() == 12 * 4
    assert run.epochs_completed == 12
    body = api.get(f"/api/runs/{run_id}/").json()
    assert body["progress"] == 1.0 and body["model_url"]

    # The parity check on validation images, in the results beside the download.
    validation = sum(run.partition.counts["validation"].values())
    check = run.results["onnx"]
    assert check["passed"] and check["same_predictions"] and check["images"] == min(validation, PARITY_IMAGES) > 0
    assert check["subset"] == "validation" and 0 <= check["max_abs_difference"] <= 1e-4

    # The downloaded ONNX model gives the trained PyTorch model's outputs on the test images.
    download = api.get(body["model_url"])
    assert download.status_code == 200 and download["Content-Disposition"].startswith("attachment")
    onnx_file = io.BytesIO(b"".join(download.streaming_content))
    model = build_network(run.architecture, 1, 2)
    model.load_state_dict(torch.load(run.weights_path, weights_only=True))
    model.eval()
    test_set = subset_images(run, "test", ["lesion", "normal"])
    images = torch.stack([test_set[i]["image"] for i in range(len(test_set))])
    path = tmp_path / "downloaded.onnx"  # away from the run's folder: the file must stand alone
    path.write_bytes(onnx_file.getvalue())
    with torch.no_grad():
        expected = model(images).numpy()
    assert np.abs(onnx_predict(path, images.numpy()) - expected).max() < 1e-4
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["classes"]) == ["lesion", "normal"] and json.loads(props["training_spec"]) == run.spec
    assert json.loads(props["input_shape"]) == [1, 64, 64] and props["run_id"] == str(run_id)
    # The safetensors download: the kept weights, the same metadata.
    weights = api.get(body["weights_url"])
    assert weights.status_code == 200 and weights["Content-Disposition"].startswith("attachment")
    (tmp_path / "downloaded.safetensors").write_bytes(b"".join(weights.streaming_content))
    with safe_open(str(tmp_path / "downloaded.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt", **props}
        assert all(torch.equal(handle.get_tensor(k), v) for k, v in model.state_dict().items())
    # The stored test accuracy is the stored model's accuracy on the test subset.
    spec = resolve_spec(run.spec)
    measured_now = measured(model, test_set, spec, ["lesion", "normal"])
    assert run.test_accuracy == pytest.approx(measured_now["accuracy"])
    kept = run.results["kept"]
    validation_losses = dict(run.metrics.filter(subset="validation", name="loss").values_list("epoch", "value"))
    assert kept["epoch"] == min(validation_losses, key=validation_losses.get), "the kept model is the best epoch's"
    assert run.message == "Finished 12 epochs." and kept["reason"].startswith(f"Epoch {kept['epoch']} of 12: the lowest validation loss")
    last = torch.load(run.last_weights_path, weights_only=True)
    kept_is_last = kept["epoch"] == 12
    assert all(torch.equal(last[k], v) for k, v in model.state_dict().items()) == kept_is_last, "the last epoch's weights are kept too"


def test_stop_ends_a_run_after_the_current_batch_and_keeps_its_work(api, project, celery_worker_process):
    partition_id = ingested_partition(api, project, per_class=40)
    run_id = api.post("/api/runs/", {"partition": partition_id, "epochs": 500, "batch_size": 8}, format="json").json()["id"]
    wait_for(lambda: MetricPoint.objects.filter(run_id=run_id, epoch=2).exists(), 120, "two epochs")
    response = api.post(f"/api/runs/{run_id}/stop/")
    assert response.status_code == 202 and response.json()["status"] == "running" and response.json()["stop_requested"]
    run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), 60, "the run to stop")
    assert run.status == "stopped", run.message
    assert 2 <= run.epochs_completed < 500
    points = MetricPoint.objects.filter(run=run, epoch__lte=run.epochs_completed).exclude(subset="system")
    assert points.count() == 4 * run.epochs_completed
    assert run.onnx_path.exists() and run.test_accuracy is not None and run.has_checkpoint
    assert api.get(f"/api/runs/{run_id}/model.onnx/").status_code == 200

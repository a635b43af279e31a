"""Model imports in a real Celery worker process: an upload becomes a model whose weights were copied onto a zoo
network, and a pickle handed to the job (a row whose file never went through the upload's checks) fails the import
without being unpickled."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.core.tasks import INGEST_QUEUE, queue_name
from backend.zoo.models import ImportedModel
from tests.conftest import wait_for
from tests.model_files import malicious_torch_save, zoo_onnx
from webapp.celery import app

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished(pk: int) -> ImportedModel | None:
    return ImportedModel.objects.filter(pk=pk, status__in=ImportedModel.finished_statuses()).first()


def test_a_worker_imports_an_upload_and_refuses_a_planted_pickle(api, project, celery_worker_process, tmp_path):
    _, path = zoo_onnx(tmp_path / "lenet.onnx", "lenet5", channels=1, classes=3, size=32)
    response = api.post("/api/imported-models/", {"project": project.pk, "file": SimpleUploadedFile("lenet.onnx", path.read_bytes())},
                        format="multipart")
    assert response.status_code == 202, response.content
    model = wait_for(lambda: finished(response.json()["id"]), 180, "the import to finish")
    log = celery_worker_process.log_path.read_text()[-3000:]
    assert (model.status, model.mode, model.architecture) == ("ready", "weights_copied", "lenet5"), model.reason + log
    assert model.weights_path.is_file() and model.worker.startswith("worker@")

    marker = tmp_path / "pwned"
    planted = ImportedModel.objects.create(project=project, name="planted", kind="onnx", channels=1)
    planted.storage_dir.mkdir(parents=True)
    planted.source_path.write_bytes(malicious_torch_save(marker))
    app.send_task("workers.tasks.import_model", args=[planted.pk], queue=queue_name(INGEST_QUEUE))
    planted = wait_for(lambda: finished(planted.pk), 120, "the planted import to end")
    assert (planted.status, planted.mode) == ("failed", "failed") and "not an ONNX file" in planted.reason, planted.reason
    assert not marker.exists(), "the worker never unpickles what it is handed"

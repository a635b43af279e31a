"""Stop and Resume with a real worker: a stopped run keeps a checkpoint, Resume queues it again, and
the worker goes on from that checkpoint to the end, every epoch measured once."""
import pytest

from backend.runs.models import MetricPoint, TrainingRun
from tests.conftest import wait_for
from tests.integration.test_worker import ingested_partition

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_end(api, project, celery_worker_process):
    partition = ingested_partition(api, project, per_class=40)
    run_id = api.post("/api/runs/", {"partition": partition, "epochs": 30, "batch_size": 4}, format="json").json()["id"]
    wait_for(lambda: MetricPoint.objects.filter(run_id=run_id, epoch=2).exists(), 180, "two epochs")
    assert api.post(f"/api/runs/{run_id}/stop/").status_code == 202
    run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), 120, "the stop")
    assert run.status == "stopped" and run.has_checkpoint, run.message
    assert run.message.startswith(f"Stopped by the user in epoch {run.epochs_completed + 1}") and "Resume" in run.message
    stopped_at = run.epochs_completed
    assert stopped_at < 30, "stopped in the middle"

    resumed = api.post(f"/api/runs/{run_id}/resume/")
    assert resumed.status_code == 202 and resumed.json()["status"] == "queued", resumed.content
    assert resumed.json()["message"] == f"Resuming from the checkpoint after epoch {stopped_at}."
    run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), 600,
                   "the resumed run to finish")
    assert run.status == "succeeded", run.message + celery_worker_process.log_path.read_text()[-3000:]
    assert run.epochs_completed == 30 and run.results["last_epoch"] == 30
    for subset in ("train", "validation"):
        epochs = sorted(run.metrics.filter(subset=subset, name="loss").values_list("epoch", flat=True))
        assert epochs == list(range(1, 31)), f"every {subset} epoch measured once"
    log = [line.text for line in run.log_lines.all()]
    assert any(line.startswith("Resuming from the last checkpoint") for line in log)
    assert api.post(f"/api/runs/{run_id}/resume/").status_code == 400, "a finished run has nothing to resume"

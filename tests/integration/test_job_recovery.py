"""The one job lifecycle with real worker processes: a training run whose worker is killed is
failed by the next worker (and can be deleted), and a run longer than the broker's visibility
timeout is delivered again but neither started twice nor dropped."""
import pytest
from django.conf import settings

from backend.runs.models import MetricPoint, TrainingRun
from tests.conftest import start_worker, wait_for
from tests.integration.test_worker import ingested_partition

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
STALE_SECONDS = 5
QUICK_SWEEPS = {"TOOLKIT_JOB_STALE_SECONDS": str(STALE_SECONDS), "TOOLKIT_WORKER_HEARTBEAT_SECONDS": "1"}


def stop_worker(process) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()


def test_a_run_whose_worker_is_killed_is_failed_by_the_next_worker_with_its_metrics_kept(api, project, tmp_path):
    first = start_worker(tmp_path / "first.log", "first", **QUICK_SWEEPS)
    second = None
    try:
        partition = ingested_partition(api, project, per_class=40)
        run_id = api.post("/api/runs/", {"partition": partition, "epochs": 500, "batch_size": 8}, format="json").json()["id"]
        wait_for(lambda: MetricPoint.objects.filter(run_id=run_id, epoch=2).exists(), 300, "two epochs")
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=30)
        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == "running" and run.epochs_completed >= 2, "killed in the middle of the run"
        points_when_killed = MetricPoint.objects.filter(run=run).count()
        second = start_worker(tmp_path / "second.log", "second", **QUICK_SWEEPS)
        run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status="failed").first(), 10 * STALE_SECONDS,
                       "the next worker to notice the silent run")
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
    epochs = run.epochs_completed
    assert run.message == f"The worker running this stopped responding at epoch {epochs + 1}; the metrics so far are kept."
    assert MetricPoint.objects.filter(run=run).count() == points_when_killed >= 2 * epochs, "the metrics so far are kept"
    assert f"training run {run_id}: its worker first@" in (tmp_path / "second.log").read_text()
    shown = api.get(f"/api/runs/{run_id}/").json()
    assert shown["finished"] and shown["status"] == "failed" and shown["attempts"] == 1
    assert api.delete(f"/api/runs/{run_id}/").status_code == 204, "a failed run can be deleted"


@pytest.mark.skipif(not settings.REDIS_URL, reason="redelivery after the visibility timeout is Redis's (CI sets REDIS_URL)")
def test_a_run_longer_than_the_visibility_timeout_is_started_once_and_not_dropped(api, project, tmp_path):
    short = {"TOOLKIT_BROKER_VISIBILITY_SECONDS": "2"}
    first = start_worker(tmp_path / "first.log", "first", **short)
    second = start_worker(tmp_path / "second.log", "second", **short)
    try:
        partition = ingested_partition(api, project, per_class=40)
        run_id = api.post("/api/runs/", {"partition": partition, "epochs": 500, "batch_size": 8}, format="json").json()["id"]
        skipped = f"training run {run_id} is not queued"
        logs = [tmp_path / "first.log", tmp_path / "second.log"]
        wait_for(lambda: any(skipped in log.read_text() for log in logs), 90, "the broker to deliver the running run again")
        epoch_then = TrainingRun.objects.get(pk=run_id).epochs_completed
        wait_for(lambda: TrainingRun.objects.get(pk=run_id).epochs_completed >= epoch_then + 2, 60, "two more epochs")
        api.post(f"/api/runs/{run_id}/stop/")
        run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), 60, "the stop")
    finally:
        stop_worker(first)
        stop_worker(second)
    assert run.status == "stopped", run.message
    assert run.attempts == 1, "started once"
    assert run.epochs_completed >= epoch_then + 2, "the run went on after its task was delivered again"
    assert MetricPoint.objects.filter(run=run, epoch__lte=run.epochs_completed).count() == 4 * run.epochs_completed

"""The one job lifecycle with real worker processes: a training run whose worker is killed resumes
by itself on the next worker from its checkpoint, recording exactly what an uninterrupted run
does; and a run longer than the broker's visibility timeout is delivered again but neither
started twice nor dropped."""
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


def series(run_id: int) -> dict:
    """The run's training and validation metrics, {(epoch, subset, name): value} (system measurements differ run to run)."""
    points = MetricPoint.objects.filter(run_id=run_id).exclude(subset="system")
    return {(p.epoch, p.subset, p.name): p.value for p in points}


def test_a_run_whose_worker_is_killed_resumes_by_itself_and_records_what_an_uninterrupted_run_does(api, project, tmp_path):
    first = start_worker(tmp_path / "first.log", "first", **QUICK_SWEEPS)
    second = None
    settings_ = {"epochs": 16, "batch_size": 4, "seed": 11, "metrics": ["accuracy", "auc"]}
    try:
        partition = ingested_partition(api, project, per_class=40)
        whole = api.post("/api/runs/", {"partition": partition, **settings_}, format="json").json()["id"]
        wait_for(lambda: TrainingRun.objects.filter(pk=whole, status="succeeded").first(), 300, "the uninterrupted run")
        run_id = api.post("/api/runs/", {"partition": partition, **settings_}, format="json").json()["id"]
        # epochs_completed, not the points: an epoch's points are written before its count, and a kill between the two
        # (seen under load) would leave the run at 2 completed epochs with epoch 3's points.
        wait_for(lambda: TrainingRun.objects.filter(pk=run_id, epochs_completed__gte=3).exists(), 300, "three epochs")
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=30)
        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == "running" and 3 <= run.epochs_completed < 16, "killed in the middle of the run"
        second = start_worker(tmp_path / "second.log", "second", **QUICK_SWEEPS)
        run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), 300,
                       "the next worker to resume the run and finish it")
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
    assert run.status == "succeeded", run.message
    assert run.attempts == 2, "the second worker took it again"
    expected, resumed = series(whole), series(run_id)
    assert resumed.keys() == expected.keys() and len(expected) == 16 * 5, "no point missing, none duplicated"
    assert max(abs(resumed[key] - value) for key, value in expected.items()) <= 1e-6
    log = [line.text for line in run.log_lines.all()]
    assert any(line.startswith("The worker running this stopped responding in epoch") and "(attempt 2 of 3)" in line for line in log)
    assert any(line.startswith("Resuming from the last checkpoint") for line in log)
    assert f"training run {run_id}: its worker first@" in (tmp_path / "second.log").read_text()
    assert run.results["kept"] == TrainingRun.objects.get(pk=whole).results["kept"], "the same epoch kept, for the same reason"


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
    points = MetricPoint.objects.filter(run=run, epoch__lte=run.epochs_completed).exclude(subset="system")
    assert points.count() == 4 * run.epochs_completed

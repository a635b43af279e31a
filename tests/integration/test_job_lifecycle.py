"""The one job lifecycle's rules on real rows (no worker process: see test_job_recovery.py for those):
claims, endings, stops, ETA, the recovery sweep for every kind, and the fields every job shows."""
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from backend.core.jobs import JOB_FIELDS, stop
from backend.datasets.models import Dataset
from backend.pipelines.models import Aggregation, Pipeline
from backend.runs.models import RateSearch, TrainingRun
from backend.zoo.models import ImportedModel
from tests.factories import ready_dataset, training_spec
from workers import jobs
from workers.aggregate import AGGREGATION
from workers.engine.observer import JobFault, JobStopped
from workers.ingest import INGEST, DatasetJob
from workers.merge import MERGE
from workers.model_import import IMPORT
from workers.preprocess import PREPROCESSING
from workers.rate_search import SEARCH

pytestmark = pytest.mark.django_db


class ScriptedJob(DatasetJob):
    """A dataset job whose work is given by the test."""

    task = "tests.scripted"
    noun = "scripted job"

    def __init__(self, work):
        self.scripted = work
        self.discarded = []

    def work(self, dataset, reporter):
        self.scripted(dataset, reporter)

    def discard(self, dataset, status):
        self.discarded.append(status)


@pytest.fixture
def sent(monkeypatch):
    """Tasks the lifecycle sends, caught here: no broker message may outlive the test."""
    calls = []
    monkeypatch.setattr(jobs, "send_after_commit", lambda task, pk, queue: calls.append((task, pk, queue)))
    return calls


def queued_dataset(project, **fields) -> Dataset:
    return Dataset.objects.create(project=project, name="Upload", **fields)


def test_a_claim_takes_a_queued_job_once(project):
    dataset = queued_dataset(project)
    claimed = jobs.claim(Dataset, dataset.pk, "worker@a")
    assert claimed.status == "ingesting" and claimed.worker == "worker@a" and claimed.attempts == 1
    assert claimed.started_at is not None and claimed.heartbeat_at is not None
    assert jobs.claim(Dataset, dataset.pk, "worker@b") is None, "a second delivery of the same task does nothing"


@pytest.mark.parametrize("raised, status, message", [
    (None, "ready", "done"),
    (JobStopped("asked"), "stopped", "Stopped by the user; nothing was kept."),
    (JobFault("The disk holding the datasets is full; free space and upload again."), "failed",
     "The disk holding the datasets is full; free space and upload again."),
    (OperationalError("server closed the connection"), "failed",
     "The scripted job stopped because the database could not be reached (OperationalError); start it again once the database is back."),
    (TypeError("encoding without a string argument"), "failed",
     "The scripted job failed unexpectedly (TypeError). Nothing was kept; the worker log has the details."),
])
def test_every_ending_of_the_work_is_recorded_with_a_reason(project, raised, status, message):
    def work(dataset, reporter):
        reporter.progress(1, 2, "half")
        if raised is not None:
            raise raised
        runner.finish(dataset, Dataset.Status.READY, "done")

    runner = ScriptedJob(work)
    dataset = queued_dataset(project)
    runner.run(dataset.pk, "worker@a")
    dataset.refresh_from_db()
    assert (dataset.status, dataset.message) == (status, message)
    assert dataset.finished_at is not None and dataset.is_finished
    assert runner.discarded == ([] if raised is None else [status]), "what a job that ended early left is thrown away"


def test_a_job_stopped_while_queued_ends_at_once_and_is_never_started(project):
    started = []
    runner = ScriptedJob(lambda dataset, reporter: started.append(dataset.pk))
    dataset = queued_dataset(project)
    assert stop(dataset) == "stopped"
    dataset.refresh_from_db()
    assert dataset.status == "stopped" and dataset.message == "Stopped before it started."
    runner.run(dataset.pk, "worker@a")
    assert started == []


def test_a_running_job_is_asked_to_stop_and_its_reporter_says_so(project):
    dataset = queued_dataset(project, status=Dataset.Status.INGESTING)
    assert stop(dataset) == "asked"
    dataset.refresh_from_db()
    assert dataset.status == "ingesting" and dataset.stop_requested
    assert jobs.JobReporter(dataset, interval=0).should_stop()
    finished = queued_dataset(project, status=Dataset.Status.READY)
    assert stop(finished) == "", "a finished job has nothing to stop"


def test_progress_gives_the_fraction_and_the_time_left_at_the_pace_so_far(project):
    dataset = queued_dataset(project, status=Dataset.Status.INGESTING, progress_done=25, progress_total=100,
                             started_at=timezone.now() - timedelta(seconds=30))
    assert dataset.progress == 0.25
    assert dataset.eta_seconds == pytest.approx(90, abs=2)
    dataset.stop_requested = True
    assert dataset.eta_seconds is None, "a job being stopped has no time left to show"


def silent(**fields) -> dict:
    return {"heartbeat_at": timezone.now() - timedelta(hours=1), "worker": "worker@gone", **fields}


def test_the_sweep_queues_silent_data_jobs_again_and_fails_them_after_three_deaths(project, sent):
    resumed = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, **silent())
    exhausted = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=jobs.MAX_ATTEMPTS, **silent())
    alive = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, worker="worker@b", heartbeat_at=timezone.now())
    assert jobs.recover_stale_jobs("worker@c", starting=False) == 2
    resumed.refresh_from_db(), exhausted.refresh_from_db(), alive.refresh_from_db()
    assert resumed.status == "queued" and resumed.message == "Starting again after the worker stopped."
    assert sent == [(INGEST.task, resumed.pk, INGEST.queue)]
    assert exhausted.status == "failed" and "stopped 3 times" in exhausted.message
    assert alive.status == "ingesting", "a job whose worker is alive is left alone"
    assert jobs.recover_stale_jobs("worker@c", starting=False) == 0, "a job is recovered once"


def test_a_worker_that_restarts_takes_back_its_own_jobs_at_once(project, sent):
    mine = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, worker="worker@a", heartbeat_at=timezone.now())
    assert jobs.recover_stale_jobs("worker@b", starting=True) == 0, "another worker's fresh job"
    assert jobs.recover_stale_jobs("worker@a", starting=False) == 0, "only at the worker's start"
    assert jobs.recover_stale_jobs("worker@a", starting=True) == 1
    assert sent == [(INGEST.task, mine.pk, INGEST.queue)]


def test_a_restarted_workers_own_jobs_are_said_to_be_resumed_not_to_have_stopped_responding(project, sent, caplog):
    """Issue 22 (Results, 10): at its start a worker takes back the jobs it ran before its restart; the log and the
    job's message say the worker restarted, not that the job's worker "stopped responding"."""
    import logging

    mine = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, worker="worker@a", heartbeat_at=timezone.now())
    theirs = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, **silent())
    with caplog.at_level(logging.WARNING, logger="workers.jobs"):
        assert jobs.recover_stale_jobs("worker@a", starting=True) == 2
    mine.refresh_from_db(), theirs.refresh_from_db()
    assert mine.status == "queued" and mine.message == "Starting again: its worker restarted while it ran this."
    assert theirs.status == "queued" and theirs.message == "Starting again after the worker stopped."
    lines = {record.getMessage() for record in caplog.records}
    assert f"ingest {mine.pk} was running on this worker (worker@a) before it restarted; queued again (attempt 2 of 3)" in lines, lines
    assert not any(f" {mine.pk}: its worker" in line and "stopped responding" in line for line in lines), lines
    assert any(f" {theirs.pk}: its worker worker@gone stopped responding (no heartbeat for over" in line for line in lines), lines


def test_a_training_run_on_a_restarted_worker_is_said_to_have_restarted(project, sent):
    """The training job words its own recovery (a checkpoint to resume from, or none): a restart of its own worker is
    said as a restart there too."""
    partition = ready_dataset(project).partitions.create(name="p", train_percent=80, validation_percent=10, test_percent=10, seed=1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="r", spec=training_spec(epochs=9), status="running",
                                     epochs_completed=4, attempts=1, worker="worker@a", heartbeat_at=timezone.now())
    assert jobs.recover_stale_jobs("worker@a", starting=True) == 1
    run.refresh_from_db()
    assert run.status == "failed" and run.message == ("The worker running this restarted in epoch 5, before the run's first "
                                                      "checkpoint; the metrics so far are kept. Launch it again (Clone).")


def test_the_sweep_knows_every_kind_of_job(project, sent):
    source = ready_dataset(project)
    merged = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, label_mapping={"a": "b"}, **silent())
    version = Pipeline.objects.create(project=project, name="P", kind="preprocessing").versions.create(number=1, steps=[])
    derived = queued_dataset(project, status=Dataset.Status.INGESTING, attempts=1, derived_from=source, pipeline_version=version, **silent())
    measures = Pipeline.objects.create(project=project, name="M", kind="aggregation").versions.create(number=1, steps=[], measures=["mean"])
    table = Aggregation.objects.create(dataset=source, pipeline_version=measures, name="t", measures=["mean"], status="running",
                                       attempts=1, **silent())
    partition = source.partitions.create(name="p", train_percent=80, validation_percent=10, test_percent=10, seed=1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="r", spec=training_spec(epochs=9), status="running", epochs_completed=4,
                                     attempts=1, **silent())
    search = RateSearch.objects.create(partition=partition, spec=training_spec(resources={"device": "gpu"}), queue="train-gpu",
                                       status="running", attempts=1, **silent())
    imported = ImportedModel.objects.create(project=project, name="m", kind="onnx", status="running", attempts=1, **silent())
    assert jobs.recover_stale_jobs("worker@c", starting=False) == 6
    assert sorted(sent) == sorted([(MERGE.task, merged.pk, MERGE.queue), (PREPROCESSING.task, derived.pk, PREPROCESSING.queue),
                                   (AGGREGATION.task, table.pk, AGGREGATION.queue), (SEARCH.task, search.pk, "train-gpu"),
                                   (IMPORT.task, imported.pk, "ingest")])
    run.refresh_from_db()
    assert run.status == "failed" and run.is_finished
    assert run.message == ("The worker running this stopped responding in epoch 5, before the run's first checkpoint; the "
                           "metrics so far are kept. Launch it again (Clone).")


@pytest.mark.parametrize("url", ["/api/datasets/{dataset}/", "/api/aggregations/{table}/", "/api/runs/{run}/",
                                 "/api/rate-searches/{search}/", "/api/imported-models/{imported}/"])
def test_every_kind_of_job_shows_the_same_fields(api, project, url):
    dataset = ready_dataset(project)
    measures = Pipeline.objects.create(project=project, name="M", kind="aggregation").versions.create(number=1, steps=[], measures=["mean"])
    table = Aggregation.objects.create(dataset=dataset, pipeline_version=measures, name="t", measures=["mean"])
    partition = dataset.partitions.create(name="p", train_percent=80, validation_percent=10, test_percent=10, seed=1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="r", spec=training_spec(epochs=9))
    search = RateSearch.objects.create(partition=partition, spec=training_spec())
    imported = ImportedModel.objects.create(project=project, name="m", kind="onnx")
    body = api.get(url.format(dataset=dataset.pk, table=table.pk, run=run.pk, search=search.pk, imported=imported.pk)).json()
    assert set(JOB_FIELDS) <= set(body)
    assert body["finished"] is (body["status"] in ("ready", "succeeded", "done", "failed", "stopped"))


def test_an_upload_stopped_before_a_worker_took_it_leaves_no_file_behind(api, project, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import demo_entries, make_zip

    with django_capture_on_commit_callbacks(execute=True):
        created = api.post("/api/datasets/", {"project": project.pk, "files": [SimpleUploadedFile("d.zip", make_zip(demo_entries(2)))]},
                           format="multipart")
    dataset = Dataset.objects.get(pk=created.json()["id"])
    assert dataset.upload_dir.exists() and dataset.status == "queued"
    with django_capture_on_commit_callbacks(execute=True):
        stopped = api.post(f"/api/datasets/{dataset.pk}/stop/")
    assert stopped.status_code == 202 and stopped.json()["status"] == "stopped" and stopped.json()["finished"]
    assert not dataset.upload_dir.exists(), "the files as they came, identifiers included, are gone"
    assert api.post(f"/api/datasets/{dataset.pk}/stop/").status_code == 409
    assert api.delete(f"/api/datasets/{dataset.pk}/").status_code == 204

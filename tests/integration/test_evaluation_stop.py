"""An evaluation shows its progress and can be stopped (issue 22): the evaluation job, run in this process as a worker
runs it (workers/evaluation.py through workers/jobs.py), writes the samples predicted of all after each batch; a stop
asked while it runs ends it as stopped with no prediction stored; the API's stop is for owners, and refuses (409) an
evaluation that has ended."""
import pytest
import torch

from backend.datasets.services import create_partition
from backend.runs.models import Evaluation, TrainingRun
from tests.factories import ready_dataset, training_spec, with_training_cache
from workers.engine.zoo.start import ModelStart, starting_model
from workers.evaluation import EVALUATION
from workers.jobs import JobReporter

pytestmark = pytest.mark.django_db


@pytest.fixture
def kept_run(project, user):
    """A run that succeeded with a kept model (its starting weights: what it predicts does not matter here), over 200
    images: 80 in the test subset (two batches of the evaluation's 64), 40 in the validation subset."""
    dataset = with_training_cache(ready_dataset(project, per_class=100))
    partition = create_partition(user, dataset, "", 40, 20, 40, 1)
    spec = training_spec(model={"architecture": "small_cnn"}, epochs=1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="kept", spec=spec, status="succeeded")
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    model = starting_model({**spec["model"], "weights": "random"}, 1, 2, ModelStart(), seed=spec["seed"], classes=dataset.labels)
    torch.save(model.state_dict(), run.weights_path)
    return run


class Watched(JobReporter):
    """The job's own reporter, unthrottled, keeping what it wrote; with `stop_at`, the owner asks to stop (through the
    API) once that many samples are predicted."""

    def __init__(self, job, api=None, stop_at=None):
        super().__init__(job, interval=0)
        self.api, self.stop_at, self.written = api, stop_at, []

    def progress(self, done, total, message=""):
        super().progress(done, total, message)
        self.written.append((done, total))
        if self.stop_at is not None and done >= self.stop_at and len(self.written) == 1:
            answer = self.api.post(f"/api/evaluations/{self.pk}/stop/")
            assert answer.status_code == 202 and answer.json()["stop_requested"] is True, answer.content


def evaluate(run, monkeypatch, **watching) -> tuple[Evaluation, Watched]:
    evaluation = Evaluation.objects.create(run=run, subset="test")
    reporters = []
    monkeypatch.setattr(type(EVALUATION), "reporter", lambda self, job: reporters.append(Watched(job, **watching)) or reporters[-1])
    EVALUATION.run(evaluation.pk, "here")
    evaluation.refresh_from_db()
    return evaluation, reporters[0]


def test_an_evaluation_writes_the_samples_predicted_after_each_batch(kept_run, monkeypatch):
    evaluation, reporter = evaluate(kept_run, monkeypatch)
    assert evaluation.status == Evaluation.Status.DONE, evaluation.message
    tested, validated = (sum(kept_run.partition.counts[s].values()) for s in ("test", "validation"))
    total = tested + validated
    assert (tested, validated) == (80, 40)
    assert reporter.written == [(64, total), (80, total), (120, total)], "the test subset's batches, then the validation subset's"
    assert (evaluation.progress_done, evaluation.progress_total) == (total, total)
    assert evaluation.predictions.count() == tested


def test_a_stop_asked_while_it_runs_ends_it_stopped_with_nothing_stored(kept_run, api, monkeypatch):
    evaluation, reporter = evaluate(kept_run, monkeypatch, api=api, stop_at=1)
    assert evaluation.status == Evaluation.Status.STOPPED, evaluation.message
    assert reporter.written == [(64, 120)], "seen before the next batch"
    assert evaluation.predictions.count() == 0 and evaluation.results == {}
    assert "Stopped" in evaluation.message

    ended = api.post(f"/api/evaluations/{evaluation.pk}/stop/")
    assert ended.status_code == 409 and "already ended" in ended.json()["message"]


def test_only_the_projects_owners_stop_an_evaluation(kept_run, django_user_model):
    from rest_framework.test import APIClient

    from backend.projects.models import ProjectMember, Role

    queued = Evaluation.objects.create(run=kept_run, subset="test")
    viewer = django_user_model.objects.create_user("viewer", password="viewer-password-1")
    ProjectMember.objects.create(project=kept_run.project, user=viewer, role=Role.VIEWER)
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.post(f"/api/evaluations/{queued.pk}/stop/").status_code == 403
    client.force_authenticate(kept_run.project.owner)
    answer = client.post(f"/api/evaluations/{queued.pk}/stop/")
    assert answer.status_code == 202 and answer.json()["status"] == "stopped", "a queued one stops at once"

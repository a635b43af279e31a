"""Issue 22, "Results": what a new user's walkthrough of the results pages found, on the API and the server-drawn
pages (the browser's half: tests/browser/test_results_walkthrough.py). A dataset holding the same images as the run's
own is refused as an external validation, one sharing some is counted for the form to warn; a queued evaluation says
its place in its queue; a sample opened from a run's predictions links back to the run."""
import pytest
from django.test import Client

from backend.datasets.models import Sample
from backend.runs.models import Evaluation, TrainingRun
from tests.browser.test_run_page_layout import a_finished_run
from tests.factories import ready_dataset

pytestmark = pytest.mark.django_db


def a_copy_of(dataset, name, count=None):
    """Another dataset of the project whose samples are the given dataset's images (the same sha256), uploaded again."""
    copy = ready_dataset(dataset.project, name=name, per_class=dataset.sample_count // 2)
    own = list(dataset.samples.order_by("pk").values_list("sha256", flat=True))
    for sample, sha256 in zip(copy.samples.order_by("pk")[:count], own, strict=False):
        Sample.objects.filter(pk=sample.pk).update(sha256=sha256)
    return copy


@pytest.fixture
def run(user):
    run = a_finished_run(user)
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    run.weights_path.write_bytes(b"weights")
    return run


def test_a_dataset_of_the_runs_own_images_is_refused_beside_the_field_and_on_launch(api, run):
    copy = a_copy_of(run.partition.dataset, "X-rays again")
    refused = api.get(f"/api/evaluations/class-mapping/?run={run.pk}&dataset={copy.pk}")
    assert refused.status_code == 400, refused.json()
    body = refused.json()
    assert body["field"] == "dataset" and body["code"] == "same_images", body
    assert "holds the same 20 images as dataset X-rays, which run" in body["message"] and "no external validation" in body["message"]
    launched = api.post("/api/evaluations/", {"run": run.pk, "dataset": copy.pk}, format="json")
    assert launched.status_code == 400 and launched.json()["code"] == "same_images"
    assert not Evaluation.objects.filter(run=run).exists()


def test_a_dataset_sharing_some_of_the_runs_images_is_counted_for_the_form_to_warn(api, run):
    partial = a_copy_of(run.partition.dataset, "Half of X-rays", count=6)
    facts = api.get(f"/api/evaluations/class-mapping/?run={run.pk}&dataset={partial.pk}").json()
    trained = run.partition.members.filter(subset="train").values_list("sample__sha256", flat=True)
    shared = list(run.partition.dataset.samples.order_by("pk").values_list("sha256", flat=True))[:6]
    assert facts["shared_samples"] == 6 and facts["shared_with_training"] == len(set(shared) & set(trained)) > 0, facts
    other = ready_dataset(run.project, name="Hospital B")
    facts = api.get(f"/api/evaluations/class-mapping/?run={run.pk}&dataset={other.pk}").json()
    assert facts["shared_samples"] == 0 and facts["shared_with_training"] == 0


def test_a_queued_evaluation_says_its_place_in_its_queue(api, run):
    other = ready_dataset(run.project, name="Hospital B")
    ahead = TrainingRun.objects.create(project=run.project, partition=run.partition, name="waiting", spec=run.spec, status="queued")
    queued = api.post("/api/evaluations/", {"run": run.pk, "dataset": other.pk}, format="json").json()
    assert queued["status"] == "queued" and queued["queue_position"] == 2, queued  # the run queued before it goes first
    TrainingRun.objects.filter(pk=ahead.pk).update(status="running")
    assert api.get(f"/api/evaluations/{queued['id']}/").json()["queue_position"] == 1
    Evaluation.objects.filter(pk=queued["id"]).update(status="running")
    assert api.get(f"/api/evaluations/{queued['id']}/").json()["queue_position"] is None


def test_a_sample_opened_from_a_runs_predictions_links_back_to_the_run(user, run, outsider):
    client = Client()
    client.force_login(user)
    sample = run.partition.dataset.samples.first()
    html = client.get(f"/samples/{sample.pk}/?run={run.pk}").content.decode()
    assert f'<a id="back-to-run" href="/runs/{run.pk}/">← Back to run finished</a>' in html
    assert 'id="back-to-run"' not in client.get(f"/samples/{sample.pk}/").content.decode()
    assert 'id="back-to-run"' not in client.get(f"/samples/{sample.pk}/?run=abc").content.decode()
    # A run this reader cannot open is not named.
    hidden = a_finished_run(outsider, name="someone else's")
    assert 'id="back-to-run"' not in client.get(f"/samples/{sample.pk}/?run={hidden.pk}").content.decode()

"""Learning-rate searches through the API with a real worker process: a search reports its progress and
stores the curve and a suggestion; Stop ends it and keeps the curve so far; bad settings are refused as a
run's are, per field, before anything is queued."""
import math

import pytest

from backend.datasets.services import create_partition
from backend.runs.models import RateSearch
from tests.conftest import wait_for
from tests.factories import ready_dataset, with_training_cache
from workers.engine.training import finder


def demo_partition(project, user, per_class=40):
    dataset = with_training_cache(ready_dataset(project, per_class=per_class))
    return create_partition(user, dataset, "", 70, 15, 15, 1)


def finished(search_id: int, timeout: float) -> RateSearch:
    return wait_for(lambda: RateSearch.objects.filter(pk=search_id, status__in=RateSearch.finished_statuses()).first(), timeout,
                    "the search to end")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_search_reports_progress_and_stores_the_curve_and_a_suggestion(api, project, user, celery_worker_process):
    partition = demo_partition(project, user)
    response = api.post("/api/rate-searches/", {"partition": partition.pk, "name": "as the run form sends it", "batch_size": 4},
                        format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["queue"] == "train-cpu" and body["results"] == {}
    assert body["spec"]["batch_size"] == 4 and body["spec"]["optimizer"]["name"] == "adamw", "the spec is stored resolved"
    seen = []

    def progress_then_end():
        job = api.get(f"/api/rate-searches/{body['id']}/").json()
        seen.append((job["status"], job["progress_done"], job["progress_total"]))
        return job if job["finished"] else None

    job = wait_for(progress_then_end, 240, "the search to end", interval=0.05)
    assert job["status"] == "done", job["message"] + celery_worker_process.log_path.read_text()[-3000:]
    assert any(status == "running" and 0 < done < total for status, done, total in seen), seen
    results = job["results"]
    assert len(results["rates"]) == len(results["losses"]) > 10
    assert results["rates"][0] == pytest.approx(finder.START_RATE) and results["rates"][-1] <= finder.END_RATE
    assert results["rates"][0] < results["suggestion"] < results["rates"][-1]
    batches = math.ceil(sum(partition.counts["train"].values()) / 4)
    assert job["progress"] == 1.0 and job["progress_done"] == job["progress_total"] == finder.sweep_steps(batches)
    assert job["message"].startswith(f"Suggested learning rate: {results['suggestion']:.2g}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_stopped_search_ends_after_its_current_step_and_keeps_the_curve_so_far(api, project, user, celery_worker_process):
    partition = demo_partition(project, user)
    # ResNet-18's steps take long enough on a CPU to stop the sweep early in its course.
    search_id = api.post("/api/rate-searches/", {"partition": partition.pk, "model": {"architecture": "resnet18"}, "batch_size": 16},
                         format="json").json()["id"]
    wait_for(lambda: RateSearch.objects.filter(pk=search_id, progress_done__gte=2).exists(), 180, "the sweep's first steps")
    response = api.post(f"/api/rate-searches/{search_id}/stop/")
    assert response.status_code == 202 and response.json()["stop_requested"]
    search = finished(search_id, 60)
    assert search.status == "stopped", search.message
    assert search.results["stopped_early_because"] == "stopped"
    assert 2 <= len(search.results["rates"]) < search.progress_total
    assert search.message.startswith(f"Stopped by the user after {len(search.results['rates'])} rates")
    assert api.post(f"/api/rate-searches/{search_id}/stop/").status_code == 409, "nothing left to stop"


@pytest.mark.django_db
def test_bad_settings_are_refused_per_field_as_a_run_would_be(api, project, user):
    partition = demo_partition(project, user, per_class=10)
    cases = [({"optimizer": {"name": "sgd", "momentum": 2}}, "optimizer.momentum"),
             ({"batch_size": 500}, "batch_size"),
             ({"resources": {"device": "gpu"}}, "resources.device"),
             ({"learning_rate": 0.1}, "learning_rate")]
    for settings, field in cases:
        search = api.post("/api/rate-searches/", {"partition": partition.pk, **settings}, format="json")
        run = api.post("/api/runs/", {"partition": partition.pk, **settings}, format="json")
        assert search.status_code == run.status_code == 400, search.content
        assert search.json()["field"] == run.json()["field"] == field
        assert search.json()["message"] == run.json()["message"]
    assert not RateSearch.objects.exists()


@pytest.mark.django_db
def test_finished_searches_older_than_a_day_go_when_the_next_starts(api, project, user):
    from datetime import timedelta

    from django.utils import timezone

    partition = demo_partition(project, user, per_class=10)
    old, running = (RateSearch.objects.create(partition=partition, status=status) for status in ("done", "running"))
    RateSearch.objects.filter(pk__in=[old.pk, running.pk]).update(created_at=timezone.now() - timedelta(days=2))
    recent = RateSearch.objects.create(partition=partition, status="done")
    new = api.post("/api/rate-searches/", {"partition": partition.pk}, format="json").json()["id"]
    assert set(RateSearch.objects.values_list("pk", flat=True)) == {running.pk, recent.pk, new}, "a running one stays, however old"

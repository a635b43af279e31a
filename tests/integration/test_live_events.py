"""A run's live events from the real web server (uvicorn, as `manage.py serve` starts it) while a real
worker trains it: a watching client gets every point as it is recorded, a client that drops and comes
back gets exactly what it missed, and only those who may read the run get anything. Each with Redis
(a publish wakes the stream; CI sets REDIS_URL) and on the embedded defaults (the stream polls)."""
import threading

import pytest
import redis
from django.conf import settings
from rest_framework.authtoken.models import Token

from backend.core import notify
from backend.runs.models import MetricPoint, TrainingRun
from tests.conftest import start_web_server, stop_process, wait_for
from tests.factories import training_spec
from tests.integration.test_worker import ingested_partition
from tests.sse import EventStream

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WAKE_UPS = [
    pytest.param("poll", id="embedded-defaults-poll"),
    pytest.param("redis", id="redis-publish", marks=pytest.mark.skipif(not settings.REDIS_URL, reason="CI sets REDIS_URL")),
]


@pytest.fixture(params=WAKE_UPS)
def web_server(request, transactional_db, tmp_path):
    """The web server, with Redis (its streams wait on a subscription) or without (they poll the database)."""
    process = start_web_server(tmp_path / "web.log", **({} if request.param == "redis" else {"REDIS_URL": ""}))
    process.wake_up = request.param
    yield process
    stop_process(process)


def events_url(server, run_id: int, query: str = "") -> str:
    return f"{server.url}/api/runs/{run_id}/events/{query}"


def read_until(stream: EventStream, enough) -> list:
    events = []
    for event in stream.events():
        events.append(event)
        if enough(events):
            break
    return events


def points(events) -> list[dict]:
    return [event.data for event in events if event.name == "point"]


def test_watching_clients_get_each_point_as_it_is_recorded_and_a_reconnection_gets_exactly_what_it_missed(
        web_server, celery_worker_process, api, user, project):
    token = Token.objects.create(user=user).key
    partition = ingested_partition(api, project, per_class=20)
    run_id = api.post("/api/runs/", {"partition": partition, "epochs": 10, "batch_size": 4}, format="json").json()["id"]

    # One client watches from the launch to the end.
    watcher = EventStream(events_url(web_server, run_id), token)
    assert watcher.status == 200 and watcher.content_type == "text/event-stream"
    watched, live = [], []

    def watch():
        for event in watcher.events():
            watched.append(event)
            if event.name == "point" and not live:
                live.append(TrainingRun.objects.get(pk=run_id).status)  # what the run was doing when its first point arrived

    thread = threading.Thread(target=watch)
    thread.start()

    # Another drops after four points, comes back by ?last_event_id= for two more, then (as EventSource
    # does) with the Last-Event-ID header, which wins over the address's older id, and stays to the end.
    first = EventStream(events_url(web_server, run_id), token)
    seen = read_until(first, lambda events: len(points(events)) >= 4)
    first.close()
    wait_for(lambda: MetricPoint.objects.filter(run_id=run_id).count() >= len(points(seen)) + 4, 120, "four points written while away")
    second = EventStream(events_url(web_server, run_id, f"?last_event_id={first.last_event_id}"), token)
    seen_again = read_until(second, lambda events: len(points(events)) >= 2)
    second.close()
    third = EventStream(events_url(web_server, run_id, f"?last_event_id={first.last_event_id}"), token, last_event_id=second.last_event_id)
    to_the_end = list(third.events())
    thread.join(timeout=300)

    stored = list(MetricPoint.objects.filter(run_id=run_id).order_by("id").values("id", "epoch", "subset", "name", "value"))
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "succeeded", run.message
    assert len(stored) == 10 * 8, "loss and accuracy on two subsets, and four system measurements, per epoch"
    assert points(watched) == stored, "the watcher got every point once, oldest first"
    assert live == ["running"], "points arrive while the run goes on"
    assert points(seen) + points(seen_again) + points(to_the_end) == stored, "no point missing or twice across the reconnections"
    for events in (watched, seen, seen_again, to_the_end):
        assert events[0].name == "status", "each connection starts with the run's state"
    statuses = [event for event in watched if event.name == "status"]
    assert watched[-1].name == "end" and statuses[-1].data["finished"], "the last state is the finished run's; then the end"
    assert to_the_end[-1].name == "end" and [e for e in to_the_end if e.name == "status"][-1].data["status"] == "succeeded"
    statuses = [event.data["status"] for event in watched if event.name == "status"]
    assert statuses[0] in ("queued", "running") and "running" in statuses
    progress = [(event.data["progress_done"], event.data["progress_total"]) for event in watched if event.name == "status"]
    assert progress == sorted(progress) and any(0 < done < total for done, total in progress), "progress is pushed as it goes"
    assert watcher.retry_ms == 2000


def test_only_those_who_may_read_the_run_get_its_events(web_server, user, outsider, project):
    from backend.datasets.services import create_partition
    from tests.factories import ready_dataset, training_spec

    partition = create_partition(user, ready_dataset(project), "", 70, 15, 15, 1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="r", spec=training_spec(epochs=1),
                                     )
    stranger = EventStream(events_url(web_server, run.pk), Token.objects.create(user=outsider).key)
    assert stranger.status == 404 and stranger.body()["code"] == "not_found", "names do not leak"
    anonymous = EventStream(events_url(web_server, run.pk))
    assert anonymous.status == 401 and anonymous.body()["code"] == "not_authenticated"
    token = Token.objects.create(user=user).key
    garbled = EventStream(events_url(web_server, run.pk), token, last_event_id="12")
    assert garbled.status == 400 and garbled.body()["field"] == "last_event_id"

    # The owner's stream of a queued run: its state, then the news of a stop, without a worker.
    owner = EventStream(events_url(web_server, run.pk), token)
    events = owner.events()
    assert next(events).data["status"] == "queued"
    if web_server.wake_up == "redis":
        wait_for(lambda: subscribers(run) == 1, 10, "the stream to subscribe")
    from backend.core.jobs import stop
    stop(run)
    stopped = next(events)
    assert stopped.name == "status" and stopped.data["status"] == "stopped" and stopped.data["finished"]
    assert next(events).name == "end"
    owner.close()
    if web_server.wake_up == "redis":
        wait_for(lambda: subscribers(run) == 0, 10, "the finished stream to let its subscription go")


@pytest.mark.skipif(not settings.REDIS_URL, reason="subscriptions are Redis's (CI sets REDIS_URL)")
def test_a_client_that_goes_away_leaves_no_subscription_behind(user, project, tmp_path, transactional_db):
    from backend.datasets.services import create_partition
    from tests.factories import ready_dataset

    server = start_web_server(tmp_path / "web.log")
    try:
        partition = create_partition(user, ready_dataset(project), "", 70, 15, 15, 1)
        run = TrainingRun.objects.create(project=project, partition=partition, name="r", spec=training_spec(epochs=1),
                                         status="running")
        token = Token.objects.create(user=user).key
        streams = [EventStream(events_url(server, run.pk), token) for _ in range(5)]
        for stream in streams:
            assert next(stream.events()).name == "status"
        # One subscription per web server process watching the run, however many streams it serves.
        wait_for(lambda: subscribers(run) in (1, 2), 10, "the processes serving the streams to subscribe")
        assert subscribers(run) <= 2
        for stream in streams:
            stream.close()
        wait_for(lambda: subscribers(run) == 0, 10, "the streams of clients gone to end")
    finally:
        stop_process(server)
    assert "Traceback" not in (tmp_path / "web.log").read_text()


def subscribers(run) -> int:
    channel = notify.channel_for(TrainingRun, run.pk)
    return dict(redis.Redis.from_url(settings.REDIS_URL).pubsub_numsub(channel))[channel.encode()]

"""What a test with the live server leaves behind: nothing. Its pages' streams are ended and its requests
finished before pytest-django empties the database (tests/conftest.py, live_server_finishes_before_the_flush).

The fault this guards against (issue 19): under load, a browser test's teardown emptied the database while
the live server still answered one of its page's requests (a run's event stream reading the run); the
TRUNCATE deadlocked, and the next test failed for it. Under the same load, the old teardown also let an
imported model's prediction write its audit row after the flush (a ForeignKeyViolation in the teardown log).
"""
import threading
import urllib.request

import pytest
from django.test import Client
from django.utils import timezone

from backend.core.sse import WsgiStream, end_wsgi_streams
from backend.runs.events import Watch
from tests.conftest import LIVE_REQUESTS, wait_for
from tests.factories import ready_dataset, training_spec

pytestmark = pytest.mark.django_db(transaction=True)


def a_running_run(user):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun

    project = Project.objects.create(owner=user, name="Chest")
    partition = create_partition(user, ready_dataset(project, per_class=4), "", 50, 50, 0, 7)
    return TrainingRun.objects.create(project=project, partition=partition, name="live", spec=training_spec(epochs=3),
                                      status="running", started_at=timezone.now())


def test_ending_the_streams_finishes_their_requests_at_once(live_server, user, monkeypatch):
    from backend.runs import events

    monkeypatch.setattr(events, "KEEP_ALIVE_SECONDS", 600.0)  # left alone, the server would notice nothing for minutes
    run = a_running_run(user)
    client = Client()
    client.force_login(user)
    request = urllib.request.Request(f"{live_server.url}/api/runs/{run.pk}/events/",
                                     headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"})
    received, closed = [], threading.Event()

    def follow():
        with urllib.request.urlopen(request, timeout=60) as response:
            for line in response:
                received.append(line)
        closed.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for(lambda: any(b"event: status" in line for line in received), 30, "the stream's first event")
    assert LIVE_REQUESTS.outstanding() == [f"GET /api/runs/{run.pk}/events/"], "the stream is a request in flight"
    assert len(WsgiStream.open) == 1

    assert end_wsgi_streams() == 1
    end_wsgi_streams()  # as the teardown does until the requests are done: a second call must not cut the clean-up short
    assert closed.wait(60), "the client sees the stream end, long before the next keep-alive"
    wait_for(lambda: not LIVE_REQUESTS.outstanding(), 60, "the server finishing the request")
    assert not WsgiStream.open
    assert not Watch.watches, "the stream's watch (its subscription or poll, and its connection) went with it"
    reader.join(10)

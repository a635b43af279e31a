"""A run's event stream, driven in this process (as a WSGI server drives it, through sse.blocking): the
state first, then exactly what follows the client's cursor, in batches for a client far behind, keep-alives
while nothing happens, a status event only when the run changes, and the end once it has finished."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from backend.core import notify, sse
from backend.datasets.services import create_partition
from backend.runs import events as run_events_module
from backend.runs.events import Cursor, run_events
from backend.runs.models import MetricPoint, RunLogLine, TrainingRun
from tests.factories import ready_dataset, training_spec

pytestmark = pytest.mark.django_db(transaction=True)  # the stream reads from a thread of its own


@pytest.fixture
def run(user, project):
    partition = create_partition(user, ready_dataset(project), "", 70, 15, 15, 1)
    return TrainingRun.objects.create(project=project, partition=partition, name="r", spec=training_spec(epochs=3),
                                      status="running",
                                      started_at=timezone.now(), progress_done=1, progress_total=9)


def parsed(chunk: str) -> list[tuple[str, str | None, str]]:
    """(event name or ':comment' or 'retry', id, data) for each block of a chunk the stream sent."""
    blocks = []
    for block in filter(None, chunk.split("\n\n")):
        fields = dict(line.split(": ", 1) if not line.startswith(":") else (":comment", line[2:]) for line in block.split("\n"))
        name = fields.get("event") or (":comment" if ":comment" in fields else "retry")
        blocks.append((name, fields.get("id"), fields.get("data") or fields.get(":comment") or fields.get("retry")))
    return blocks


def stream(run, cursor=Cursor()):
    """The stream's parts, each taken in one thread of its own as a WSGI server's request thread takes them
    (this thread may hold a running event loop: the browser tests' Playwright, earlier in the session)."""
    parts = sse.blocking(sse.own_connection(run_events(run.pk, cursor)))
    with ThreadPoolExecutor(1) as thread:
        try:
            while True:
                try:
                    yield thread.submit(next, parts).result()
                except StopIteration:
                    return
        finally:
            thread.submit(parts.close).result()


def write_points(run, epochs, subset="train"):
    return [MetricPoint.objects.create(run=run, epoch=epoch, subset=subset, name="loss", value=1 / epoch).pk for epoch in epochs]


def test_after_the_state_it_sends_what_follows_the_cursor_then_ends_once_the_run_has_finished(run):
    points = write_points(run, [1, 2, 3])
    lines = [RunLogLine.objects.create(run=run, text=f"epoch {n}").pk for n in (1, 2)]
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())
    sent = [block for chunk in stream(run, Cursor(points[0], 0)) for block in parsed(chunk)]
    assert [(name, event_id) for name, event_id, _ in sent] == [
        ("retry", None), ("status", None),
        ("point", f"p{points[1]}.l0"), ("point", f"p{points[2]}.l0"),
        ("log", f"p{points[2]}.l{lines[0]}"), ("log", f"p{points[2]}.l{lines[1]}"),
        ("end", None),
    ]
    assert sent[0][2] == "2000" and '"finished":true' in sent[1][2] and '"text":"epoch 2"' in sent[5][2]


def test_a_client_far_behind_catches_up_in_batches(run, monkeypatch):
    monkeypatch.setattr(run_events_module, "BATCH", 2)
    points = write_points(run, range(1, 8))
    TrainingRun.objects.filter(pk=run.pk).update(status="stopped", finished_at=timezone.now())
    sent = [block for chunk in stream(run) for block in parsed(chunk)]
    assert [event_id for name, event_id, _ in sent if name == "point"] == [f"p{pk}.l0" for pk in points]
    assert [name for name, _, _ in sent][-1] == "end" and [name for name, _, _ in sent].count("status") == 1


def test_while_nothing_happens_it_keeps_the_connection_alive_and_sends_a_state_only_when_it_changes(run, monkeypatch):
    monkeypatch.setattr(run_events_module, "KEEP_ALIVE_SECONDS", 0.6)
    monkeypatch.setattr(notify, "POLL_SECONDS", 0.05)
    parts = stream(run)
    assert parsed(next(parts))[0][0] == "retry"
    assert parsed(next(parts))[0][0] == "status"
    started = time.monotonic()
    assert parsed(next(parts)) == [(":comment", None, "keep-alive")], "the time left changes by itself: no status for it"
    assert time.monotonic() - started >= 0.5
    TrainingRun.objects.filter(pk=run.pk).update(progress_done=2)
    notify.publish(notify.channel_for(TrainingRun, run.pk))
    (name, _, data), = parsed(next(parts))
    assert name == "status" and '"progress_done":2' in data
    write_points(run, [1])
    notify.publish(notify.channel_for(TrainingRun, run.pk))
    assert [name for name, _, _ in parsed(next(parts))] == ["point"]
    parts.close()  # the client goes away: the generator ends, with its subscription and connection


def test_a_deleted_run_ends_the_stream(run):
    parts = stream(run)
    assert [parsed(next(parts))[0][0] for _ in range(2)] == ["retry", "status"]
    pk = run.pk
    run.delete()
    notify.publish(notify.channel_for(TrainingRun, pk))
    assert parsed(next(parts)) == [("end", None, "null")]
    with pytest.raises(StopIteration):
        next(parts)

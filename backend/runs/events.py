"""A run's live events (`GET /api/runs/<id>/events/`): what a watching page needs, pushed as it is recorded.

Events, as Server-Sent Events (backend/core/sse.py):
  status  the run's state (RunStatusSerializer): first on every (re)connection, then whenever it changes
  point   a metric point, as the metrics endpoint gives it, oldest first
  log     a line of the run's log, oldest first
  end     the run has finished and everything was sent; the client should not reconnect

Point and log events carry an id naming the newest point and log line sent so far, "p<point id>.l<line
id>". A client that reconnects sends it back (EventSource does so by itself, in the Last-Event-ID header;
a script may pass `?last_event_id=`) and gets exactly what it had not seen: ids only grow, and one worker
writes a run's points and lines one after another, so they commit in the order of their ids.

The stream reads the database whenever the worker says something changed (notify.py: a Redis publish),
or every notify.POLL_SECONDS without Redis.
"""
from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.db.models import OuterRef, Subquery

from backend.core import notify, sse

from .models import MetricPoint, RunLogLine, TrainingRun
from .serializers import LogLineSerializer, MetricPointSerializer, RunStatusSerializer

EVENTS_DESCRIPTION = """A stream of Server-Sent Events, until the run ends:
`status` (the run's state: status, message, progress, eta_seconds, finished ...; first on every connection, then on each change),
`point` (a metric point, as the metrics endpoint gives it), `log` (a line of the run's log: id, text, recorded_at),
`end` (the run has finished and everything was sent: do not reconnect).
Point and log events have ids (`p<point id>.l<log line id>`): reconnect with one in Last-Event-ID (or `?last_event_id=`) to get
exactly the events after it. A comment line keeps a quiet stream alive every 15 s."""
KEEP_ALIVE_SECONDS = 15.0  # a comment after this long without an event
RETRY_MILLISECONDS = 2000  # the browser reconnects this long after a drop
BATCH = 500  # points (and lines) read at once: a client far behind catches up in several reads


@dataclass(frozen=True)
class Cursor:
    """Where a client is: the newest metric point and log line it has."""

    point: int = 0
    line: int = 0
    FORMAT = re.compile(r"p(\d{1,19})\.l(\d{1,19})")

    def __str__(self) -> str:
        return f"p{self.point}.l{self.line}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """The cursor an event id names; an absent or empty one is the start. ValueError for anything else."""
        if not text:
            return cls()
        match = cls.FORMAT.fullmatch(text.strip())
        if not match:
            raise ValueError(f"An event id looks like 'p123.l45' (the newest point and log line seen), not {text[:40]!r}.")
        return cls(int(match[1]), int(match[2]))


@dataclass
class Changes:
    status: dict
    points: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    more: bool = False  # a batch was full: read again at once

    @property
    def finished(self) -> bool:
        return self.status["finished"] and not self.more


def newest(model, run_field: str = "run"):
    return Subquery(model.objects.filter(**{run_field: OuterRef("pk")}).order_by("-id").values("id")[:1])


def read_changes(run_id: int, cursor: Cursor) -> Changes | None:
    """The run's state, then its points and lines after `cursor` (None once the run is deleted). The state
    is read first: a run it shows finished has all its points committed, so they are all in this read.
    One query while nothing is new (what polling without Redis does five times a second)."""
    run = (TrainingRun.objects.defer("config").annotate(newest_point=newest(MetricPoint), newest_line=newest(RunLogLine))
           .filter(pk=run_id).first())
    if run is None:
        return None
    changes = Changes(status=RunStatusSerializer(run).data)
    if (run.newest_point or 0) > cursor.point:
        points = MetricPoint.objects.filter(run_id=run_id, id__gt=cursor.point).order_by("id")[:BATCH]
        changes.points = MetricPointSerializer(points, many=True).data
    if (run.newest_line or 0) > cursor.line:
        lines = RunLogLine.objects.filter(run_id=run_id, id__gt=cursor.line).order_by("id")[:BATCH]
        changes.lines = LogLineSerializer(lines, many=True).data
    changes.more = BATCH in (len(changes.points), len(changes.lines))
    return changes


def without_eta(status: dict) -> dict:
    """The time left changes every second by itself; only a change of the run sends a status event."""
    return {key: value for key, value in status.items() if key != "eta_seconds"}


async def run_events(run_id: int, cursor: Cursor) -> AsyncIterator[str]:
    """The run's events from `cursor` on, until the run has finished (or the client goes away)."""
    yield sse.retry(RETRY_MILLISECONDS)
    shown = None
    last_sent = time.monotonic()
    async with notify.listen(notify.channel_for(TrainingRun, run_id)) as wake_up:
        while True:
            try:
                changes = await sync_to_async(read_changes)(run_id, cursor)
            except DatabaseError:
                return  # the database went away: the client reconnects (retry) to a stream with a new connection
            if changes is None:
                yield sse.event("end", None)
                return
            parts = []
            if without_eta(changes.status) != shown:
                shown = without_eta(changes.status)
                parts.append(sse.event("status", changes.status))
            for point in changes.points:
                cursor = Cursor(point["id"], cursor.line)
                parts.append(sse.event("point", point, str(cursor)))
            for line in changes.lines:
                cursor = Cursor(cursor.point, line["id"])
                parts.append(sse.event("log", line, str(cursor)))
            if changes.finished:
                parts.append(sse.event("end", None))
            if parts:
                last_sent = time.monotonic()
                yield "".join(parts)
            elif time.monotonic() - last_sent >= KEEP_ALIVE_SECONDS:
                last_sent = time.monotonic()
                yield sse.comment("keep-alive")
            if changes.finished:
                return
            if not changes.more:
                await wake_up.wait(max(0.0, KEEP_ALIVE_SECONDS - (time.monotonic() - last_sent)))

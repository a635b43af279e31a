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

A process reads the database for a run once per change, whatever the number of streams following it
there (a `Watch`): when the worker says something changed (notify.py: a Redis publish), or every
notify.POLL_SECONDS without Redis. A stream first catches up from its own cursor by itself, then sends
what the watch reads, skipping what it already sent.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from asgiref.sync import ThreadSensitiveContext, sync_to_async
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
STOP_RETRY_SECONDS = 2.0  # a watch asked to stop is cancelled again after this long
MOST_UNSENT = 100  # reads kept for a stream that does not keep up; past that it catches up from the database


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
    """One read of a run: its state, and its points and lines after the cursor it was read from."""

    status: dict
    newest: Cursor  # the newest point and line of the run when it was read
    points: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    more: bool = False  # a batch was full: read again at once
    read_at: float = 0.0  # time.monotonic() when the read began

    @property
    def finished(self) -> bool:
        return self.status["finished"] and not self.more

    def end(self, cursor: Cursor) -> Cursor:
        """Where a reader that was at `cursor` is once it has these."""
        return Cursor(self.points[-1]["id"] if self.points else cursor.point, self.lines[-1]["id"] if self.lines else cursor.line)


GONE = "gone"  # the run was deleted


def newest(model):
    return Subquery(model.objects.filter(run=OuterRef("pk")).order_by("-id").values("id")[:1])


def read_changes(run_id: int, cursor: Cursor | None) -> Changes | None:
    """The run's state, then its points and lines after `cursor` (only the state with cursor None; None once
    the run is deleted). The state is read first: a run it shows finished has all its points committed, so
    they are all in this read. One query while nothing is new."""
    read_at = time.monotonic()
    run = (TrainingRun.objects.select_related("project").defer("spec", "provenance").annotate(newest_point=newest(MetricPoint), newest_line=newest(RunLogLine))
           .filter(pk=run_id).first())
    if run is None:
        return None
    changes = Changes(status=RunStatusSerializer(run).data, newest=Cursor(run.newest_point or 0, run.newest_line or 0), read_at=read_at)
    if cursor is None:
        return changes
    if changes.newest.point > cursor.point:
        points = MetricPoint.objects.filter(run_id=run_id, id__gt=cursor.point).order_by("id")[:BATCH]
        changes.points = MetricPointSerializer(points, many=True).data
    if changes.newest.line > cursor.line:
        lines = RunLogLine.objects.filter(run_id=run_id, id__gt=cursor.line).order_by("id")[:BATCH]
        changes.lines = LogLineSerializer(lines, many=True).data
    changes.more = BATCH in (len(changes.points), len(changes.lines))
    return changes


def catch_up(run_id: int, cursor: Cursor) -> Changes | None:
    """A stream's own read. Its connection is closed after it: a stream reads by itself only to catch up, and
    may then wait for hours, so a run watched by fifty pages holds one connection per process, the watch's."""
    try:
        return read_changes(run_id, cursor)
    finally:
        sse.close_connection()


@dataclass(eq=False)
class Follower:
    """A stream's end of a watch: the reads it has not sent yet."""

    unsent: list = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    behind: bool = True  # catch up from the database by itself (at first, and after falling too far behind)
    failed: bool = False  # the watch could not read the database: the stream ends, its client reconnects to a new one

    def give(self, item) -> None:
        if len(self.unsent) >= MOST_UNSENT:
            self.unsent.clear()
            self.behind = True
        else:
            self.unsent.append(item)
        self.arrived.set()

    def take(self) -> list:
        self.arrived.clear()
        taken, self.unsent = self.unsent, []
        return taken


class Watch:
    """One process's watch over a run, shared by every stream following it there: one wake-up source (a
    Redis subscription, or the poll) and one read per change, however many people watch. It starts at the
    run's newest point and line; what came before, each stream reads for itself."""

    watches: dict[tuple[asyncio.AbstractEventLoop, int], Watch] = {}

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.followers: set[Follower] = set()
        self.ready = asyncio.Event()  # its position is known: a stream may catch up to it
        self.stopping = False
        # A context of its own: its reads get a thread (and connection) of their own, not the first request's.
        self.task = asyncio.get_running_loop().create_task(self.run(), context=contextvars.Context())

    @classmethod
    @contextlib.asynccontextmanager
    async def follow(cls, run_id: int) -> AsyncIterator[Follower]:
        key = (asyncio.get_running_loop(), run_id)
        watch = cls.watches.get(key)
        if watch is None or watch.task.done():
            watch = cls.watches[key] = cls(run_id)
        follower = Follower()
        watch.followers.add(follower)
        try:
            await watch.ready.wait()
            yield follower
        finally:
            watch.followers.discard(follower)
            if not watch.followers:  # the last one has gone: so do the subscription and the connection
                if cls.watches.get(key) is watch:
                    del cls.watches[key]
                await watch.stop()

    async def stop(self) -> None:
        """Ends the watch and waits for its clean-up (the subscription and the connection closed). Its loop also looks at
        `stopping` after each wait, and the cancellation is repeated while the task lives on: a stream's end must never
        hang on one cancellation lost inside a library's wait (the teardown that empties the database waits for it)."""
        self.stopping = True
        while not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task], timeout=STOP_RETRY_SECONDS)

    def give(self, item) -> None:
        for follower in self.followers:
            follower.give(item)

    async def run(self) -> None:
        async with ThreadSensitiveContext():
            try:
                async with notify.listen(notify.channel_for(TrainingRun, self.run_id)) as wake_up:
                    # Subscribed first, then the position: whatever commits after this read wakes the watch.
                    changes = await sync_to_async(read_changes)(self.run_id, None)
                    cursor = changes.newest if changes else Cursor()
                    self.ready.set()
                    while changes is not None and not changes.finished and not self.stopping:
                        if not changes.more:
                            await wake_up.wait(KEEP_ALIVE_SECONDS)
                        changes = await sync_to_async(read_changes)(self.run_id, cursor)
                        if changes is not None:
                            cursor = changes.end(cursor)
                        self.give(changes if changes is not None else GONE)
            except DatabaseError:
                for follower in self.followers:
                    follower.failed = True
                    follower.arrived.set()
            finally:
                self.ready.set()
                await sync_to_async(sse.close_connection)()


def without_eta(status: dict) -> dict:
    """The time left changes every second by itself; only a change of the run sends a status event."""
    return {key: value for key, value in status.items() if key != "eta_seconds"}


@dataclass
class Sent:
    """What a stream has sent: its cursor, the state it showed, and when its newest complete read began."""

    cursor: Cursor
    status: dict | None = None
    read_at: float = 0.0

    def events(self, changes: Changes) -> list[str]:
        """The events for what `changes` holds that this stream has not sent yet."""
        if changes.read_at < self.read_at:
            return []  # an older read than one already sent: all it holds was sent
        if not changes.more:
            self.read_at = changes.read_at
        parts = []
        if without_eta(changes.status) != self.status:
            self.status = without_eta(changes.status)
            parts.append(sse.event("status", changes.status))
        for point in changes.points:
            if point["id"] > self.cursor.point:
                self.cursor = Cursor(point["id"], self.cursor.line)
                parts.append(sse.event("point", point, str(self.cursor)))
        for line in changes.lines:
            if line["id"] > self.cursor.line:
                self.cursor = Cursor(self.cursor.point, line["id"])
                parts.append(sse.event("log", line, str(self.cursor)))
        if changes.finished:
            parts.append(sse.event("end", None))
        return parts


async def run_events(run_id: int, cursor: Cursor) -> AsyncIterator[str]:
    """The run's events from `cursor` on, until the run has finished (or the client goes away)."""
    yield sse.retry(RETRY_MILLISECONDS)
    sent = Sent(cursor)
    last_sent = time.monotonic()
    async with Watch.follow(run_id) as follower:
        while not follower.failed:
            if follower.behind:
                follower.behind = False
                follower.take()  # what the watch read before this read, this read has too
                try:
                    changes = await sync_to_async(catch_up)(run_id, sent.cursor)
                except DatabaseError:
                    return  # the database went away: the client reconnects (retry) to a stream with a new connection
                follower.behind = changes is not None and changes.more
                reads = [changes if changes is not None else GONE]
            else:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that comes with the event
                # (CPython gh-86296), and the stream would go on after its end was asked.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, KEEP_ALIVE_SECONDS - (time.monotonic() - last_sent))):
                        await follower.arrived.wait()
                reads = follower.take()
            for changes in reads:
                parts = [sse.event("end", None)] if changes == GONE else sent.events(changes)
                if parts:
                    last_sent = time.monotonic()
                    yield "".join(parts)
                if changes == GONE or changes.finished:
                    return
            if not reads and time.monotonic() - last_sent >= KEEP_ALIVE_SECONDS:
                last_sent = time.monotonic()
                yield sse.comment("keep-alive")

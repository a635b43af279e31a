"""Server-Sent Events: the text format, and the response that streams an async generator of events.

Production serves them from an ASGI server (uvicorn), where each stream is a coroutine waiting on a
wake-up (backend/core/notify.py) and costs no thread while it waits. Under WSGI (`runserver`, the test
suite's live server) the same generator runs in an event loop of the request's own thread, so a page
behaves the same wherever it is served.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation

MEDIA_TYPE = "text/event-stream"


def event(name: str, data, event_id: str | None = None) -> str:
    """One event: its name, its data as JSON on one line and, if given, the id a reconnecting client sends back."""
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), default=str)}")
    return "\n".join(lines) + "\n\n"


def comment(text: str) -> str:
    """A line clients ignore: keeps proxies and the browser from taking a quiet stream for a dead one."""
    return f": {text}\n\n"


def retry(milliseconds: int) -> str:
    """How long the browser's EventSource waits before it reconnects after a drop."""
    return f"retry: {milliseconds}\n\n"


class IgnoreAccept(BaseContentNegotiation):
    """An EventSource asks for text/event-stream only, which no DRF renderer makes; the stream itself
    is not rendered by DRF, and its errors (401, 404) are JSON in the API's one error shape."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def event_stream(request, events: AsyncIterator[str]) -> StreamingHttpResponse:
    """The response that sends `events` as they come; `request` is Django's (DRF's `request._request`)."""
    body = own_connection(events)
    response = StreamingHttpResponse(body if isinstance(request, ASGIRequest) else blocking(body), content_type=MEDIA_TYPE)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx and the like: pass each event on at once
    return response


async def own_connection(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """A stream reads the database from its own thread for as long as it lasts; the connection ends with it,
    however it ends (the client gone, the server shutting down, the run over)."""
    try:
        async for part in events:
            yield part
    finally:
        await events.aclose()
        await sync_to_async(close_connection)()


def close_connection() -> None:
    connection.close()  # looked up here, in the stream's thread: each thread has a connection of its own


class WsgiStream:
    """A stream served by a WSGI server, as `end_wsgi_streams` finds it: its loop and the step it is waiting in.

    A WSGI server learns that a client has gone only when its next write fails, which for a quiet stream is
    the next keep-alive, seconds away; until then the stream's thread and connection live on. Whoever stops
    the server (a test's teardown, before it empties the database) ends the streams at once instead."""

    open: set[WsgiStream] = set()
    lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.step: asyncio.Task | None = None
        self.ended = False

    def run(self, coroutine, context):
        if self.ended:
            coroutine.close()
            raise asyncio.CancelledError()
        self.step = self.loop.create_task(coroutine, context=context)
        try:
            return self.loop.run_until_complete(self.step)
        finally:
            self.step = None

    def end(self) -> None:
        """From any thread: the stream stops waiting and ends. Once: a second cancellation would cut short the
        stream's own clean-up (a watch waiting for its task to finish)."""
        if self.ended:
            return
        self.ended = True
        with contextlib.suppress(RuntimeError):  # its loop has closed: the stream ended by itself meanwhile
            self.loop.call_soon_threadsafe(self.cancel_step)

    def cancel_step(self) -> None:
        if self.step is not None:
            self.step.cancel()


def end_wsgi_streams() -> int:
    """Ends every stream this process serves through WSGI; returns how many there were."""
    with WsgiStream.lock:
        streams = list(WsgiStream.open)
    for stream in streams:
        stream.end()
    return len(streams)


def blocking(events: AsyncIterator[str]) -> Iterator[str]:
    """The events for a WSGI server, from an event loop of this thread. One context for every step, so the
    ORM calls of the whole stream share one thread (ThreadSensitiveContext) and its connection."""
    loop = asyncio.new_event_loop()
    context = contextvars.copy_context()
    stream = WsgiStream(loop)

    async def in_one_thread():
        async with ThreadSensitiveContext():
            try:
                async for part in events:
                    yield part
            finally:
                await events.aclose()  # in this thread's context, while it still has its thread

    parts = in_one_thread()

    async def next_part():
        return await anext(parts)

    with WsgiStream.lock:
        WsgiStream.open.add(stream)
    try:
        while True:
            try:
                yield stream.run(next_part(), context)
            except (StopAsyncIteration, asyncio.CancelledError):  # the stream is over, or was ended
                return
    finally:  # the client went away (the server closes this generator) or the stream ended
        with WsgiStream.lock:
            WsgiStream.open.discard(stream)
        loop.run_until_complete(loop.create_task(parts.aclose(), context=context))
        finish_tasks(loop)
        loop.close()


def finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Whatever the stream started on its loop (a watch) is finished before the loop closes, its clean-up
    (closing its database connection) run; a task left pending would be dropped half-way."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

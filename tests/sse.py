"""A client of server-sent event streams for tests: what a browser's EventSource does, over http.client."""
from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Event:
    name: str
    data: object
    id: str | None
    received_at: float  # time.time() when its last line arrived


class EventStream:
    """GET `url` as an event stream (token auth, optionally resuming after `last_event_id` as EventSource
    does, in the Last-Event-ID header); `status` and, for errors, `body()` say how the server answered."""

    def __init__(self, url: str, token: str | None = None, last_event_id: str | None = None, timeout: float = 120):
        address = urlsplit(url)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Token {token}"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", address.path + (f"?{address.query}" if address.query else ""), headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.content_type = self.response.getheader("Content-Type", "")
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self.comments = 0

    def body(self) -> dict:
        return json.loads(self.response.read())

    def events(self) -> Iterator[Event]:
        """Each event as it arrives, until the server closes the stream."""
        name, data, event_id = "message", [], None
        while line := self.response.readline():
            line = line.decode().rstrip("\r\n")
            if not line:
                if data:
                    if event_id is not None:
                        self.last_event_id = event_id
                    yield Event(name, json.loads("\n".join(data)), event_id, time.time())
                name, data, event_id = "message", [], None
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
            elif field == "retry":
                self.retry_ms = int(value)

    def close(self) -> None:
        self.connection.close()

"""Layer summaries from one warm process: the zoo page's answers without a torch import each.

A summary itself takes 0.01-0.5 s (summary.py builds the network on the meta device), but a new Python
process that answers one question first imports torch and, on its first meta-device forward pass,
torch._dynamo: 5-12 s on a loaded two-CPU machine, which every new network or image size on the zoo page
paid (issue: "Updating…" for 12 s). This process pays it once and then answers every web worker of the
machine over a Unix socket, one question at a time, until it has been idle for `idle_seconds` or the process
that started it (a web worker, a test run) has ended, whichever comes first: none is left behind.

    python -m workers.engine.zoo.summary_server SOCKET_PATH [IDLE_SECONDS]

The socket is bound before torch is imported, so a client that connects meanwhile waits for its answer
instead of starting another server; it is made by renaming a bound socket onto SOCKET_PATH (a client never
finds a file that does not listen), and only this user may connect to it. While nobody asks, the networks are built
once each, so the lazy imports of their layers' meta kernels are done before the first question about them.

The protocol: one JSON line in, one JSON line out, then the connection closes.
    {"architecture", "channels", "height", "width", "classes"[, "depth"]} -> {"answer": <summary.layer_summary's>}
                                                                 | {"error": <a refusal to show the user>}
                                                                 | {"fault": <what went wrong, for the log>}
    {"quit": true} -> {"answer": "bye"}, and the server ends; an empty request (a probe) gets no answer.
A question about a 3D network has a "depth" as well (its volumes' slices).
The web tier's side is backend/core/zoo.py.
"""
from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
import traceback
from typing import Callable

from ..call import Refusal
from .inputs import usual_size
from .registry import MODELS

IDLE_SECONDS = 600.0
READ_SECONDS = 5.0        # a client has this long to send its question once connected
REQUEST_BYTES = 4096
QUESTION_KEYS = ("architecture", "channels", "height", "width", "classes")
OPTIONAL_KEYS = ("depth",)  # a 3D network's question only


def warm_up_questions() -> list[dict]:
    """Each network once, at its usual size (the page's first table for it: a cube for a 3D one), smallest first."""
    return [{"architecture": name, "channels": 3, "height": usual_size(entry), "width": usual_size(entry), "classes": 2,
             **({"depth": usual_size(entry)} if entry.dims == 3 else {})}
            for name, entry in sorted(MODELS.items(), key=lambda item: item[1].parameters)]


def bind(path: str) -> socket.socket:
    """A listening socket at `path`, put there by renaming (atomic: whoever connects finds it listening)."""
    staging = f"{path}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o077)
    try:
        if os.path.exists(staging):
            os.unlink(staging)
        listener.bind(staging)
        listener.listen(64)
        os.replace(staging, path)
    except BaseException:
        listener.close()
        raise
    finally:
        os.umask(mask)
    return listener


def still_ours(path: str, inode: int) -> bool:
    """Whether the socket file is still this server's (not removed with its folder, nor replaced by another server)."""
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def read_request(connection: socket.socket) -> dict | None:
    connection.settimeout(READ_SECONDS)
    data = b""
    while b"\n" not in data and len(data) < REQUEST_BYTES:
        chunk = connection.recv(REQUEST_BYTES)
        if not chunk:
            break
        data += chunk
    text = data.split(b"\n", 1)[0].strip()
    if not text:
        return None
    request = json.loads(text)
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    return request


def respond(request: dict, summarise) -> dict:
    if request.get("quit"):
        return {"answer": "bye"}
    try:
        question = {key: request[key] for key in QUESTION_KEYS}
        question.update({key: request[key] for key in OPTIONAL_KEYS if key in request})
        return {"answer": summarise(**question)}
    except Refusal as refusal:
        return {"error": str(refusal)}
    except Exception:  # one bad question must not end the server; the web tier logs it
        return {"fault": traceback.format_exc(limit=8)[-3000:]}


def serve(path: str, idle_seconds: float = IDLE_SECONDS, summarise: Callable[..., dict] | None = None) -> int:
    """Answer questions at `path` until idle for `idle_seconds`, asked to quit, the socket file is no longer this
    server's, or the process that started this one has ended. `summarise`: summary.layer_summary unless given
    (tests give one that needs no torch)."""
    parent = os.getppid()
    listener = bind(path)
    inode = os.stat(path).st_ino
    try:
        if summarise is None:
            from .summary import layer_summary as summarise  # torch: after binding (see the module's docstring)

        warm_up = warm_up_questions()
        last_asked = time.monotonic()  # a probe counts: someone opened the zoo page
        while still_ours(path, inode) and os.getppid() == parent:
            timeout = 0.0 if warm_up else max(0.0, min(idle_seconds - (time.monotonic() - last_asked), 5.0))
            if select.select([listener], [], [], timeout)[0]:
                connection, _ = listener.accept()
                last_asked = time.monotonic()
                with connection:
                    try:
                        request = read_request(connection)
                        if request is not None:
                            connection.sendall(json.dumps(respond(request, summarise)).encode() + b"\n")
                    except (OSError, ValueError):
                        continue  # the client went away, or sent no JSON: nothing to answer
                last_asked = time.monotonic()
                if request is not None and request.get("quit"):
                    return 0
            elif warm_up:
                try:
                    summarise(**warm_up.pop(0))
                except Exception:  # warming only; a real question about it will say what is wrong
                    pass
            elif time.monotonic() - last_asked >= idle_seconds:
                return 0
        return 0
    finally:
        listener.close()
        if still_ours(path, inode):
            os.unlink(path)


def main(arguments: list[str]) -> int:
    if not arguments:
        print(__doc__, file=sys.stderr)
        return 2
    return serve(arguments[0], float(arguments[1]) if len(arguments) > 1 else IDLE_SECONDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

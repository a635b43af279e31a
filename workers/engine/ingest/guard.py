"""The per-file guard: whatever handling one file raises becomes that file's outcome, not the job's end.

Every step that touches one file runs inside `guarded(failure)`: an exception there becomes
`Rejected` with a reason that says which step failed and what was raised ("the de-identified
header could not be written (TypeError: encoding without a string argument)"), and the job goes on
with the next file. Only faults of the job itself get through: a full disk (every later file
would meet it too) becomes JobFault, a stop request stays JobStopped, and what is not an
Exception (KeyboardInterrupt, SystemExit) is never caught. A MemoryError is one file's fault: it
is that file that was too large.
"""
from __future__ import annotations

import errno

from ..observer import JobFault, JobStopped
from .decoded import FileOutcome, Rejected

DISK_FULL = "The disk holding the datasets is full; free space and upload again."
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
PASSED_THROUGH = (FileOutcome, JobFault, JobStopped)


class guarded:
    """`with guarded("the pixels could not be written"): ...` (a class, not a generator-based
    context manager: it runs a few times per file and should cost next to nothing)."""

    __slots__ = ("failure",)

    def __init__(self, failure: str):
        self.failure = failure

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, PASSED_THROUGH):
            return False
        raise_job_fault(exc)
        raise Rejected(f"{self.failure} ({exception_text(exc)})") from exc


def raise_job_fault(exc: BaseException) -> None:
    """Raise JobFault when exc is a fault of the job rather than of the file being handled."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        raise JobFault(DISK_FULL) from exc


def exception_text(exc: BaseException) -> str:
    """'TypeError: encoding without a string argument': the class says what kind of fault it is to
    whoever reads the report, the message's first line says where; control characters (a damaged
    file's bytes can end up in a message) are dropped, since the database stores this text. An
    OSError's file name is left out: it is a path on the server, of no use to the reader."""
    text = f"[Errno {exc.errno}] {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
    lines = text.strip().splitlines()
    message = printable(lines[0])[:200] if lines else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def printable(text: str) -> str:
    """Text from inside a file made safe to store: no NUL (PostgreSQL refuses it) or other control characters."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)

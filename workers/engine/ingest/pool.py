"""Processes that share an ingest's per-file work: reading files and filling the training cache.

Decoding and de-identifying DICOM is pure-Python work that holds the GIL, so the
pool is of processes. They are forked: cheap to start, with nothing to import
again. Each opens the upload afresh (a zip handle shared across a fork would
share its file position) and dies with the worker that forked it, so a killed
ingest leaves no process behind that still writes into the dataset. Small
uploads, and systems without fork, run the same functions in this process.

A decoder written in C can kill the process it runs in (a segfault on a damaged
JPEG 2000 stream). concurrent.futures then calls the whole pool broken and fails
every chunk it held, so the chunks that were in flight are run again one item at
a time, each in a process of its own: the item that kills its process is found
and gets an outcome of its own (`crashed`), the others come through, and the rest
of the job goes on in a new pool.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing as mp
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..observer import JobFault
from ..processes import die_with_parent
from .sources import IngestLimits, reopen_archives, upload_entries

PARALLEL_MIN_FILES = 64
IN_FLIGHT_PER_PROCESS = 2  # chunks handed out ahead: enough to keep every process busy, few to run again after a crash
UNEXPLAINED_BREAKS_ALLOWED = 3
NO_READER_PROCESSES = ("The ingest could not start its reader processes ({}); the machine may be short of memory. "
                       "Upload again later, or set TOOLKIT_INGEST_PROCESSES lower.")
READERS_KEEP_DYING = ("The ingest's reader processes kept dying, though every file they held came through when read "
                      "alone; the machine may be short of memory. Upload again later, or set TOOLKIT_INGEST_PROCESSES lower.")
T = TypeVar("T")
_opened: dict = {}


class ProcessDied(Exception):
    """A single-use process ended without sending its result back."""


def pool_size(processes: int, files: int, chunk: int) -> int:
    if files < PARALLEL_MIN_FILES or "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(processes or os.cpu_count() or 1, files // chunk))


@contextlib.contextmanager
def ingest_pool(upload_dir: Path, limits: IngestLimits, processes: int, entries: list, chunk: int):
    """Yields a ReaderPool, or None when the work is better done in this process."""
    size = pool_size(processes, len(entries), chunk)
    if size == 1:
        yield None
        return
    pool = ReaderPool(upload_dir, limits, size, entries)
    try:
        yield pool
    finally:
        pool.close()


class ReaderPool:
    """A process pool that outlives a process killed by what it was working on."""

    def __init__(self, upload_dir: Path, limits: IngestLimits, size: int, entries: list):
        self.upload_dir, self.limits, self.size = upload_dir, limits, size
        self.entries = entries  # this process's own, inherited by single-use processes (no reopening)
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.unexplained_breaks = 0

    def running(self) -> concurrent.futures.ProcessPoolExecutor:
        if self.executor is None:
            self.executor = concurrent.futures.ProcessPoolExecutor(
                self.size, mp_context=mp.get_context("fork"), initializer=start_process,
                initargs=(self.upload_dir, self.limits))
        return self.executor

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def map(self, function: Callable, chunks: list, args: tuple, crashed: Callable) -> Iterator[list]:
        """function(chunk, *args) for every chunk, results (one list per chunk) in order."""
        done = 0
        while done < len(chunks):
            in_flight: collections.deque = collections.deque()
            handed_out = done
            try:
                executor = self.running()
                while done < len(chunks):
                    while handed_out < len(chunks) and len(in_flight) < self.size * IN_FLIGHT_PER_PROCESS:
                        in_flight.append(executor.submit(function, chunks[handed_out], *args))
                        handed_out += 1
                    result = in_flight[0].result()
                    in_flight.popleft()
                    done += 1
                    yield result
            except BrokenProcessPool:
                self.close()
                yield from self.after_a_crash(function, chunks[done:handed_out], in_flight, args, crashed)
                done = handed_out
            except OSError as exc:  # fork refused: no process of this job can run
                raise JobFault(NO_READER_PROCESSES.format(exc)) from exc

    def after_a_crash(self, function: Callable, chunks: list, futures: Iterable, args: tuple, crashed: Callable) -> Iterator[list]:
        """The results of the chunks that were in flight when the pool broke: those finished before
        it stand, the others are run again an item at a time, each in a process of its own."""
        found_the_cause = False
        for chunk, future in zip(chunks, futures):
            failure = future.exception() if future.done() else BrokenProcessPool()
            if failure is None:
                yield future.result()
                continue
            if not isinstance(failure, BrokenProcessPool):
                raise failure
            results = []
            for item in chunk:
                try:
                    results.extend(self.run_alone(function, ([item], *args)))
                except ProcessDied as death:
                    found_the_cause = True
                    results.append(crashed(item, str(death)))
            yield results
        if not found_the_cause:
            self.unexplained_breaks += 1
            if self.unexplained_breaks > UNEXPLAINED_BREAKS_ALLOWED:
                raise JobFault(READERS_KEEP_DYING)

    def run_alone(self, function: Callable, args: tuple) -> list:
        """function(*args) in a forked process of its own; ProcessDied when that process dies."""
        context = mp.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=run_and_send, args=(sender, self.entries, function, args), daemon=True)
        try:
            process.start()
        except OSError as exc:
            raise JobFault(NO_READER_PROCESSES.format(exc)) from exc
        sender.close()
        try:
            outcome, value = receiver.recv()
        except EOFError:
            process.join()
            raise ProcessDied(how_it_ended(process.exitcode))
        finally:
            receiver.close()
        process.join()
        if outcome == "raised":
            raise value
        return value


def run_and_send(sender, entries: list, function: Callable, args: tuple) -> None:
    die_with_parent()
    reopen_archives(entries)
    _opened["entries"] = entries
    try:
        message = ("returned", function(*args))
    except Exception as exc:  # JobFault and the like: the caller raises it as a pool would have
        message = ("raised", exc)
    sender.send(message)
    sender.close()


def how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"the process died: signal {-exitcode}"
    return f"the process died: exit code {exitcode}"


def start_process(upload_dir: Path, limits: IngestLimits) -> None:
    die_with_parent()
    stack = contextlib.ExitStack()
    _opened.update(entries=stack.enter_context(upload_entries(upload_dir, limits)), stack=stack)


def opened_entries() -> list:
    """The upload's entries as this pool process opened them."""
    return _opened["entries"]


def chunked(items: list[T], size: int) -> list[list[T]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def map_in_order(pool: ReaderPool | None, function: Callable, chunks: list, *args, crashed: Callable) -> Iterator[list]:
    """function(chunk, *args) for every chunk, results in order, in the pool or in this process.
    crashed(item, how) stands for the result of an item whose process died on it."""
    if pool is None:
        return (function(chunk, *args) for chunk in chunks)
    return pool.map(function, chunks, args, crashed)

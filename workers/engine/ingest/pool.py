"""Processes that share an ingest's per-file work: reading files and filling the training cache.

Decoding and de-identifying DICOM is pure-Python work that holds the GIL, so the
pool is of processes. They are forked: cheap to start, with nothing to import
again. Each opens the upload afresh (a zip handle shared across a fork would
share its file position) and dies with the worker that forked it, so a killed
ingest leaves no process behind that still writes into the dataset. Small
uploads, and systems without fork, run the same functions in this process.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import multiprocessing as mp
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..processes import die_with_parent
from .sources import IngestLimits, upload_entries

PARALLEL_MIN_FILES = 64
T = TypeVar("T")
_opened: dict = {}


def pool_size(processes: int, files: int, chunk: int) -> int:
    if files < PARALLEL_MIN_FILES or "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(processes or os.cpu_count() or 1, files // chunk))


@contextlib.contextmanager
def ingest_pool(upload_dir: Path, limits: IngestLimits, processes: int, files: int, chunk: int):
    """Yields a process pool, or None when the work is better done in this process."""
    size = pool_size(processes, files, chunk)
    if size == 1:
        yield None
        return
    with concurrent.futures.ProcessPoolExecutor(size, mp_context=mp.get_context("fork"), initializer=start_process,
                                                initargs=(upload_dir, limits)) as pool:
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def start_process(upload_dir: Path, limits: IngestLimits) -> None:
    die_with_parent()
    stack = contextlib.ExitStack()
    _opened.update(entries=stack.enter_context(upload_entries(upload_dir, limits)), stack=stack)


def opened_entries() -> list:
    """The upload's entries as this pool process opened them."""
    return _opened["entries"]


def chunked(items: list[T], size: int) -> list[list[T]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def map_in_order(pool, function: Callable, chunks: Iterable, *args) -> Iterator:
    """function(chunk, *args) for every chunk, results in order, in the pool or in this process."""
    if pool is None:
        return (function(chunk, *args) for chunk in chunks)
    chunks = list(chunks)
    return pool.map(function, chunks, *(itertools.repeat(arg, len(chunks)) for arg in args))

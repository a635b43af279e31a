"""What every benchmark shares: its size, how it prints its figures, how it says what the machine lacks.

`make bench` runs every bench/*.py at its full size. `make bench-smoke` (and CI, after the tests) runs every one
with BENCH_SMOKE=1: the smallest size that still goes through the whole benchmark, seconds each, so a change
that breaks a benchmark fails CI the day it is made. Smoke figures are no measurement (`"smoke": true` says so).
Files named _*.py, like this one, are helpers, not benchmarks: the Makefile's loops pass them by.
"""
import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

SMOKE = os.environ.get("BENCH_SMOKE", "") not in ("", "0")


def size(full, smoke):
    """`full`, or `smoke` under BENCH_SMOKE=1. What a command line gives explicitly still wins over both."""
    return smoke if SMOKE else full


def report(benchmark: str, figures: dict, indent: int | None = None) -> None:
    """The benchmark's figures as one JSON document on stdout, named; on one line (and marked) at the smoke size."""
    document = {"benchmark": benchmark, **figures, **({"smoke": True} if SMOKE else {})}
    print(json.dumps(document, indent=None if SMOKE else indent), flush=True)


def skip(benchmark: str, reason: str) -> NoReturn:
    """What the machine lacks (a GPU, a weights file, a server) is no failure: said as JSON, and exit 0."""
    report(benchmark, {"skipped": reason})
    sys.exit(0)


def scratch(prefix: str) -> Path:
    """A temporary folder, removed when the benchmark exits (CI runs every one on every change: nothing may pile up)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def own_test_database(connection, benchmark: str) -> None:
    """Before `create_test_db`: a test database of the benchmark's own, never the test suite's (test_<NAME> on a
    server, the var folder's test.sqlite3), which create_test_db(autoclobber=True) would otherwise drop under it."""
    from django.conf import settings

    test = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test["NAME"] = str(Path(settings.VAR_DIR) / f"test-bench-{benchmark}.sqlite3")
    else:
        test["NAME"] = f"bench_{benchmark}_{connection.settings_dict['NAME']}"[:63]


def median_request_ms(client, urls: dict[str, str], repeats: int) -> dict[str, float]:
    """Each named GET through Django's full stack (a test Client): one warm-up (first-request imports and query plans),
    then the median of `repeats` timed requests in milliseconds; any answer but 200 stops the benchmark."""
    import statistics
    import time

    timings = {}
    for name, url in urls.items():
        client.get(url)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            response = client.get(url)
            runs.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (url, response.status_code, response.content[:300])
        timings[name] = statistics.median(runs)
    return timings


def samples_per_second(step, steps: int, batch: int) -> float:
    """A training step's rate in samples a second: called once first (first-call costs), then `steps` times timed."""
    import time

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)

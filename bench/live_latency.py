"""Latency of live metrics: from the worker recording a point to each watching client receiving it; prints JSON.

Target (issue): 50 clients watching a run, real worker and real server: with Redis, median < 100 ms and
p99 < 500 ms; on the embedded defaults (SQLite, no Redis: the streams poll the database), median < 300 ms
and p99 < 1 s.

Each configuration runs in a process of its own (settings are read once): a throw-away toolkit (its own
TOOLKIT_VAR_DIR, a test database: SQLite, or DATABASE_URL's server in the Redis configuration when it is
set), one running training run, and the web server as `manage.py serve` starts it (uvicorn on webapp.asgi,
two workers, debug off). 50 clients (asyncio, raw HTTP/1.1) open the run's event stream with a token and
wait for its first state; then a separate process acts as the worker: the worker's own reporter
(workers.training.RunReporter) on the run's row writes an epoch's four points every EPOCH_SECONDS, with
the progress in between, and notes time.time() just after each point's write and wake-up. Each client
notes when each point event arrives; a latency is arrival minus recording, per point and client (one
machine, one clock). The writer finishes the run at the end, which ends every stream.

Usage: python bench/live_latency.py [--epochs N]   (Redis is measured when REDIS_URL is set or a Redis
answers at 127.0.0.1:6379; DATABASE_URL, when set, is used for the Redis configuration only, in a test database
of the bench's own). BENCH_SMOKE=1: 5 clients (BENCH_CLIENTS still wins), 4 epochs. A configuration that fails
is reported and makes the exit status 1.
"""
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import own_test_database, report, size  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", size(50, 5)))
EPOCHS = size(60, 4)
EPOCH_SECONDS = 0.25
TARGETS_MS = {"redis": {"median": 100, "p99": 500}, "embedded": {"median": 300, "p99": 1000}}
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else EPOCHS
    redis_url = os.environ.get("REDIS_URL") or (LOCAL_REDIS if reachable(6379) else "")
    modes = {"embedded": {"REDIS_URL": "", "DATABASE_URL": ""}}
    if redis_url:
        modes["redis"] = {"REDIS_URL": redis_url, "DATABASE_URL": os.environ.get("DATABASE_URL", "")}
    result = {"clients": CLIENTS, "points_per_client": epochs * 4, "cpus": os.cpu_count()}
    for mode, variables in modes.items():
        measured = subprocess.run([sys.executable, __file__, "--measure", mode, str(epochs)], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, **variables})
        if measured.returncode != 0:
            result[mode] = {"error": measured.stderr[-3000:]}
            continue
        figures = json.loads(measured.stdout.strip().splitlines()[-1])
        target = TARGETS_MS[mode]
        figures.update({"target_median_ms": target["median"], "target_p99_ms": target["p99"],
                        "meets_target": figures["median_ms"] < target["median"] and figures["p99_ms"] < target["p99"]})
        result[mode] = figures
    if not redis_url:
        result["redis"] = "not measured: no REDIS_URL and no Redis at 127.0.0.1:6379"
    report("live_latency", result)
    if any(isinstance(figures, dict) and "error" in figures for figures in result.values()):
        sys.exit(1)


# --- one configuration, in a process of its own ---------------------------------------------------------

def throwaway_environment(folder: Path) -> None:
    os.environ.update({"TOOLKIT_VAR_DIR": str(folder / "var"), "TOOLKIT_STORAGE_DIR": str(folder / "storage"),
                       "TOOLKIT_QUEUE_PREFIX": f"bench{os.getpid()}-", "DJANGO_SETTINGS_MODULE": "webapp.settings",
                       "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "DJANGO_SECURE_SSL_REDIRECT": "0"})
    for name in ("REDIS_URL", "DATABASE_URL"):
        if not os.environ.get(name):
            os.environ.pop(name, None)


def database_url() -> str:
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    auth = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    return f"postgres://{auth}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{params['NAME']}"


def a_running_run() -> tuple[int, str]:
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun
    from tests.factories import ready_dataset, training_spec

    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    project = Project.objects.create(owner=user, name="Bench")
    partition = create_partition(user, ready_dataset(project, per_class=6), "", 75, 25, 0, 1)  # 6 patients: whole ones give 4/2/0, and an empty test subset is refused
    run = TrainingRun.objects.create(project=project, partition=partition, name="watched", spec=training_spec(epochs=EPOCHS),
                                     status="running", started_at=timezone.now())
    return run.pk, Token.objects.create(user=user).key


def start_server(folder: Path, environment: dict) -> tuple[subprocess.Popen, int]:
    from backend.core.management.commands.serve import web_server_command

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(folder / "web.log", "w") as log:
        server = subprocess.Popen(web_server_command("127.0.0.1", str(port)), cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not reachable(port):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not start: {(folder / 'web.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return server, port


async def watch(port: int, run_id: int, token: str, ready: asyncio.Event, arrivals: dict, waiting: list) -> None:
    """One client: the run's event stream over raw HTTP/1.1 (chunked), noting when each point arrives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/runs/{run_id}/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                 f"Authorization: Token {token}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"the stream answered {head[:200]!r}")
    text, started = "", False
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            break
        chunk = (await reader.readexactly(size + 2))[:-2]
        arrived = time.time()
        text += chunk.decode()
        *blocks, text = text.split("\n\n")
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
            if fields.get("event") == "status" and not started:
                started = True
                waiting.pop()
                if not waiting:
                    ready.set()
            elif fields.get("event") == "point":
                arrivals.setdefault(json.loads(fields["data"])["id"], []).append(arrived)
    writer.close()


async def watch_while_written(port: int, run_id: int, token: str, epochs: int, environment: dict) -> tuple[dict, dict]:
    arrivals: dict[int, list[float]] = {}
    ready, waiting = asyncio.Event(), [None] * CLIENTS
    clients = [asyncio.create_task(watch(port, run_id, token, ready, arrivals, waiting)) for _ in range(CLIENTS)]
    await asyncio.wait_for(ready.wait(), 120)
    writer = await asyncio.create_subprocess_exec(sys.executable, __file__, "--write", str(run_id), str(epochs), cwd=ROOT, env=environment,
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await writer.communicate()
    if writer.returncode != 0:
        raise RuntimeError(f"the writer failed: {err.decode()[-2000:]}")
    await asyncio.wait_for(asyncio.gather(*clients), 120)
    recorded = {int(pk): at for pk, at in json.loads(out.decode().strip().splitlines()[-1]).items()}
    return recorded, arrivals


def measure(mode: str, epochs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="toolkit-live-latency-"))
    throwaway_environment(folder)
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from backend.core.notify import POLL_SECONDS

    own_test_database(connection, "live_latency")
    test_database = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = None
    try:
        run_id, token = a_running_run()
        environment = {**os.environ, "DATABASE_URL": database_url()}
        server, port = start_server(folder, environment)
        recorded, arrivals = asyncio.run(watch_while_written(port, run_id, token, epochs, environment))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        connection.close()
        connection.creation.destroy_test_db(test_database, verbosity=0)
        shutil.rmtree(folder, ignore_errors=True)
    latencies = sorted((at - recorded[pk]) * 1000 for pk, times in arrivals.items() for at in times)
    missing = sum(CLIENTS - len(arrivals.get(pk, [])) for pk in recorded)
    print(json.dumps({
        "median_ms": round(statistics.median(latencies), 1), "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
        "max_ms": round(latencies[-1], 1), "mean_ms": round(statistics.fmean(latencies), 1), "deliveries": len(latencies),
        "missing_deliveries": missing, "database": connection.vendor, "wake_up": "redis publish" if settings.REDIS_URL else f"database poll every {int(1000 * POLL_SECONDS)} ms",
    }))


def write(run_id: int, epochs: int) -> None:
    """The worker's part: its reporter writes each epoch's points as training does, with progress between epochs."""
    import django

    django.setup()
    from backend.runs.models import MetricPoint, TrainingRun
    from workers.jobs import finish
    from workers.training import RunReporter

    reporter = RunReporter(TrainingRun.objects.get(pk=run_id))
    recorded = {}
    for epoch in range(1, epochs + 1):
        reporter.progress(epoch, epochs, f"epoch {epoch}")
        for subset in ("train", "validation"):
            for name, value in (("loss", 1.0 / epoch), ("accuracy", 1 - 0.5 / epoch)):
                reporter.metric(epoch, subset, name, value)
                written = time.time()  # the point is in the database and its wake-up sent
                recorded[MetricPoint.objects.get(run_id=run_id, epoch=epoch, subset=subset, name=name).pk] = written
        time.sleep(EPOCH_SECONDS)
    finish(TrainingRun, run_id, TrainingRun.Status.SUCCEEDED, "Finished.")
    print(json.dumps(recorded))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--write"]:
        write(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()

import io
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from PIL import Image

from workers.engine.demo import demo_image

ROOT = Path(__file__).resolve().parent.parent


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def demo_entries(per_class: int = 20, seed: int = 0, size: int = 64) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        f"{label}/{label}_{i:03d}.png": png_bytes(demo_image(rng, label == "lesion", size))
        for label in ("lesion", "normal") for i in range(per_class)
    }


class LiveRequests:
    """The requests the live server (pytest-django's, in this process) is answering now, by thread. A request
    ends when Django sends request_finished: for a stream, once its body is closed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answering: dict[int, str] = {}

    def started(self, sender, environ=None, **kwargs):
        if threading.current_thread() is not threading.main_thread():  # the tests' own client calls are not the server's
            with self.lock:
                self.answering[threading.get_ident()] = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"

    def finished(self, sender, **kwargs):
        with self.lock:
            self.answering.pop(threading.get_ident(), None)

    def outstanding(self) -> list[str]:
        with self.lock:
            return sorted(self.answering.values())

    def where(self) -> str:
        """Where each thread still answering is waiting: the stacks that name the cause of a slow teardown."""
        frames = sys._current_frames()
        with self.lock:
            answering = dict(self.answering)
        return "\n".join(f"{request}:\n" + "".join(traceback.format_stack(frames[ident])) for ident, request in answering.items() if ident in frames)


LIVE_REQUESTS = LiveRequests()


@pytest.fixture(autouse=True)
def live_server_finishes_before_the_flush(request):
    """A test with the live server ends only once the server has answered every request of its pages: the
    page is closed first (the `page` fixture is set up after this one), then the server's streams are ended
    and its requests awaited. Only then does pytest-django empty the database (set up before this fixture,
    so torn down after it): a request still reading or writing then would deadlock the flush, or leave rows
    behind for the next test."""
    if "live_server" not in request.fixturenames:
        yield
        return
    from django.core import signals

    from backend.core.sse import end_wsgi_streams

    request.getfixturevalue("transactional_db")
    signals.request_started.connect(LIVE_REQUESTS.started, dispatch_uid="live-requests-started")
    signals.request_finished.connect(LIVE_REQUESTS.finished, dispatch_uid="live-requests-finished")
    yield
    deadline = time.monotonic() + 120
    while True:
        end_wsgi_streams()
        outstanding = LIVE_REQUESTS.outstanding()
        if not outstanding:
            return
        if time.monotonic() > deadline:
            # Seen once in 3 loaded rounds: a stream that did not end within 120 s. Say so and let the flush go on
            # (what the old teardown always did); database_left_empty keeps the next test clean if it fails.
            warnings.warn(f"The live server was still answering {outstanding} 120 s after the test ended:\n{LIVE_REQUESTS.where()}", stacklevel=1)
            return
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def database_left_empty(request):
    """A transactional test starts on an empty database even when the previous test's flush failed (that
    test reports its own error; this one must not fail for it)."""
    marker = request.node.get_closest_marker("django_db")
    transactional = ("transactional_db" in request.fixturenames or "live_server" in request.fixturenames
                     or bool(marker and marker.kwargs.get("transaction")))
    if transactional:
        request.getfixturevalue("transactional_db")
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from backend.projects.models import Project

        if get_user_model().objects.exists() or Project.objects.exists():
            call_command("flush", interactive=False, verbosity=0)
    yield


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path):
    """Each test stores files in its own folder: ids are reused between tests, folders must not be."""
    settings.STORAGE_ROOT = settings.MEDIA_ROOT = tmp_path / "storage"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("mallory", password="mallory-password-1")


@pytest.fixture
def api(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def project(user):
    from backend.projects.models import Project

    return Project.objects.create(owner=user, name="Chest")


def database_url() -> str:
    """The URL of the database the tests are using now (the test database, not the configured one)."""
    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    auth = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    return f"postgres://{auth}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{params['NAME']}"


def worker_environment(**overrides: str) -> dict:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "webapp.test_settings",
        "DATABASE_URL": database_url(),
        "TOOLKIT_VAR_DIR": str(settings.VAR_DIR),
        "TOOLKIT_STORAGE_DIR": str(settings.STORAGE_ROOT),
        "TOOLKIT_QUEUE_PREFIX": settings.QUEUE_PREFIX,
        "PYTHONUNBUFFERED": "1",
    })
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(overrides)
    return env


def start_worker(log_path: Path, name: str = "worker", **environment: str) -> subprocess.Popen:
    """Start `manage.py runworker` (a real `celery worker`) and wait for its first heartbeat.
    `name` makes its host name (name@host); `environment` overrides settings' variables."""
    from backend.core.models import WorkerHeartbeat

    WorkerHeartbeat.objects.filter(hostname__startswith=f"{name}@").delete()
    log = open(log_path, "a")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runworker", "--loglevel", "INFO", "--name", name],
        cwd=ROOT, env=worker_environment(**environment), stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 90
    while not WorkerHeartbeat.objects.filter(hostname__startswith=f"{name}@").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("The Celery worker did not start:\n" + log_path.read_text()[-4000:])
        time.sleep(0.3)
    process.log_path = log_path
    return process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_web_server(log_path: Path, port: int | None = None, **environment: str) -> subprocess.Popen:
    """Start the web server as `manage.py serve` does (uvicorn on webapp.asgi, two workers) on the test
    database, and wait until it answers; `process.url` is its address. `environment` overrides settings'
    variables (REDIS_URL="" makes it a server of the embedded defaults: its streams poll the database)."""
    from backend.core.management.commands.serve import web_server_command

    port = port or free_port()
    log = open(log_path, "a")
    process = subprocess.Popen(web_server_command("127.0.0.1", str(port)), cwd=ROOT, env=worker_environment(**environment),
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    process.url = f"http://127.0.0.1:{port}"
    process.log_path = log_path
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{process.url}/accounts/login/", timeout=5).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                pytest.fail("The web server did not start:\n" + log_path.read_text()[-4000:])
            time.sleep(0.2)


def stop_process(process: subprocess.Popen, grace: float = 30) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real `celery worker` process on the configured broker, using the test database."""
    process = start_worker(tmp_path / "worker.log")
    yield process
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_for(predicate, timeout: float, message: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"Timed out after {timeout:.0f} s: {message}")

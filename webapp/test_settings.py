"""Settings for the test suite: the real settings, with storage, SQLite file and queue
names of this test run's own, so tests never meet a running toolkit's data or jobs.
A worker process started by a test gets the same values through its environment."""
import os
import tempfile

os.environ.setdefault("TOOLKIT_VAR_DIR", tempfile.mkdtemp(prefix="toolkit-test-"))
os.environ.setdefault("TOOLKIT_QUEUE_PREFIX", f"test{os.getpid()}-")

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

"""Asking the engine a short question from the web tier: in a child process, so torch never loads into a
web worker (tests/integration/test_web_imports.py). A question costs about 2-4 s of torch import; answers
that are asked often are cached by the caller."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

from django.conf import settings

from .errors import ServiceError

log = logging.getLogger(__name__)


def ask_engine(name: str, timeout: float = 120.0, crash_message: str | None = None, **arguments) -> dict:
    """The engine's answer to question `name`; a refusal becomes a 400 whose message is the engine's.

    `crash_message`: for questions about an uploaded file, the 400 to answer when the child is killed by a signal
    (a C parser crashing on a hostile file takes only the child with it); without it that is a server error."""
    try:
        done = subprocess.run([sys.executable, "-m", "workers.engine.call", name], input=json.dumps(arguments),
                              capture_output=True, text=True, timeout=timeout, cwd=settings.BASE_DIR)
    except subprocess.TimeoutExpired as expired:
        raise ServiceError(f"The model check took longer than {timeout:.0f} s; try again, or a smaller model.",
                           code="engine_timeout", status_code=503) from expired
    if done.returncode < 0 and crash_message:
        log.warning("engine question %s died (signal %d): %s", name, -done.returncode, done.stderr[-2000:])
        raise ServiceError(crash_message, field=arguments.get("field"))
    if done.returncode != 0:
        raise RuntimeError(f"engine question {name} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    if "error" in answer:
        raise ServiceError(answer["error"], field=arguments.get("field"))
    return answer

"""`make run`'s supervisor keeps the worker alive and stops when the web server exits (real processes)."""
import logging
import os
import signal
import sys
import time

from backend.core.supervision import Child, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def run_until(supervisor: Supervisor, predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not supervisor.step():
            return False
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("the supervisor did not get there in time")


def test_a_worker_that_dies_is_started_again_with_a_line_in_the_log(caplog):
    worker = Child("worker", SLEEPER, restart=True, first_backoff=0.2)
    supervisor = Supervisor([Child("web server", SLEEPER, restart=False), worker])
    supervisor.start()
    try:
        first = worker.process.pid
        os.kill(first, signal.SIGKILL)
        with caplog.at_level(logging.WARNING):
            assert run_until(supervisor, lambda: worker.process.pid != first and worker.exited() is None)
        assert worker.restarts == 1
        assert "the worker exited with signal 9; starting it again in 0 s" in caplog.text
        assert "starting the worker again (restart 1)" in caplog.text
    finally:
        supervisor.stop(grace=5)


def test_the_back_off_doubles_while_the_worker_keeps_dying_and_resets_once_it_stayed_up():
    child = Child("worker", SLEEPER, restart=True, first_backoff=1, longest_backoff=8, stable_after=60)
    child.started_at = 0.0
    waits = []
    for now in (1.0, 3.0, 7.0, 15.0, 24.0):  # each crash a few seconds after its restart
        waits.append(child.schedule_restart(now))
        child.started_at = now + waits[-1]
    assert waits == [1, 2, 4, 8, 8]
    assert child.schedule_restart(child.started_at + 120) == 1, "up for two minutes: the next crash is a first one"


def test_when_the_web_server_exits_everything_stops_and_says_why():
    web = Child("web server", [sys.executable, "-c", "raise SystemExit(3)"], restart=False)
    worker = Child("worker", SLEEPER, restart=True)
    supervisor = Supervisor([web, worker])
    supervisor.start()
    try:
        web.process.wait(timeout=20)
        assert supervisor.step() is False
        assert supervisor.stopped_because == "the web server exited with exit code 3"
    finally:
        supervisor.stop(grace=5)
    assert worker.exited() is not None, "the worker goes with it"

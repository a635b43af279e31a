"""Keeping the processes of a one-machine toolkit alive (`manage.py serve`, which `make run` starts).

The web server and the worker run side by side. A worker that dies (killed for memory, a crash in
a native library) is started again after a back-off that doubles while it keeps dying and resets
once it has stayed up; the web server is not restarted: if it exits, the toolkit stops, saying why.
"""
from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    command: list[str]
    restart: bool  # start it again when it exits; otherwise its exit stops everything
    first_backoff: float = 1.0
    longest_backoff: float = 60.0
    stable_after: float = 60.0  # seconds up after which a crash counts as a first one again
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.started_at = time.monotonic()
        self.restart_at = None

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self, now: float) -> float:
        """When it should start again: back off while it keeps dying soon after a start."""
        if now - self.started_at >= self.stable_after:
            self.backoff = 0.0
        self.backoff = self.first_backoff if not self.backoff else min(self.backoff * 2, self.longest_backoff)
        self.restart_at = now + self.backoff
        return self.backoff


@dataclass
class Supervisor:
    children: list[Child]
    poll_seconds: float = 0.5
    stopping: list[bool] = field(default_factory=list)
    stopped_because: str = ""

    def start(self) -> None:
        for child in self.children:
            child.start()

    def step(self, now: float | None = None) -> bool:
        """One look at the children; False once the toolkit must stop."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    log.warning("starting the %s again (restart %d)", child.name, child.restarts)
                    child.start()
                continue
            code = child.exited()
            if code is None:
                continue
            if not child.restart:
                self.stopped_because = f"the {child.name} exited with {describe(code)}"
                return False
            wait = child.schedule_restart(now)
            log.warning("the %s exited with %s; starting it again in %.0f s", child.name, describe(code), wait)
        return True

    def run(self) -> None:
        self.start()
        try:
            while not self.stopping and self.step():
                time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            pass
        self.stop()

    def stop(self, grace: float = 30.0) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()


def describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit code {code}"

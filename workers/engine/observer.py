"""The one interface through which long engine work reports to its caller."""
from typing import Protocol


class JobObserver(Protocol):
    def progress(self, done: int, total: int, message: str = "") -> None:
        """Called as work advances; `done` of `total` units are finished."""

    def metric(self, epoch: int, subset: str, name: str, value: float) -> None:
        """Called once per epoch and subset for each metric (loss, accuracy ...)."""

    def should_stop(self) -> bool:
        """Polled between units of work; True asks the engine to stop cleanly."""

    def log(self, message: str) -> None:
        """A line for the job's log, which its page shows (what happened, in words)."""


class JobStopped(Exception):
    """Raised by engine work that was asked to stop and has nothing worth keeping."""


class JobFault(Exception):
    """A fault of the job itself, not of any one input (the disk is full, the processes doing
    the work cannot run): the job ends. The message says what happened and what to do, for a
    person to read."""


class SilentObserver:
    """An observer that records metrics in memory and never asks to stop."""

    def __init__(self):
        self.metrics: list[tuple[int, str, str, float]] = []
        self.last_progress: tuple[int, int] = (0, 0)
        self.lines: list[str] = []

    def progress(self, done, total, message=""):
        self.last_progress = (done, total)

    def metric(self, epoch, subset, name, value):
        self.metrics.append((epoch, subset, name, value))

    def should_stop(self):
        return False

    def log(self, message):
        self.lines.append(message)

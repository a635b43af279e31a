"""The worker's JobObserver: writes progress and metrics to the database, reads the stop flag."""
from __future__ import annotations

import time

from django.db.models import Model


class DatabaseObserver:
    """Reports engine progress on a row with progress_done/progress_total/stop_requested.

    Progress writes and stop-flag reads are throttled: one query per `interval`
    seconds at most, so per-batch calls cost nothing noticeable.
    """

    def __init__(self, row: Model, interval: float = 0.5, has_message: bool = True):
        self.model = type(row)
        self.pk = row.pk
        self.interval = interval
        self.has_message = has_message
        self._last_write = 0.0
        self._last_check = 0.0
        self._stop = False

    def progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self._last_write < self.interval:
            return
        self._last_write = now
        fields = {"progress_done": done, "progress_total": total}
        if self.has_message:
            fields["progress_message"] = message[:200]
        self.model.objects.filter(pk=self.pk).update(**fields)

    def metric(self, epoch: int, subset: str, name: str, value: float) -> None:
        pass

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_check >= self.interval:
            self._last_check = now
            self._stop = self.model.objects.filter(pk=self.pk, stop_requested=True).exists()
        return self._stop


class RunObserver(DatabaseObserver):
    """Also stores each metric point as it comes, so charts update while the run goes on."""

    def metric(self, epoch: int, subset: str, name: str, value: float) -> None:
        from backend.runs.models import MetricPoint

        MetricPoint.objects.update_or_create(
            run_id=self.pk, epoch=epoch, subset=subset, name=name, defaults={"value": float(value)}
        )

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """A Celery worker that is (or was recently) online, and what it can do."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    gpu_count = models.PositiveIntegerField(default=0)
    gpu_names = models.JSONField(default=list)
    cpu_count = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    @classmethod
    def online(cls):
        horizon = timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
        return cls.objects.filter(last_seen__gte=horizon)

    @classmethod
    def queue_is_served(cls, logical_queue: str) -> bool:
        from .tasks import queue_name

        return any(queue_name(logical_queue) in worker.queues for worker in cls.online())


class DoneStatus(models.TextChoices):
    """The lifecycle's words for a job whose good end is plainly "done" (a learning-rate search, an evaluation, an
    explanation): one set of choices, so their status means the same in the database, the API and the pages."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    STOPPED = "stopped", "Stopped"


class Job(models.Model):
    """What every long piece of work has: ingests, merges, preprocessing, tables of measures, training, learning-rate searches.

    The database is the truth about a job; the broker only carries "go". A worker claims a
    queued job with a conditional update, writes a heartbeat while it works, and finishes it;
    a job whose worker fell silent is recovered by the next worker (workers/jobs.py).

    One lifecycle, queued -> running -> done | failed | stopped, in each kind's own words: a kind
    may name its states differently (a dataset is "ingesting", a run "succeeded") by giving its own
    `Status` and the class attributes below; code that drives jobs uses only those attributes.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    QUEUED = Status.QUEUED
    RUNNING = Status.RUNNING
    DONE = Status.READY
    FAILED = Status.FAILED
    STOPPED = Status.STOPPED

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    message = models.TextField(blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_message = models.CharField(max_length=200, blank=True)
    stop_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker has started this job.")
    worker = models.CharField(max_length=255, blank=True, help_text="The worker that runs (or ran) the job.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="When its worker last said it was alive.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @classmethod
    def active_statuses(cls) -> tuple[str, str]:
        return (cls.QUEUED, cls.RUNNING)

    @classmethod
    def finished_statuses(cls) -> tuple[str, str, str]:
        return (cls.DONE, cls.FAILED, cls.STOPPED)

    @property
    def is_finished(self) -> bool:
        return self.status in self.finished_statuses()

    @property
    def progress(self) -> float:
        if self.status == self.DONE:
            return 1.0
        return min(1.0, self.progress_done / self.progress_total) if self.progress_total else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far; None until there is a pace to go by."""
        if self.status != self.RUNNING or self.stop_requested or not self.started_at or not self.progress_done or not self.progress_total:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return round(max(0.0, elapsed * (self.progress_total - self.progress_done) / self.progress_done), 1)

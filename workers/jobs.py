"""The workers' half of the one job lifecycle: claim, heartbeat, report, finish, recover.

Every kind of job (ingest, merge, preprocessing, table of measures, training, rate search) is a `JobRunner`
that says how to do its work and what to throw away when it ends early; the lifecycle around
the work is written once here:

  queued --claim--> running --work--> ready
                       |  stop asked    --> stopped (partial results discarded)
                       |  a job fault   --> failed  (the fault's own message: disk full, database gone)
                       |  anything else --> failed  (the exception's class; the worker log has the rest)
                       '- worker silent --> recovered by the next worker: queued again, or failed,
                                            as the kind decides (`on_worker_lost`)

A claim is a conditional update (queued -> running), so a task delivered twice (a broker
redelivery after its visibility timeout, a requeue) never starts the same job twice. While the
work runs, a thread writes the job's heartbeat; a worker killed outright stops writing it, and
any worker's periodic sweep (`recover_stale_jobs`) finds the job once it has been silent for
`JOB_STALE_SECONDS`.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from backend.core import notify
from backend.core.models import Job
from backend.core.tasks import send_after_commit
from workers.engine.observer import JobFault, JobStopped

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a job whose worker dies this often is failed rather than tried again (a crash loop)


class JobReporter:
    """The engine's JobObserver on a job row: progress and the stop flag, throttled to one query per
    `interval` seconds, so per-batch calls cost nothing noticeable. Each write wakes the pages watching
    the job (`changed`)."""

    def __init__(self, job: Job, interval: float = 0.5):
        self.model = type(job)
        self.pk = job.pk
        self.channel = notify.channel_for(self.model, self.pk)
        self.interval = interval
        self._last_write = 0.0
        self._last_check = 0.0
        self._stop = False

    def progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self._last_write < self.interval:
            return
        self._last_write = now
        self.model.objects.filter(pk=self.pk).update(
            progress_done=done, progress_total=total, progress_message=message[:200], heartbeat_at=timezone.now())
        self.changed()

    def changed(self) -> None:
        """Wake the live pages watching this job: call it after each write they show."""
        notify.publish(self.channel)

    def metric(self, epoch: int, subset: str, name: str, value: float) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_check >= self.interval:
            self._last_check = now
            self._stop = self.model.objects.filter(pk=self.pk, stop_requested=True).exists()
        return self._stop


def claim(model: type[Job], pk: int, hostname: str) -> Job | None:
    """Take a queued job; None when it is running elsewhere, finished, stopped or gone."""
    now = timezone.now()
    claimed = model.objects.filter(pk=pk, status=model.QUEUED).update(
        status=model.RUNNING, worker=hostname, heartbeat_at=now, attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), Value(now, output_field=DateTimeField())), message="")
    if not claimed:
        return None
    notify.publish(notify.channel_for(model, pk))
    return model.objects.get(pk=pk)


def finish(model: type[Job], pk: int, status: str, message: str, **fields) -> None:
    model.objects.filter(pk=pk).update(status=status, message=message, finished_at=timezone.now(), **fields)
    notify.publish(notify.channel_for(model, pk))


def heartbeat_interval() -> float:
    return max(0.5, min(settings.WORKER_HEARTBEAT_SECONDS, settings.JOB_STALE_SECONDS / 4))


@contextlib.contextmanager
def heartbeat(model: type[Job], pk: int):
    """Writes the job's heartbeat from a thread while the block runs: work with long silent stretches
    (one slow file, a long epoch) still says its worker is alive."""
    done = threading.Event()

    def beat():
        while not done.wait(heartbeat_interval()):
            try:
                model.objects.filter(pk=pk, status=model.RUNNING).update(heartbeat_at=timezone.now())
            except DatabaseError:
                log.warning("could not write the heartbeat of %s %s", model.__name__, pk)
        connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


class JobRunner:
    """One kind of job. Subclasses set `model`, `task` and `queue`, and write `work`."""

    model: type[Job]
    task: str  # the Celery task name that runs it
    queue: str  # the logical queue it is sent to
    noun = "job"  # how messages name it: "The ingest failed unexpectedly ..."
    stopped_message = "Stopped by the user; nothing was kept."

    def work(self, job: Job, reporter: JobReporter) -> None:
        """Do the job and finish it (`self.finish(job, job.DONE, ...)`); raise JobStopped when asked to stop."""
        raise NotImplementedError

    def owns(self, job: Job) -> bool:
        """Whether a row of `model` is this kind's job (several kinds can share a model: datasets)."""
        return True

    def reporter(self, job: Job) -> JobReporter:
        return JobReporter(job)

    def discard(self, job: Job, status: str) -> None:
        """Throw away what a job that ended early (stopped or failed) left behind; nothing by default."""

    def finish(self, job: Job, status: str, message: str, **fields) -> None:
        finish(self.model, job.pk, status, message, **fields)

    def run(self, pk: int, hostname: str) -> None:
        job = claim(self.model, pk, hostname)
        if job is None:
            log.info("%s %s is not queued (running elsewhere, finished or gone); this delivery is skipped", self.noun, pk)
            return
        if job.stop_requested:
            self.end(job, job.STOPPED, "Stopped before it started.")
            return
        with heartbeat(self.model, pk):
            reporter = self.reporter(job)
            try:
                self.work(job, reporter)
                reporter.changed()  # the work wrote its own ending (done, with its results)
            except JobStopped:
                self.end(job, job.STOPPED, self.stopped_message)
            except JobFault as fault:
                log.error("%s %s ended by a fault of the job: %s", self.noun, pk, fault)
                self.end(job, job.FAILED, str(fault))
            except DatabaseError as exc:
                log.exception("%s %s lost the database", self.noun, pk)
                if not connection.in_atomic_block:
                    connection.close()  # the next query opens a new connection, if the database is back
                self.end(job, job.FAILED, f"The {self.noun} stopped because the database could not be reached "
                                             f"({type(exc).__name__}); start it again once the database is back.")
            except Exception as exc:
                log.exception("%s %s failed", self.noun, pk)
                self.end(job, job.FAILED, self.failure_message(exc))

    def failure_message(self, exc: Exception) -> str:
        return f"The {self.noun} failed unexpectedly ({type(exc).__name__}). Nothing was kept; the worker log has the details."

    def end(self, job: Job, status: str, message: str) -> None:
        """A job that did not finish its work: discard what it left, then say why it ended. When the
        database itself is gone this cannot be written; the recovery sweep finds the job later."""
        try:
            self.discard(job, status)
            self.finish(job, status, message)
        except DatabaseError:
            log.exception("could not record the end of %s %s", self.noun, job.pk)

    def on_worker_lost(self, job: Job) -> str:
        """Its worker fell silent while it ran: queue it again (the work resumes or restarts), up to a
        limit. Returns what was done, for the log."""
        if job.attempts >= MAX_ATTEMPTS:
            self.finish(job, job.FAILED, f"The worker running this stopped {job.attempts} times; it is not tried again. "
                                         "The worker log says why (often memory); start it again once that is fixed.")
            return f"failed after {job.attempts} attempts"
        self.requeue(job, "Starting again: its worker restarted while it ran this." if restarted(job)
                     else "Starting again after the worker stopped.")
        return f"queued again (attempt {job.attempts + 1} of {MAX_ATTEMPTS})"

    def requeue(self, job: Job, message: str) -> None:
        self.model.objects.filter(pk=job.pk).update(status=job.QUEUED, worker="", message=message)
        notify.publish(notify.channel_for(self.model, job.pk))
        send_after_commit(self.task, job.pk, self.queue_of(job))

    def queue_of(self, job: Job) -> str:
        """The logical queue a job is sent to again: its own where jobs are routed one by one (runs and rate
        searches by their resources, in a `queue` field), else its kind's."""
        return getattr(job, "queue", "") or self.queue


RUNNERS: list[JobRunner] = []


def register(runner: JobRunner) -> JobRunner:
    RUNNERS.append(runner)
    return runner


def stale_before():
    return timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)


def recover_stale_jobs(hostname: str, starting: bool) -> int:
    """Hands every job whose worker is gone to its kind's `on_worker_lost`: ours from before a restart
    (`starting`), or any silent for longer than JOB_STALE_SECONDS. The conditional update on the
    heartbeat makes sure two workers sweeping at once recover a job once."""
    recovered = 0
    for model in dict.fromkeys(runner.model for runner in RUNNERS):
        for job in model.objects.filter(status=model.RUNNING):
            mine = starting and job.worker == hostname
            silent = job.heartbeat_at is None or job.heartbeat_at < stale_before()
            if (mine or silent) and take_over(job):
                runner = runner_for(job)
                job.lost_by_restart = mine  # what on_worker_lost and the log say: this worker restarted, or one fell silent
                outcome = runner.on_worker_lost(job)
                if mine:
                    log.warning("%s %s was running on this worker (%s) before it restarted; %s", runner.noun, job.pk, hostname, outcome)
                else:
                    log.warning("%s %s: its worker %s stopped responding (no heartbeat for over %d s); %s", runner.noun, job.pk,
                                job.worker or "(unknown)", settings.JOB_STALE_SECONDS, outcome)
                recovered += 1
    return recovered


def restarted(job: Job) -> bool:
    """Whether the job is recovered because its own worker restarted (recover_stale_jobs at the worker's start), rather
    than because its worker fell silent: the words then say so (a restart is no failure of the job)."""
    return bool(getattr(job, "lost_by_restart", False))


def take_over(job: Job) -> bool:
    """Only one sweeping worker wins a silent job: the update succeeds if its heartbeat is still the one seen."""
    return bool(type(job).objects.filter(pk=job.pk, status=job.RUNNING, heartbeat_at=job.heartbeat_at).update(
        heartbeat_at=timezone.now()))


def runner_for(job: Job) -> JobRunner:
    return next(runner for runner in RUNNERS if isinstance(job, runner.model) and runner.owns(job))

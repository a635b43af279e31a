"""The backend's half of the one job lifecycle: the fields every job shows, stopping, and deleting.

The workers' half (claim, heartbeat, finish, recovery) is workers/jobs.py; the states are
backend.core.models.Job's.
"""
from django.utils import timezone
from rest_framework import serializers

from . import notify
from .errors import ServiceError
from .models import Job

JOB_FIELDS = ["status", "message", "progress", "progress_done", "progress_total", "progress_message", "eta_seconds",
              "finished", "stop_requested", "attempts", "worker", "started_at", "finished_at"]


class JobSerializer(serializers.ModelSerializer):
    """A job's state as every page and script sees it; subclasses list JOB_FIELDS among their fields."""

    progress = serializers.FloatField(read_only=True, help_text="Fraction done, 0 to 1.")
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True, help_text="Seconds left at the pace so far; null until known.")
    finished = serializers.BooleanField(source="is_finished", read_only=True,
                                        help_text="True once the job has ended (done, failed or stopped): nothing about it changes any more.")


STOPPED_AT_ONCE = "stopped"
ASKED_TO_STOP = "asked"


def stop(job: Job) -> str:
    """A queued job stops at once (STOPPED_AT_ONCE: no worker will see it, so the caller discards
    what it had); a running one is asked to (ASKED_TO_STOP) and its worker ends it after the current
    unit of work. "" when the job had already finished."""
    model = type(job)
    if model.objects.filter(pk=job.pk, status=job.QUEUED).update(status=job.STOPPED, stop_requested=True,
                                                                  message="Stopped before it started.", finished_at=timezone.now()):
        outcome = STOPPED_AT_ONCE
    elif model.objects.filter(pk=job.pk, status=job.RUNNING).update(stop_requested=True):
        outcome = ASKED_TO_STOP
    else:
        return ""
    notify.publish(notify.channel_for(model, job.pk))  # the pages watching it show "Stopping…" or "Stopped"
    return outcome


def require_stoppable(job: Job, what: str) -> None:
    if job.is_finished:
        raise ServiceError(f"This {what} has already ended ({job.get_status_display().lower()}); there is nothing to stop.",
                           code="conflict", status_code=409)


def require_finished(job: Job, what: str) -> None:
    """Deleting a job's object while a worker writes into it would leave the worker writing into nothing."""
    if not job.is_finished:
        raise ServiceError(f"A worker is still working on this {what}; stop it first, then delete it.", code="conflict", status_code=409)

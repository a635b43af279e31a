"""Sending jobs to the workers, by task name: the backend never imports worker code."""
from django.conf import settings
from django.db import transaction

from webapp.celery import app

INGEST_QUEUE = "ingest"
TRAIN_QUEUES = {"cpu": "train-cpu", "gpu": "train-gpu"}


def queue_name(logical: str) -> str:
    """The broker queue for a logical queue; the prefix lets several toolkits (or a test run) share one broker."""
    return settings.QUEUE_PREFIX + logical


def send_after_commit(task_name: str, object_id: int, logical_queue: str) -> None:
    """Queue the job once the row it reads is committed, so the worker always finds it."""
    queue = queue_name(logical_queue)
    transaction.on_commit(lambda: app.send_task(task_name, args=[object_id], queue=queue))

"""Sending jobs to the workers, by task name: the backend never imports worker code."""
from django.db import transaction

from webapp.celery import app

INGEST_QUEUE = "ingest"
TRAIN_QUEUES = {"cpu": "train-cpu", "gpu": "train-gpu"}


def send_after_commit(task_name: str, object_id: int, queue: str) -> None:
    """Queue the job once the row it reads is committed, so the worker always finds it."""
    transaction.on_commit(lambda: app.send_task(task_name, args=[object_id], queue=queue))

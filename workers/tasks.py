"""Celery tasks: thin entry points that take ids and hand over to the job modules.

Tasks are acknowledged late and are safe to run twice: a redelivered ingest
starts clean, and a redelivered run that is no longer queued is skipped.
"""
from celery import shared_task


@shared_task(name="workers.tasks.ingest_dataset")
def ingest_dataset(dataset_id: int) -> None:
    from .ingest import run_ingest

    run_ingest(dataset_id)


@shared_task(name="workers.tasks.train_run")
def train_run(run_id: int) -> None:
    from .training import run_training

    run_training(run_id)

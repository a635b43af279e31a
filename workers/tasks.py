"""Celery tasks: thin entry points that take ids and hand over to the job modules.

Tasks are acknowledged late and are safe to run twice: a redelivered ingest
resumes from its journal, and a redelivered run that is no longer queued is skipped.
"""
from celery import shared_task


@shared_task(name="workers.tasks.ingest_dataset", bind=True)
def ingest_dataset(self, dataset_id: int) -> None:
    from .ingest import run_ingest

    run_ingest(dataset_id, hostname=self.request.hostname or "")


@shared_task(name="workers.tasks.train_run")
def train_run(run_id: int) -> None:
    from .training import run_training

    run_training(run_id)


@shared_task(name="workers.tasks.merge_datasets", bind=True)
def merge_datasets(self, dataset_id: int) -> None:
    from .merge import run_merge

    run_merge(dataset_id, hostname=self.request.hostname or "")


@shared_task(name="workers.tasks.preprocess_dataset", bind=True)
def preprocess_dataset(self, dataset_id: int) -> None:
    from .preprocess import run_preprocess

    run_preprocess(dataset_id, hostname=self.request.hostname or "")


@shared_task(name="workers.tasks.aggregate_dataset", bind=True)
def aggregate_dataset(self, aggregation_id: int) -> None:
    from .aggregate import run_aggregation

    run_aggregation(aggregation_id, hostname=self.request.hostname or "")

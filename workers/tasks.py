"""Celery tasks: thin entry points that take ids and hand over to the job runners.

Tasks are acknowledged late and are safe to run twice: every job is claimed with a conditional
update (workers/jobs.py), so a redelivered task whose job is running, finished or gone does nothing.
Importing this module (the worker does, at start) registers every kind of job for the recovery
sweep and connects the worker's heartbeat.
"""
from celery import shared_task

from . import heartbeat  # noqa: F401  (worker heartbeats and the recovery sweep)
from .aggregate import AGGREGATION
from .evaluation import EVALUATION
from .explanation import EXPLANATION
from .ingest import INGEST
from .merge import MERGE
from .model_import import IMPORT
from .preprocess import PREPROCESSING
from .rate_search import SEARCH
from .training import TRAINING


@shared_task(name=INGEST.task, bind=True)
def ingest_dataset(self, dataset_id: int) -> None:
    INGEST.run(dataset_id, hostname=self.request.hostname or "")


@shared_task(name=MERGE.task, bind=True)
def merge_datasets(self, dataset_id: int) -> None:
    MERGE.run(dataset_id, hostname=self.request.hostname or "")


@shared_task(name=PREPROCESSING.task, bind=True)
def preprocess_dataset(self, dataset_id: int) -> None:
    PREPROCESSING.run(dataset_id, hostname=self.request.hostname or "")


@shared_task(name=AGGREGATION.task, bind=True)
def aggregate_dataset(self, aggregation_id: int) -> None:
    AGGREGATION.run(aggregation_id, hostname=self.request.hostname or "")


@shared_task(name=TRAINING.task, bind=True)
def train_run(self, run_id: int) -> None:
    TRAINING.run(run_id, hostname=self.request.hostname or "")


@shared_task(name=EVALUATION.task, bind=True)
def evaluate_run(self, evaluation_id: int) -> None:
    EVALUATION.run(evaluation_id, hostname=self.request.hostname or "")


@shared_task(name=EXPLANATION.task, bind=True)
def explain_sample(self, explanation_id: int) -> None:
    EXPLANATION.run(explanation_id, hostname=self.request.hostname or "")


@shared_task(name=SEARCH.task, bind=True)
def search_learning_rate(self, search_id: int) -> None:
    SEARCH.run(search_id, hostname=self.request.hostname or "")


@shared_task(name=IMPORT.task, bind=True)
def import_model(self, imported_id: int) -> None:
    IMPORT.run(imported_id, hostname=self.request.hostname or "")

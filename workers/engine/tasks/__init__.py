"""What a model learns: one task object per kind of target, chosen by a run's `spec.task`.

The trainer, the evaluation and the export ask the run's task for everything that differs between
tasks (task.py lists it) and never test a task's name themselves. A task's metrics live beside it
(`classification/metrics.py`, `segmentation/metrics.py`), registered in the one metric registry (`metrics.py`).

Importing this package loads no torch: the web tier reads the registries to check specs and build forms.
"""
from __future__ import annotations

from . import classification, segmentation  # noqa: E402,F401  (register the tasks and their metrics)
from .metrics import METRICS, Metric, metrics_of
from .task import TASKS, Task, task_for

__all__ = ["METRICS", "Metric", "TASKS", "Task", "metrics_of", "task_for"]

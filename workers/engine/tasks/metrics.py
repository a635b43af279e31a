"""The one registry of metrics. Each metric says which tasks it measures and computes one number from
what its task gathered over an epoch (the task's *outcome*: for classification the confusion matrix and,
when a metric ranks, each sample's probabilities). The loss is always measured and is not listed here."""
from __future__ import annotations

from typing import Any, ClassVar

from ..params import registry_of

METRICS, register = registry_of("metric")


class Metric:
    name: ClassVar[str]
    title: ClassVar[str]
    help: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    higher_is_better: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = False  # True: needs each sample's probabilities, kept on validation and test only
    per_class: ClassVar[bool] = False     # True: one value per class ("<name>.<class>"), an array from `compute`

    @classmethod
    def compute(cls, outcome: Any) -> float:
        """The metric of an epoch's outcome (its task's type); NaN where it is undefined (a per-class metric: an array)."""
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict:
        return {"name": cls.name, "title": cls.title, "help": cls.help, "higher_is_better": cls.higher_is_better,
                "needs_scores": cls.needs_scores, "per_class": cls.per_class, "tasks": list(cls.tasks)}


def metrics_of(task: str) -> list[str]:
    """The names of the metrics a task can measure, in the registry's order."""
    return [name for name, metric in METRICS.items() if task in metric.tasks]

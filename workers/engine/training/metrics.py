"""Metrics by name, computed at the end of an epoch from what the trainer gathered over its batches:
the confusion matrix (every metric) and the class probabilities (those that rank, like AUC; on the
validation and test subsets only: keeping every training image's scores would slow the loop).
The loss is always measured and is not listed here."""
from __future__ import annotations

import math

import numpy as np

from ..params import registry_of

METRICS, register = registry_of("metric")


class Metric:
    name: str
    title: str
    help: str
    higher_is_better = True
    needs_scores = False  # True: needs each image's class probabilities, not only the confusion matrix

    @classmethod
    def compute(cls, confusion: np.ndarray, probabilities: np.ndarray | None = None, targets: np.ndarray | None = None) -> float:
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict:
        return {"name": cls.name, "title": cls.title, "help": cls.help, "higher_is_better": cls.higher_is_better,
                "needs_scores": cls.needs_scores}


def recalls(confusion: np.ndarray) -> np.ndarray:
    """Each class's recall (rows: true class), over the classes present."""
    totals = confusion.sum(1)
    present = totals > 0
    return np.diag(confusion)[present] / totals[present]


@register
class Accuracy(Metric):
    name, title = "accuracy", "Accuracy"
    help = "Share of images given the right class."

    @classmethod
    def compute(cls, confusion, probabilities=None, targets=None):
        total = confusion.sum()
        return float(np.trace(confusion) / total) if total else math.nan


@register
class BalancedAccuracy(Metric):
    name, title = "balanced_accuracy", "Balanced accuracy"
    help = "The mean of each class's recall: a rare class counts as much as a common one."

    @classmethod
    def compute(cls, confusion, probabilities=None, targets=None):
        per_class = recalls(confusion)
        return float(per_class.mean()) if len(per_class) else math.nan


@register
class MacroF1(Metric):
    name, title = "macro_f1", "Macro F1"
    help = "The mean over classes of the harmonic mean of precision and recall."

    @classmethod
    def compute(cls, confusion, probabilities=None, targets=None):
        true_positive = np.diag(confusion).astype(float)
        predicted, actual = confusion.sum(0), confusion.sum(1)
        present = actual > 0
        if not present.any():
            return math.nan
        denominator = predicted + actual
        f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
        return float(f1[present].mean())


@register
class AUC(Metric):
    name, title = "auc", "AUC"
    help = "Area under the ROC curve: the chance a positive image scores above a negative one (one class against the rest, averaged)."
    needs_scores = True

    @classmethod
    def compute(cls, confusion, probabilities=None, targets=None):
        from sklearn.metrics import roc_auc_score

        if probabilities is None or targets is None or len(np.unique(targets)) < 2:
            return math.nan  # undefined with a single class present
        present = np.unique(targets)
        if probabilities.shape[1] == 2:
            return float(roc_auc_score(targets, probabilities[:, 1]))
        # One-vs-rest over the classes present in this subset (a class with no image has no ROC curve).
        scores = [roc_auc_score(targets == k, probabilities[:, k]) for k in present]
        return float(np.mean(scores))

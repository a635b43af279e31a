"""Classification metrics, computed at the end of an epoch from its ClassificationOutcome: the confusion
matrix (every metric) and the class probabilities (those that rank, like AUC; on the validation and test
subsets only: keeping every training image's scores would slow the loop)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..metrics import Metric, register

if TYPE_CHECKING:
    from .tally import ClassificationOutcome

CLASSIFICATION = ("classification",)


class ClassificationMetric(Metric):
    tasks = CLASSIFICATION


def recalls(confusion: np.ndarray) -> np.ndarray:
    """Each class's recall (rows: true class), over the classes present."""
    totals = confusion.sum(1)
    present = totals > 0
    return np.diag(confusion)[present] / totals[present]


@register
class Accuracy(ClassificationMetric):
    name, title = "accuracy", "Accuracy"
    help = "Share of images given the right class."

    @classmethod
    def compute(cls, outcome: ClassificationOutcome) -> float:
        confusion = outcome.confusion
        total = confusion.sum()
        return float(np.trace(confusion) / total) if total else math.nan


@register
class BalancedAccuracy(ClassificationMetric):
    name, title = "balanced_accuracy", "Balanced accuracy"
    help = "The mean of each class's recall: a rare class counts as much as a common one."

    @classmethod
    def compute(cls, outcome: ClassificationOutcome) -> float:
        per_class = recalls(outcome.confusion)
        return float(per_class.mean()) if len(per_class) else math.nan


@register
class MacroF1(ClassificationMetric):
    name, title = "macro_f1", "Macro F1"
    help = "The mean over classes of the harmonic mean of precision and recall."

    @classmethod
    def compute(cls, outcome: ClassificationOutcome) -> float:
        confusion = outcome.confusion
        true_positive = np.diag(confusion).astype(float)
        predicted, actual = confusion.sum(0), confusion.sum(1)
        present = actual > 0
        if not present.any():
            return math.nan
        denominator = predicted + actual
        f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
        return float(f1[present].mean())


@register
class AUC(ClassificationMetric):
    name, title = "auc", "AUC"
    help = "Area under the ROC curve: the chance a positive image scores above a negative one (one class against the rest, averaged)."
    needs_scores = True

    @classmethod
    def compute(cls, outcome: ClassificationOutcome) -> float:
        from sklearn.metrics import roc_auc_score

        probabilities, targets = outcome.probabilities, outcome.targets
        if probabilities is None or targets is None or len(np.unique(targets)) < 2:
            return math.nan  # undefined with a single class present
        present = np.unique(targets)
        if probabilities.shape[1] == 2:
            return float(roc_auc_score(targets, probabilities[:, 1]))
        # One-vs-rest over the classes present in this subset (a class with no image has no ROC curve).
        scores = [roc_auc_score(targets == k, probabilities[:, k]) for k in present]
        return float(np.mean(scores))

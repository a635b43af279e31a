"""Segmentation metrics, computed at the end of an epoch from its SegmentationOutcome: the voxel confusion matrix
pooled over the subset's samples (Dice, IoU, pixel accuracy; what nnU-Net reports during training as its
"pseudo Dice"), and the sum of each sample's own Dice (the mean over cases, which the results pages rank).

Empty references are handled as Metrics Reloaded advises (Maier-Hein et al., Nature Methods 2024): a label absent
from the reference and from the prediction scores 1 (a correctly empty prediction is right, and is not dropped); a
label absent from the reference but predicted, or present but missed, scores 0 (MONAI's DiceMetric with
ignore_empty=False does the same)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..metrics import Metric, register

if TYPE_CHECKING:
    from .tally import SegmentationOutcome

SEGMENTATION = ("segmentation",)


class SegmentationMetric(Metric):
    tasks = SEGMENTATION


def overlap_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 1 where the denominator is 0 (nothing in the reference, nothing predicted)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.ones_like(numerator), where=denominator > 0)


def dice_of(intersection, predicted, reference) -> np.ndarray:
    """Dice per class, 2|P∩R| / (|P| + |R|): 1 when both are empty, 0 when one is."""
    return overlap_ratio(2 * np.asarray(intersection), np.asarray(predicted) + np.asarray(reference))


def iou_of(intersection, predicted, reference) -> np.ndarray:
    """IoU (Jaccard) per class, |P∩R| / |P∪R|: 1 when both are empty, 0 when one is."""
    intersection = np.asarray(intersection)
    return overlap_ratio(intersection, np.asarray(predicted) + np.asarray(reference) - intersection)


def foreground_mean(values: np.ndarray) -> float:
    """The mean over the labels but the background (label 0); NaN when there is no other."""
    return float(np.mean(values[1:])) if len(values) > 1 else math.nan


@register
class MeanDice(SegmentationMetric):
    name, title = "mean_dice", "Mean Dice"
    help = ("Overlap of the predicted and the reference outlines, 2|P∩R| / (|P| + |R|), per label over all the subset's "
            "voxels, averaged over the labels but the background; 1 is a perfect outline.")

    @classmethod
    def compute(cls, outcome: SegmentationOutcome) -> float:
        return foreground_mean(dice_of(*outcome.counts()))


@register
class ClassDice(SegmentationMetric):
    name, title = "class_dice", "Dice per label"
    help = "Dice of each label but the background, over all the subset's voxels (one value per label)."
    per_class = True

    @classmethod
    def compute(cls, outcome: SegmentationOutcome) -> np.ndarray:
        return dice_of(*outcome.counts())[1:]


@register
class MeanIoU(SegmentationMetric):
    name, title = "iou", "Mean IoU (Jaccard)"
    help = "Intersection over union of the predicted and reference outlines, per label, averaged over the labels but the background."

    @classmethod
    def compute(cls, outcome: SegmentationOutcome) -> float:
        return foreground_mean(iou_of(*outcome.counts()))


@register
class PixelAccuracy(SegmentationMetric):
    name, title = "pixel_accuracy", "Pixel accuracy"
    help = "Share of pixels (voxels) given their reference label, background included: high even for a poor outline of a small structure."

    @classmethod
    def compute(cls, outcome: SegmentationOutcome) -> float:
        total = outcome.confusion.sum()
        return float(np.trace(outcome.confusion) / total) if total else math.nan


@register
class CaseDice(SegmentationMetric):
    name, title = "case_dice", "Mean Dice per case"
    help = ("Each sample's own Dice per label (empty references as Metrics Reloaded advises), averaged over the labels but "
            "the background and then over the samples: every case counts the same, whatever its size.")

    @classmethod
    def compute(cls, outcome: SegmentationOutcome) -> float:
        if not outcome.cases or len(outcome.case_dice_sum) < 2:
            return math.nan
        return float(np.mean(outcome.case_dice_sum[1:]) / outcome.cases)

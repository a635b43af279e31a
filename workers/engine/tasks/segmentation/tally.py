"""What a segmentation epoch adds up to: a voxel confusion matrix over every sample, the sum of each sample's Dice
per label, and (on validation and test) each sample's own counts, for its predictions record."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import METRICS
from .metrics import dice_of


@dataclass
class SegmentationOutcome:
    """What segmentation metrics are computed from: the voxel confusion matrix (rows: the reference label, columns: the
    predicted one) over the subset, and the sum over its samples of each one's Dice per label."""
    confusion: np.ndarray
    case_dice_sum: np.ndarray
    cases: int

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per label: voxels in both (intersection), predicted, in the reference."""
        return np.diag(self.confusion), self.confusion.sum(0), self.confusion.sum(1)


def confusions(predicted: torch.Tensor, reference: torch.Tensor, labels: int) -> torch.Tensor:
    """(N, labels, labels) voxel confusion matrices of a batch of label maps, one per sample (one bincount)."""
    count = len(reference)
    sample = torch.arange(count, device=reference.device).view(-1, *([1] * (reference.dim() - 1)))
    index = (sample * labels + reference.long()) * labels + predicted.long()
    return torch.bincount(index.flatten(), minlength=count * labels * labels).view(count, labels, labels)


def case_dice(confusion: torch.Tensor) -> torch.Tensor:
    """(N, labels) Dice of each sample per label from its confusion matrix: 1 where the label is neither in the
    reference nor predicted, 0 where it is in one only."""
    intersection = confusion.diagonal(dim1=1, dim2=2).double()
    total = confusion.sum(1).double() + confusion.sum(2).double()
    return torch.where(total > 0, 2 * intersection / total.clamp(min=1), torch.ones_like(total))


class SegmentationTally:
    """Loss sum, sample count, the voxel confusion matrix and the per-label sum of each sample's Dice, on the training
    device (read once, at the end); with `keep_cases`, each sample's confusion matrix (on the CPU, a few numbers each)."""

    def __init__(self, classes: Sequence[str], device: torch.device, keep_cases: bool = False):
        self.classes, self.labels, self.keep_cases = list(classes), len(classes), keep_cases
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion = torch.zeros(self.labels * self.labels, dtype=torch.int64, device=device)
        self.case_dice_sum = torch.zeros(self.labels, dtype=torch.float64, device=device)
        self.seen = 0
        self.cases: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        count = len(targets)
        per_case = confusions(logits.argmax(1), targets, self.labels)
        self.loss_sum += loss.detach().double() * count
        self.confusion += per_case.sum(0).flatten()
        self.case_dice_sum += case_dice(per_case).sum(0)
        self.seen += count
        if self.keep_cases:
            self.cases.append(per_case.cpu())

    def sums(self) -> list[torch.Tensor]:
        return [self.loss_sum, self.confusion, self.case_dice_sum]

    def state(self) -> dict:
        return {"loss_sum": self.loss_sum.cpu(), "confusion": self.confusion.cpu(), "case_dice_sum": self.case_dice_sum.cpu(),
                "seen": self.seen}

    def load(self, state: dict) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.confusion.copy_(state["confusion"])
        self.case_dice_sum.copy_(state["case_dice_sum"])
        self.seen = int(state["seen"])

    def outcome(self) -> SegmentationOutcome:
        return SegmentationOutcome(self.confusion.cpu().numpy().reshape(self.labels, self.labels),
                                   self.case_dice_sum.cpu().numpy(), self.seen)

    def summary(self, metric_names: list[str]) -> dict[str, float]:
        """{"loss", metric: value}; a per-label metric gives one value per label but the background, as
        "<metric>.<label>" (e.g. "class_dice.liver")."""
        if not self.seen:
            return {}
        outcome = self.outcome()
        values = {"loss": float(self.loss_sum.item() / self.seen)}
        for name in metric_names:
            metric = METRICS[name]
            if metric.per_class:
                values.update({f"{name}.{label}": float(v) for label, v in zip(self.classes[1:], metric.compute(outcome))})
            else:
                values[name] = metric.compute(outcome)
        return values

    def predictions(self) -> list[dict]:
        """Per sample: its Dice and IoU per label but the background (1 where the label is in neither the reference nor
        the prediction, 0 where it is in one only), their mean over the labels, and each label's voxels in the
        prediction and the reference (background included: the volumes in ml, once the spacing is known)."""
        if not self.cases:
            return []
        records = []
        for confusion in torch.cat(self.cases).numpy():
            intersection, predicted, reference = np.diag(confusion), confusion.sum(0), confusion.sum(1)
            dice = dice_of(intersection, predicted, reference)
            union = predicted + reference - intersection
            iou = np.divide(intersection, union, out=np.ones(len(union)), where=union > 0)
            foreground = self.classes[1:]
            records.append({"dice": {label: float(v) for label, v in zip(foreground, dice[1:])},
                            "iou": {label: float(v) for label, v in zip(foreground, iou[1:])},
                            "mean_dice": float(dice[1:].mean()) if len(foreground) else float("nan"),
                            "predicted_voxels": {label: int(v) for label, v in zip(self.classes, predicted)},
                            "reference_voxels": {label: int(v) for label, v in zip(self.classes, reference)}})
        return records

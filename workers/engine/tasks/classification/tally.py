"""What a classification epoch adds up to."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import METRICS


@dataclass
class ClassificationOutcome:
    """What classification metrics are computed from: the confusion matrix (rows: true class), and each
    sample's class probabilities and true class when they were kept (None otherwise)."""
    confusion: np.ndarray
    probabilities: np.ndarray | None = None
    targets: np.ndarray | None = None


class ClassificationTally:
    """Loss sum, sample count and confusion matrix on the training device (read once at the end, so the loop
    never waits on the GPU), and the class probabilities when `probabilities` is given (a metric ranks samples)."""

    def __init__(self, num_classes: int, device: torch.device, probabilities: Callable | None = None):
        self.num_classes, self.probabilities = num_classes, probabilities
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        self.seen = 0
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        count = len(targets)
        self.loss_sum += loss.detach().double() * count
        self.confusion += torch.bincount(targets * self.num_classes + logits.argmax(1), minlength=self.num_classes ** 2)
        self.seen += count
        if self.probabilities is not None:
            self.scores.append(self.probabilities(logits.float()).cpu())
            self.targets.append(targets.cpu())

    def sums(self) -> list[torch.Tensor]:
        return [self.loss_sum, self.confusion]

    def state(self) -> dict:
        return {"loss_sum": self.loss_sum.cpu(), "confusion": self.confusion.cpu(), "seen": self.seen}

    def load(self, state: dict) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.confusion.copy_(state["confusion"])
        self.seen = int(state["seen"])

    def outcome(self) -> ClassificationOutcome:
        confusion = self.confusion.cpu().numpy().reshape(self.num_classes, self.num_classes)
        if not self.scores:
            return ClassificationOutcome(confusion)
        return ClassificationOutcome(confusion, torch.cat(self.scores).numpy(), torch.cat(self.targets).numpy())

    def summary(self, metric_names: list[str]) -> dict[str, float]:
        if not self.seen:
            return {}
        outcome = self.outcome()
        values = {"loss": float(self.loss_sum.item() / self.seen)}
        for name in metric_names:
            metric = METRICS[name]
            if metric.needs_scores and outcome.probabilities is None:
                continue
            values[name] = metric.compute(outcome)
        return values

    def predictions(self) -> list[dict]:
        """Per sample: its class probabilities, the predicted class (the most probable) and the true class."""
        outcome = self.outcome()
        if outcome.probabilities is None:
            return []
        return [{"probabilities": [float(p) for p in row], "predicted": int(row.argmax()), "target": int(target)}
                for row, target in zip(outcome.probabilities, outcome.targets)]

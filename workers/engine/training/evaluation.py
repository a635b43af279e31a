"""A model measured on a subset: the loss and the chosen metrics, in one pass."""
from __future__ import annotations

import contextlib
import math

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import on_device
from .metrics import METRICS


class Tally:
    """What an epoch's batches add up to: loss sum, image count, confusion matrix (on the training
    device, read once at the end, so the loop never waits on the GPU), and the class probabilities
    when a metric ranks images."""

    def __init__(self, num_classes: int, device: torch.device, keep_scores: bool = False):
        self.num_classes, self.keep_scores = num_classes, keep_scores
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        self.seen = 0
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, probabilities=None) -> None:
        count = len(targets)
        self.loss_sum += loss.detach().double() * count
        self.confusion += torch.bincount(targets * self.num_classes + logits.argmax(1), minlength=self.num_classes ** 2)
        self.seen += count
        if self.keep_scores:
            self.scores.append(probabilities(logits.float()).cpu())
            self.targets.append(targets.cpu())

    def state(self) -> dict:
        return {"loss_sum": self.loss_sum.cpu(), "confusion": self.confusion.cpu(), "seen": self.seen}

    def load(self, state: dict) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.confusion.copy_(state["confusion"])
        self.seen = int(state["seen"])

    def summary(self, metric_names: list[str]) -> dict[str, float]:
        """{"loss": ..., metric: ...} over what was added."""
        if not self.seen:
            return {}
        confusion = self.confusion.cpu().numpy().reshape(self.num_classes, self.num_classes)
        scores = torch.cat(self.scores).numpy() if self.scores else None
        targets = torch.cat(self.targets).numpy() if self.targets else None
        values = {"loss": float(self.loss_sum.item() / self.seen)}
        for name in metric_names:
            metric = METRICS[name]
            if metric.needs_scores and scores is None:
                continue
            values[name] = metric.compute(confusion, scores, targets)
        return values


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, loss_fn, probabilities, metric_names: list[str], num_classes: int,
             batch_size: int = 64, device: torch.device | str = "cpu", autocast=None) -> dict[str, float]:
    """{"loss", metric...} of the model on a dataset ({} when it is empty)."""
    device = torch.device(device)
    if not len(dataset):
        return {}
    # Each layer's own mode is put back afterwards, not the model's: BatchNorm layers a phase froze stay in eval mode.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    keep_scores = any(METRICS[name].needs_scores for name in metric_names)
    tally = Tally(num_classes, device, keep_scores)
    for images, targets in DataLoader(dataset, batch_size=max(batch_size, 64)):
        images, targets = on_device(images, device), targets.to(device)
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(images)
        tally.add(loss_fn(logits.float(), targets), logits, targets, probabilities)
    for module, training in modes:
        module.training = training
    values = tally.summary(metric_names)
    return {name: (value if math.isfinite(value) else float("nan")) for name, value in values.items()}


"""Train and evaluate a classifier, reporting through a JobObserver."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from .architectures import build_model
from .observer import JobObserver


@dataclass(frozen=True)
class TrainingConfig:
    architecture: str = "small_cnn"
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    device: str = "cpu"
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingOutcome:
    model: nn.Module
    epochs_completed: int
    stopped: bool


def resolve_device(name: str) -> torch.device:
    if name == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("this worker has no usable GPU")
        return torch.device("cuda")
    return torch.device("cpu")


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                sample_weights: list[float] | None = None) -> DataLoader:
    """Batches in a seeded order; with sample weights, drawn by weight (with replacement) instead."""
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if sample_weights is not None:
        sampler = WeightedRandomSampler(sample_weights, num_samples=len(sample_weights), replacement=True, generator=generator)
        shuffle = False
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, generator=generator,
        pin_memory=device.type == "cuda",
    )


def train_classifier(
    config: TrainingConfig,
    train_set: Dataset,
    validation_set: Dataset,
    in_channels: int,
    num_classes: int,
    observer: JobObserver,
    sample_weights: list[float] | None = None,
) -> TrainingOutcome:
    """Train with Adam and cross-entropy; stops after the current batch when asked."""
    device = resolve_device(config.device)
    model = build_model(config.architecture, in_channels, num_classes, seed=config.seed).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    train_loader = make_loader(train_set, config.batch_size, True, config.seed, device, sample_weights)
    batches = len(train_loader)
    total_steps = config.epochs * batches
    for epoch in range(1, config.epochs + 1):
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)  # new augmentation draws every epoch, reproducibly
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for batch, (images, targets) in enumerate(train_loader):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            optimiser.zero_grad(set_to_none=True)
            logits = model(images)
            loss = loss_fn(logits, targets)
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).sum().item()
            seen += len(targets)
            step = (epoch - 1) * batches + batch + 1
            observer.progress(step, total_steps, f"epoch {epoch} of {config.epochs}, batch {batch + 1} of {batches}")
            if observer.should_stop():
                report_epoch(observer, epoch, loss_sum, correct, seen, model, validation_set, config, device)
                return TrainingOutcome(model.eval(), epoch - 1, stopped=True)
        report_epoch(observer, epoch, loss_sum, correct, seen, model, validation_set, config, device)
    return TrainingOutcome(model.eval(), config.epochs, stopped=False)


def report_epoch(observer, epoch, loss_sum, correct, seen, model, validation_set, config, device) -> None:
    """Metrics of an epoch (a partial one too: its batches were trained on and count)."""
    if seen:
        observer.metric(epoch, "train", "loss", loss_sum / seen)
        observer.metric(epoch, "train", "accuracy", correct / seen)
    if len(validation_set):
        val_loss, val_accuracy = evaluate(model, validation_set, config.batch_size, device)
        observer.metric(epoch, "validation", "loss", val_loss)
        observer.metric(epoch, "validation", "accuracy", val_accuracy)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device | str = "cpu") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model on a dataset."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for images, targets in DataLoader(dataset, batch_size=batch_size):
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    model.train(was_training)
    if not seen:
        return math.nan, math.nan
    return loss_sum / seen, correct / seen

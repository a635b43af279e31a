"""What a run does besides stepping the optimizer, one callback each: schedule steps, phase
switches, reporting, keeping the best epoch, early stopping, checkpoints. Later behaviour (say,
a per-epoch Grad-CAM) is one more callback, not a change to the loop.

Hooks get the trainer; `on_epoch_end` also the epoch's metrics ({"validation.loss": ...}). Only
process 0 of a parallel run reports, keeps and checkpoints; every process steps the schedule and
switches phases (their decisions are process 0's, shared by the trainer).
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ..zoo.transfer import rate_scales
from . import checkpoints

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    every_process = False  # True: runs in every process of a parallel run, not only process 0

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_batch_start(self, trainer: Trainer) -> None: ...
    def on_batch_end(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_stop(self, trainer: Trainer) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...


class ScheduleStep(Callback):
    """Sets every step's learning rate from the spec (the same code draws the curve before launch)."""
    every_process = True

    def on_batch_start(self, trainer):
        state = trainer.state
        trainer.set_learning_rate(trainer.spec.learning_rate(state.epoch + 1, state.batch, trainer.steps_per_epoch, state.plateau))

    def on_epoch_end(self, trainer, metrics):
        subset, name, higher = trainer.spec.monitored
        value = metrics.get(f"{subset}.{name}")
        if value is not None:
            trainer.state.plateau = trainer.spec.schedule.after_epoch(trainer.state.plateau, value, higher)


class PhaseSwitch(Callback):
    """At every epoch's start, what trains (the whole network, its head, all but its first blocks) and each block's
    share of the rate; at each phase's first epoch, a log line saying so (and why the rate changes)."""
    every_process = True

    def on_epoch_start(self, trainer):
        phase = trainer.spec.phase_at(trainer.state.epoch + 1)
        trainer.set_trainable(phase)
        phases = trainer.spec.phases
        if (len(phases) > 1 or not plain(phase)) and trainer.state.epoch + 1 == phase.first_epoch and trainer.state.batch == 0:
            trainer.log(phase_line(phase, phases.index(phase) + 1, len(phases), trainer.block_count,
                                   trainer.spec["model"]["train_frozen_batchnorm"]))


def plain(phase) -> bool:
    return phase.train == "all" and not phase.frozen_blocks and phase.layer_rate_ratio == 1


def phase_line(phase, number: int, count: int, block_count: int, train_frozen_batchnorm: bool = False) -> str:
    """"Phase 1 of 2: 1 epoch training the head only (the rest frozen, BatchNorm statistics too) at a learning rate of 0.002."."""
    epochs = f"{phase.epochs} epoch{'s' if phase.epochs != 1 else ''}"
    return (f"Phase {number} of {count}: {epochs} training {trained_part(phase, train_frozen_batchnorm)} at a learning rate of "
            f"{phase.learning_rate:g}{rate_spread(phase, block_count)}.")


def trained_part(phase, train_frozen_batchnorm: bool = False) -> str:
    if phase.train == "all" and not phase.frozen_blocks:
        return "the whole network"
    frozen = "BatchNorm layers still learning" if train_frozen_batchnorm else "BatchNorm statistics too"
    if phase.train == "head":
        return f"the head only (the rest frozen, {frozen})"
    blocks = "block" if phase.frozen_blocks == 1 else f"{phase.frozen_blocks} blocks"
    return f"all but the first {blocks} (frozen, {frozen})"


def rate_spread(phase, block_count: int) -> str:
    """The rates of the trained blocks, when they differ: the head's, and the lowest, of the first block trained."""
    if phase.layer_rate_ratio == 1 or phase.train == "head" or block_count < 2:
        return ""
    first = min(phase.frozen_blocks, block_count - 1)
    lowest = phase.learning_rate * rate_scales(block_count, phase.layer_rate_ratio)[first]
    where = "the first block" if first == 0 else f"block {first + 1} (the first trained)"
    return f" for the head, down to {lowest:g} for {where}"


class Reporter(Callback):
    """Progress after every batch (the observer throttles its writes), metrics and a log line after every epoch."""

    def on_batch_end(self, trainer):
        state, batches = trainer.state, trainer.steps_per_epoch
        done = state.epoch * batches + state.batch
        trainer.observer.progress(done, trainer.spec.epochs * batches,
                                  f"epoch {state.epoch + 1} of {trainer.spec.epochs}, batch {state.batch} of {batches}")

    def on_epoch_end(self, trainer, metrics):
        epoch = trainer.state.epoch
        for key, value in metrics.items():
            subset, name = key.split(".", 1)
            trainer.observer.metric(epoch, subset, name, value)
        shown = ", ".join(f"{key.replace('.', ' ')} {value:.4g}" for key, value in metrics.items() if not key.startswith("system."))
        best = " (best so far)" if trainer.state.best_epoch == epoch else ""
        trainer.log(f"Epoch {epoch} of {trainer.spec.epochs}: {shown}{best}.")


class BestKeeper(Callback):
    """Keeps the weights of the epoch with the best monitored metric (in memory, and as best.pt when checkpointing)."""

    def __init__(self, folder=None):
        self.folder = folder
        self.weights: dict | None = None

    def on_fit_start(self, trainer):
        if self.folder and trainer.state.best_epoch and checkpoints.best_path(self.folder).is_file():
            self.weights = checkpoints.load(checkpoints.best_path(self.folder))["model"]

    def on_epoch_end(self, trainer, metrics):
        subset, name, higher = trainer.spec.monitored
        value = metrics.get(f"{subset}.{name}")
        if value is None or not math.isfinite(value):
            return
        best = trainer.state.best_value
        if best is None or (value > best if higher else value < best):
            trainer.state.best_value, trainer.state.best_epoch = value, trainer.state.epoch
            self.weights = {key: tensor.detach().cpu().clone() for key, tensor in trainer.model.state_dict().items()}
            if self.folder:
                checkpoints.save_atomically({"format": checkpoints.FORMAT, "epoch": trainer.state.epoch, "value": value,
                                             "model": self.weights}, checkpoints.best_path(self.folder))


class EarlyStopping(Callback):
    """Ends the run when the monitored metric has not improved by `min_delta` for `patience` epochs."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta

    def on_epoch_end(self, trainer, metrics):
        subset, name, higher = trainer.spec.monitored
        value = metrics.get(f"{subset}.{name}")
        if value is None or not math.isfinite(value):
            return
        state = trainer.state
        reference = state.patience_best
        improved = reference is None or (value > reference + self.min_delta if higher else value < reference - self.min_delta)
        if improved:
            state.patience_best, state.bad_epochs = value, 0
            return
        state.bad_epochs += 1
        if state.bad_epochs >= self.patience:
            state.ended = "early_stopping"
            trainer.log(f"Early stopping: the {subset} {name} has not improved by more than {self.min_delta:g} for "
                        f"{self.patience} epochs.")


class Checkpointer(Callback):
    """The whole trainer state after every epoch, during long epochs every `every_minutes`, and when stopped."""

    def __init__(self, folder, every_minutes: int):
        self.folder, self.every_seconds = folder, every_minutes * 60
        self.last_saved = time.monotonic()

    def save(self, trainer) -> None:
        checkpoints.save_atomically(trainer.checkpoint(), checkpoints.state_path(self.folder))
        self.last_saved = time.monotonic()

    def on_batch_end(self, trainer):
        if self.every_seconds and time.monotonic() - self.last_saved >= self.every_seconds and trainer.state.batch < trainer.steps_per_epoch:
            self.save(trainer)
            trainer.log(f"Checkpoint in epoch {trainer.state.epoch + 1} after batch {trainer.state.batch}.")

    def on_epoch_end(self, trainer, metrics):
        self.save(trainer)

    def on_stop(self, trainer):
        self.save(trainer)


def default_callbacks(spec, checkpoint_folder=None) -> list[Callback]:
    callbacks: list[Callback] = [ScheduleStep(), PhaseSwitch(), BestKeeper(checkpoint_folder)]
    stopping = spec["early_stopping"]
    if stopping["enabled"]:
        callbacks.append(EarlyStopping(stopping["patience"], stopping["min_delta"]))
    callbacks.append(Reporter())  # after the keeper, so its line can say "best so far"
    if checkpoint_folder is not None:
        callbacks.append(Checkpointer(checkpoint_folder, spec["checkpoints"]["every_minutes"]))
    return callbacks


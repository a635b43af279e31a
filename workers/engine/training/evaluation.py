"""A model measured on a subset: the loss and the chosen metrics, in one pass, as the run's task tallies them."""
from __future__ import annotations

import contextlib
import math

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import on_device
from ..observer import JobObserver, JobStopped
from ..tasks import METRICS, Task, task_for
from .losses import LossContext


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, loss_fn, task: Task, metric_names: list[str],
             batch_size: int = 64, device: torch.device | str = "cpu", autocast=None,
             predictions: list | None = None, observer: JobObserver | None = None,
             progress_message: str = "") -> dict[str, float]:
    """{"loss", metric...} of the model on a dataset of sample records ({} when it is empty). With a
    `predictions` list, each sample's prediction (the task's record) is appended to it, in the dataset's order.
    With an `observer`: its stop flag before each batch (asked to stop, JobStopped is raised and nothing is appended),
    and after each, the samples predicted of the dataset's (`progress`, with `progress_message`)."""
    device = torch.device(device)
    if not len(dataset):
        return {}
    # Each layer's own mode is put back afterwards, not the model's: BatchNorm layers a phase froze stay in eval mode.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    keep_scores = predictions is not None or any(METRICS[name].needs_scores for name in metric_names)
    tally = task.tally(device, keep_scores)
    # Whole volumes differ in shape and each is read window by window: one at a time.
    batch_size = 1 if getattr(dataset, "whole_samples", False) else max(batch_size, 64)
    try:
        for batch in DataLoader(dataset, batch_size=batch_size):
            if observer is not None and observer.should_stop():
                raise JobStopped
            images, targets = on_device(batch["image"], device), batch[task.target_key].to(device)
            with autocast() if autocast else contextlib.nullcontext():
                logits = task.predict(model, images)
            tally.add(loss_fn(logits.float(), targets), logits, targets)
            if observer is not None:
                observer.progress(tally.seen, len(dataset), progress_message)
    finally:
        for module, training in modes:
            module.training = training
    if predictions is not None:
        predictions.extend(tally.predictions())
    values = tally.summary(metric_names)
    return {name: (value if math.isfinite(value) else float("nan")) for name, value in values.items()}


def measured(model: torch.nn.Module, dataset: Dataset, spec, classes: list[str], class_counts: tuple[int, ...] = (),
             dims: int = 2, window=None, metric_names: list[str] | None = None, predictions: list | None = None,
             observer: JobObserver | None = None, progress_message: str = "") -> dict[str, float]:
    """A run's model measured on a dataset as its spec says: the spec's task (mirrored at test time where its
    `inference` says), loss and metrics (or `metric_names`); `window`: the patch a model of volumes learnt on; `observer`: told of the progress, asked whether to stop
    (`evaluate`)."""
    task = task_for(spec["task"], classes, dims, spec.loss.probabilities, window, spec.mirror_axes(dims))
    loss_fn = spec.loss.build(LossContext(task.outputs, class_counts))
    return evaluate(model, dataset, loss_fn, task, spec["metrics"] if metric_names is None else metric_names,
                    spec["batch_size"], predictions=predictions, observer=observer, progress_message=progress_message)

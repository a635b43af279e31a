"""Postprocessing of predicted label maps, decided as nnU-Net decides it (Isensee et al. 2021): "keep the largest
connected component" of a label removes the specks a network scatters away from a structure, and harms a label that has
several true pieces (two kidneys, metastases). So it is tried on the validation subset after training, label by label:
kept for a label only where it raises that label's mean Dice over the validation samples.

`choose_postprocessing` makes the choice (a plain dict the run records); `apply_postprocessing` applies it to any label
map the model predicts afterwards. Components are found by SciPy's `ndimage.label` with full connectivity (voxels
touching by a face, an edge or a corner are one component, as nnU-Net's and MONAI's KeepLargestConnectedComponent count
them)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from .metrics import dice_of

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from . import Segmentation

LARGEST_COMPONENT = "largest_component"


def largest_component_only(label_map: np.ndarray, label: int) -> np.ndarray:
    """The label map with every piece of `label` but its largest set to the background (0)."""
    pieces, count = ndimage.label(label_map == label, structure=np.ones((3,) * label_map.ndim, dtype=bool))
    if count <= 1:
        return label_map
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0  # the voxels outside the label
    cleaned = label_map.copy()
    cleaned[(pieces > 0) & (pieces != sizes.argmax())] = 0
    return cleaned


def apply_postprocessing(label_map, choice: dict) -> np.ndarray:
    """A predicted label map ((D, H, W) or (H, W); a NumPy array or a CPU tensor) postprocessed as `choice` (from
    `choose_postprocessing`) says: the largest component kept of each label it lists."""
    cleaned = np.asarray(label_map)
    for label in choice.get(LARGEST_COMPONENT, []):
        cleaned = largest_component_only(cleaned, int(label))
    return cleaned


def label_dice(predicted: np.ndarray, reference: np.ndarray, label: int) -> float:
    """One sample's Dice of one label (1 where the label is neither predicted nor in the reference, as metrics.py)."""
    mine, theirs = predicted == label, reference == label
    return float(dice_of(np.logical_and(mine, theirs).sum(), mine.sum(), theirs.sum()))


def decide(predictions: Sequence[np.ndarray], references: Sequence[np.ndarray], classes: Sequence[str]) -> dict:
    """The choice for whole-sample label maps and their references: per foreground label, the mean Dice over the samples
    as predicted and with its largest component only; the label listed where the second is higher."""
    before, after, kept = {}, {}, []
    for label in range(1, len(classes)):
        before[classes[label]] = float(np.mean([label_dice(p, r, label) for p, r in zip(predictions, references)]))
        after[classes[label]] = float(np.mean([label_dice(largest_component_only(p, label), r, label)
                                               for p, r in zip(predictions, references)]))
        if after[classes[label]] > before[classes[label]]:
            kept.append(label)
    return {LARGEST_COMPONENT: kept, "dice_before": before, "dice_after": after}


def choose_postprocessing(model: torch.nn.Module, validation_records: Dataset, task: Segmentation) -> dict:
    """{"largest_component": [labels], "dice_before": {class: mean Dice}, "dice_after": {...}}: the model's predictions
    of the validation subset's whole samples (records {"image": (C, *sides), "mask": (*sides)}, predicted as the task
    predicts them: sliding window, mirroring where the task mirrors) and the labels (indices into `task.classes`, the
    background never) whose largest component alone scores a higher mean validation Dice. No validation sample: nothing
    is kept."""
    import torch

    if not len(validation_records):
        return {LARGEST_COMPONENT: [], "dice_before": {}, "dice_after": {}}
    device = next(model.parameters()).device
    modes = [(module, module.training) for module in model.modules()]  # put back as they were, layer by layer
    model.eval()
    predictions, references = [], []
    try:
        with torch.no_grad():
            for index in range(len(validation_records)):
                record = validation_records[index]
                image = torch.as_tensor(record["image"])[None].to(device)
                predictions.append(task.predict(model, image).argmax(1)[0].cpu().numpy())
                references.append(np.asarray(record[task.target_key]))
    finally:
        for module, training in modes:
            module.training = training
    return decide(predictions, references, task.classes)

"""Predictions back on the sample's own grid. A model of a plan predicts at the plan's spacing (the store holds each
sample resampled whole, so the two grids span the same field of view); the label map a person sees, downloads or is
scored against with the original spacing lies on the sample's own voxels. The class probabilities are resampled,
then the largest taken (as nnU-Net does): resampling labels would round the outlines twice."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Output voxels of a volume resampled at once (16 slices of 512x512): the probabilities of the whole resampled volume
# would take 4 bytes a voxel per class (1.2 GB for 3 classes on a 375x512x512 CT, bench/segmentation_sliding.py); a
# slab at a time, only its label map is kept.
SLAB_VOXELS = 2 ** 22


def labels_on_grid(probabilities: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The label map ((D, H, W) or (H, W), int64) of one sample's class probabilities ((C, D, H, W) or (C, H, W) at the
    plan's spacing), on a grid of `shape` covering the same field of view (trilinear, bilinear in 2D); a volume is
    resampled slab by slab of its slices, with the values the whole would have."""
    shape = tuple(int(s) for s in shape)
    if tuple(probabilities.shape[1:]) == shape:
        return probabilities.argmax(0)
    if len(shape) == 2:
        return F.interpolate(probabilities[None].float(), size=shape, mode="bilinear", align_corners=False)[0].argmax(0)
    labels = torch.empty(shape, dtype=torch.int64)
    rows = max(1, SLAB_VOXELS // (shape[1] * shape[2]))
    for first in range(0, shape[0], rows):
        last = min(first + rows, shape[0])
        labels[first:last] = resampled_slab(probabilities, shape, first, last).argmax(0)
    return labels


def resampled_slab(probabilities: torch.Tensor, shape: tuple[int, int, int], first: int, last: int) -> torch.Tensor:
    """Slices first..last-1 ((C, last - first, H, W) float32) of (C, D, H, W) probabilities resampled trilinearly to
    `shape`, as F.interpolate(align_corners=False) places them: trilinear is bilinear within each source slice, then
    linear between the two source slices around each output slice (PyTorch's source position: (i + 0.5) * D / depth
    - 0.5, no lower than 0)."""
    depth = probabilities.shape[1]
    scale = torch.tensor(depth / shape[0], dtype=torch.float32)
    source = ((torch.arange(first, last, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0)
    below = source.long().clamp(max=depth - 1)
    above = (below + 1).clamp(max=depth - 1)
    weight = (source - below).view(-1, 1, 1, 1)
    start = int(below[0])
    planes = F.interpolate(probabilities[:, start:int(above[-1]) + 1].float().movedim(1, 0), size=shape[1:],
                           mode="bilinear", align_corners=False)  # (source slices, C, H, W)
    slab = planes[below - start] * (1 - weight) + planes[above - start] * weight
    return slab.movedim(0, 1)


def predicted_labels(task, model: torch.nn.Module, image: torch.Tensor, shape: Sequence[int],
                     postprocessing: dict | None = None):
    """One whole sample's label map (class indices, NumPy) on its own grid of `shape`: predicted as the task predicts
    (sliding window, mirroring where the run asked for it) at the plan's spacing, brought back to the sample's grid,
    then postprocessed as the run decided after training (postprocessing.py: the largest component of some labels)."""
    from .postprocessing import apply_postprocessing

    with torch.no_grad():
        probabilities = task.probabilities(task.predict(model, image[None]))[0]
    return apply_postprocessing(labels_on_grid(probabilities, shape).numpy(), postprocessing or {})

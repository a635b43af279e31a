"""Predicting a volume larger than the patch a model learnt on, window by window.

MONAI's `sliding_window_inference` stitches windows of a *spatial* output (a segmentation) into one map; a
classifier gives one vector per window, which is averaged instead. The windows are placed as MONAI places them
(half a window apart, the last flush with the far side), so every voxel is seen at least once."""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

WINDOWS_PER_BATCH = 4


def starts(size: int, window: int, overlap: float = 0.5) -> list[int]:
    """Window starts along one axis: `overlap` of a window apart, the last ending at the far side."""
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = math.ceil((size - window) / step) + 1
    return sorted({min(k * step, size - window) for k in range(count)})


def window_average(model: torch.nn.Module, volumes: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """The mean of the model's outputs over windows of `window` voxels covering each (C, D, H, W) volume (or
    (C, H, W) image) of the batch."""
    sizes = volumes.shape[2:]
    corners = list(itertools.product(*(starts(n, w) for n, w in zip(sizes, window))))
    total = None
    for first in range(0, len(corners), WINDOWS_PER_BATCH):
        chunk = corners[first:first + WINDOWS_PER_BATCH]
        crops = [volumes[(slice(None), slice(None), *(slice(a, a + w) for a, w in zip(corner, window)))] for corner in chunk]
        outputs = model(torch.cat(crops)).float().view(len(chunk), len(volumes), -1).sum(0)
        total = outputs if total is None else total + outputs
    return total / len(corners)

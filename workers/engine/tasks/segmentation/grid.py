"""Predictions back on the sample's own grid. A model of a plan predicts at the plan's spacing (the store holds each
sample resampled whole, so the two grids span the same field of view); the label map a person sees, downloads or is
scored against with the original spacing lies on the sample's own voxels. The class probabilities are resampled,
then the largest taken (as nnU-Net does): resampling labels would round the outlines twice."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def labels_on_grid(probabilities: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The label map ((D, H, W) or (H, W), int64) of one sample's class probabilities ((C, D, H, W) or (C, H, W) at the
    plan's spacing), on a grid of `shape` covering the same field of view (trilinear, bilinear in 2D)."""
    shape = tuple(int(s) for s in shape)
    if tuple(probabilities.shape[1:]) == shape:
        return probabilities.argmax(0)
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    resampled = F.interpolate(probabilities[None].float(), size=shape, mode=mode, align_corners=False)[0]
    return resampled.argmax(0)

"""Where a classifier looks: one sample's class probabilities and a Grad-CAM heat map over it.

Grad-CAM (Selvaraju et al., ICCV 2017) weights each channel of a convolutional layer's output by the mean gradient of
the explained class's score over that channel, sums the channels and keeps the positive part: the regions whose
features raised the score. The layer is the network's last convolutional stage (the zoo registry's `gradcam_layer`):
the finest map that still sees the whole decision, at the stage's resolution (a 64-pixel image through three
poolings: an 8x8 map), upsampled onto the input.

MONAI's GradCAM computes it, for 2D images and volumes alike. pytorch-grad-cam (PyPI `grad-cam`), which the design
names for 2D, installs here but brings OpenCV and Matplotlib (about 200 MB) for what MONAI, already pinned, does in
both dimensions with one code path: one implementation keeps 2D and 3D maps the same kind of map.

The map is computed on the input the model saw (the run's preprocessing: the training cache's 8-bit image, or the
plan's resampled and normalised volume). A volume (or planned image) larger than the patch the model learnt on is
predicted window by window with the windows' logits averaged (workers/engine/tasks/windows.py); its heat map is each
window's map for the class predicted on the whole, stitched by averaging where windows overlap. No Django here."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tasks.windows import starts, window_average
from .zoo.networks import NETWORK
from .zoo.registry import MODELS

METHOD = "Grad-CAM (MONAI)"


@dataclass
class Explained:
    """One sample explained: each class's probability, the class the map explains, and the heat map on the input's
    spatial grid (float32 in [0, 1], 1 at the peak; None where the model gives no gradients, `note` says why)."""
    probabilities: list[float]
    explained_class: int
    heat_map: np.ndarray | None
    windows: int
    note: str = ""


class NoGradients(RuntimeError):
    """The model computes its outputs without gradients to its layers (an ONNX graph run as it is)."""


def target_layer_of(model: nn.Module, architecture: str) -> str | None:
    """The module Grad-CAM looks at: the registry's for a zoo network; for a network converted from an ONNX file, its
    last convolution (the registry cannot know its stages); None where it has none."""
    if architecture in MODELS:
        return f"{NETWORK}.{MODELS[architecture].gradcam_layer}"
    convolutions = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d | nn.Conv3d)]
    return convolutions[-1] if convolutions else None


def explain(model: nn.Module, image: torch.Tensor, probabilities: Callable[[torch.Tensor], torch.Tensor],
            target_layer: str | None, window: Sequence[int] | None = None, class_index: int | None = None) -> Explained:
    """`image`: one (C, H, W) image or (C, D, H, W) volume as the model takes it. `probabilities`: how the run's loss
    turns logits into probabilities. `window`: the patch a model of volumes learnt on (None: the image is one pass).
    The map explains `class_index`, by default the predicted class."""
    model = model.eval()
    batch = image[None].float()
    windows = corners(batch.shape[2:], window)
    with torch.no_grad():
        logits = model(batch) if len(windows) == 1 else window_average(model, batch, window)
    scores = probabilities(logits.float())[0]
    explained = int(scores.argmax()) if class_index is None else class_index
    found = [float(p) for p in scores]
    if target_layer is None:
        return Explained(found, explained, None, len(windows), "This model has no convolutional layer to look at: the "
                                                               "prediction alone, without a heat map.")
    try:
        heat = stitched_map(model, batch, target_layer, explained, window, windows)
    except NoGradients as missing:
        return Explained(found, explained, None, len(windows), f"{missing}: the prediction alone, without a heat map.")
    return Explained(found, explained, peak_scaled(heat), len(windows), flat_note(heat))


def corners(sizes: Sequence[int], window: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Where each window starts (one window, at the origin, where the input fits the patch)."""
    if window is None or all(n <= w for n, w in zip(sizes, window)):
        return [(0,) * len(sizes)]
    return list(itertools.product(*(starts(n, w) for n, w in zip(sizes, window))))


def stitched_map(model: nn.Module, batch: torch.Tensor, target_layer: str, class_index: int,
                 window: Sequence[int] | None, windows: list[tuple[int, ...]]) -> torch.Tensor:
    """The raw (not normalised) Grad-CAM map over the whole input: one pass, or each window's map averaged where
    windows overlap (every voxel is in at least one window)."""
    from monai.visualize import GradCAM

    # Raw maps (no per-map rescaling): windows are stitched on one scale, then the whole is scaled to its peak once.
    cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=lambda raw: raw)
    if len(windows) == 1:
        return grad_cam(cam, batch, class_index)[0, 0]
    total = torch.zeros(batch.shape[2:])
    seen = torch.zeros(batch.shape[2:])
    for corner in windows:
        region = tuple(slice(a, a + w) for a, w in zip(corner, window))
        total[region] += grad_cam(cam, batch[(slice(None), slice(None), *region)], class_index)[0, 0]
        seen[region] += 1
    return total / seen


def grad_cam(cam, batch: torch.Tensor, class_index: int) -> torch.Tensor:
    """(1, 1, *spatial) map for one class on one input; NoGradients where the model's outputs carry no gradient."""
    with torch.enable_grad():
        try:
            heat = cam(batch.clone().requires_grad_(True), class_idx=class_index)
        except (RuntimeError, KeyError) as exc:
            raise NoGradients(f"This model gives no gradients at its layers ({type(exc).__name__})") from exc
    return heat.detach().float()


def peak_scaled(heat: torch.Tensor) -> np.ndarray:
    """The map divided by its peak: 1 where the evidence is strongest, 0 where none (ReLU kept only positive parts)."""
    values = heat.clamp(min=0).numpy().astype(np.float32)
    peak = float(values.max()) if values.size else 0.0
    return values / peak if peak > 0 else values


def flat_note(heat: torch.Tensor) -> str:
    if float(heat.max()) > 0:
        return ""
    return "The heat map is empty: no region raised this class's score (the model decided by lowering the others)."


def resized(heat_map: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A heat map on the model input's grid moved onto the sample's own grid (the viewer's): bilinear for images,
    trilinear for volumes. The input was the sample resized (the training cache) or resampled by spacing (a plan's
    store) whole, so the two grids span the same extent."""
    shape = tuple(int(n) for n in shape)
    if heat_map.shape == shape:
        return heat_map.astype(np.float32)
    mode = "trilinear" if len(shape) == 3 else "bilinear"
    values = torch.from_numpy(np.ascontiguousarray(heat_map, dtype=np.float32))[None, None]
    return F.interpolate(values, size=shape, mode=mode, align_corners=False)[0, 0].clamp(0, 1).numpy()


def peak_position(heat_map: np.ndarray) -> tuple[int, ...]:
    """Where the map is highest (row, column; or slice, row, column)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(heat_map)), heat_map.shape))

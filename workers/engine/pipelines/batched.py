"""Augmentation of whole batches where the model trains (on the GPU when it trains there).

Per image, in data-loading processes, each operation costs 2-10 ms on a CPU core; a GPU
trains ResNet-18 faster than a machine's cores can augment for it. These functions are
the same operations with the same parameters and meaning, applied to a batch tensor
(B, C, H, W) on whatever device it is, every image drawing its own values from a torch
generator (so a seed still reproduces a run on a given device). They are torch code of
our own because MONAI's and torchvision's random transforms draw one set of values per
call, not one per image of a batch.

Only 2D batches: the training cache holds 2D images. A pipeline with an operation that has
no batched form here is applied per image, as before (`batched_form` returns None).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .operations import Operation
from .pipeline import Pipeline

EPSILON = 1e-7  # as MONAI's AdjustContrast, so both forms give the same curve


def uniform(low: float, high: float, count: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, device=like.device, dtype=like.dtype)


def chosen(operation: Operation, count: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Which images of the batch the operation applies to (its probability), as a (B, 1, 1, 1) mask."""
    picks = torch.rand(count, generator=generator, device=like.device) < operation.probability
    return picks.view(-1, 1, 1, 1)


def flip(operation, images, generator):
    if operation.axis == "head-foot":
        raise ValueError("A 2D image has no head-foot axis; flip left-right or up-down.")
    dim = 3 if operation.axis == "left-right" else 2
    return torch.where(chosen(operation, len(images), generator, images), images.flip(dim), images)


def warp(images: torch.Tensor, linear: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Resamples each image: output pixel p (from the centre, in pixels, (x, y)) reads input pixel linear @ p - shift."""
    _, _, height, width = images.shape
    half = torch.tensor([width / 2, height / 2], device=images.device, dtype=images.dtype)
    # affine_grid works in [-1, 1] per axis: rescale the pixel-space map to it.
    theta = torch.cat([linear * half[None, None, :] / half[None, :, None], (-shift / half)[..., None]], dim=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def identity(count: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(2, device=like.device, dtype=like.dtype).expand(count, 2, 2).clone()


def rotate(operation, images, generator):
    count = len(images)
    angles = uniform(*(math.radians(d) for d in operation.degrees), count, generator, images)
    angles = torch.where(chosen(operation, count, generator, images).view(-1), angles, torch.zeros_like(angles))
    cos, sin = torch.cos(angles), torch.sin(angles)
    linear = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    return warp(images, linear, torch.zeros(count, 2, device=images.device, dtype=images.dtype))


def zoom(operation, images, generator):
    count = len(images)
    factors = uniform(*operation.factor, count, generator, images)
    factors = torch.where(chosen(operation, count, generator, images).view(-1), factors, torch.ones_like(factors))
    return warp(images, identity(count, images) / factors.view(-1, 1, 1), torch.zeros(count, 2, device=images.device, dtype=images.dtype))


def shift(operation, images, generator):
    count, (height, width) = len(images), images.shape[2:]
    sides = torch.tensor([width, height], device=images.device, dtype=images.dtype)
    offsets = (2 * torch.rand(count, 2, generator=generator, device=images.device, dtype=images.dtype) - 1) * operation.fraction * sides
    offsets = offsets * chosen(operation, count, generator, images).view(-1, 1)
    return warp(images, identity(count, images), offsets)


def extent(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = images.flatten(1)
    return flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)


def gamma_contrast(operation, images, generator):
    count = len(images)
    gammas = uniform(*operation.gamma, count, generator, images).view(-1, 1, 1, 1)
    low, high = extent(images)
    curved = ((images - low) / (high - low + EPSILON)).clamp_min(0) ** gammas * (high - low) + low
    return torch.where(chosen(operation, count, generator, images), curved, images)


def additive_gaussian_noise(operation, images, generator):
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype) * operation.std + operation.mean
    return torch.where(chosen(operation, len(images), generator, images), images + noise, images)


def add(operation, images, generator):
    count, channels = images.shape[:2]
    values = uniform(*operation.value, count * (channels if operation.per_channel else 1), generator, images)
    return torch.where(chosen(operation, count, generator, images), images + values.view(count, -1, 1, 1), images)


def multiply(operation, images, generator):
    count, channels = images.shape[:2]
    factors = uniform(*operation.factor, count * (channels if operation.per_channel else 1), generator, images)
    return torch.where(chosen(operation, count, generator, images), images * factors.view(count, -1, 1, 1), images)


def invert(operation, images, generator):
    low, high = extent(images)
    return torch.where(chosen(operation, len(images), generator, images), low + high - images, images)


BATCHED: dict[str, Callable[[Operation, torch.Tensor, torch.Generator], torch.Tensor]] = {
    "flip": flip, "rotate": rotate, "zoom": zoom, "shift": shift, "gamma_contrast": gamma_contrast,
    "additive_gaussian_noise": additive_gaussian_noise, "add": add, "multiply": multiply, "invert": invert,
}


class BatchAugmentation:
    """A pipeline whose every operation has a batched form, applied to (B, C, H, W) batches."""

    def __init__(self, pipeline: Pipeline):
        self.operations = pipeline.operations

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        generator = torch.Generator(device=images.device).manual_seed(seed)
        for operation in self.operations:
            images = BATCHED[operation.name](operation, images, generator)
        return images


def batched_form(pipeline: Pipeline | None) -> BatchAugmentation | None:
    if pipeline is None or not pipeline.operations or any(op.name not in BATCHED for op in pipeline.operations):
        return None
    if any(op.name == "flip" and op.axis == "head-foot" for op in pipeline.operations):
        return None  # the per-image path says clearly why a 2D image cannot take it
    return BatchAugmentation(pipeline)

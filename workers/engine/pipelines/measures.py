"""Aggregation (P2): per-sample values for a table and charts.

Each measure is a function of the sample's pixels (channels first, as the operations
give them), its mask and its spacing; the registry says its title and unit. Volumes
and areas use the voxel spacing, so a mask of 1,000 voxels of 1 x 0.5 x 0.5 mm is
0.25 ml.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


class MeasureError(ValueError):
    """The measure cannot be taken on this sample (no mask, no spacing); the message says why."""


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    unit: str
    function: Callable[[np.ndarray, np.ndarray | None, tuple[float, ...]], float]
    needs_mask: bool = False


def percentile(q: float):
    return lambda image, mask, spacing: float(np.percentile(image, q))


def foreground(mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        raise MeasureError("this sample has no mask")
    return np.asarray(mask) > 0


def voxel_size(spacing: tuple[float, ...], dims: int) -> float:
    if len(spacing) < dims or not all(s > 0 for s in spacing[-dims:]):
        raise MeasureError("the sample's spacing is unknown, so sizes cannot be given in mm")
    return float(np.prod(spacing[-dims:]))


def mask_volume_ml(image, mask, spacing) -> float:
    region = foreground(mask)
    if region.ndim != 3:
        raise MeasureError("a volume in ml needs a 3D mask; this sample is 2D (see the area in mm²)")
    return float(region.sum()) * voxel_size(spacing, 3) / 1000.0


def lesion_area_mm2(image, mask, spacing) -> float:
    region = foreground(mask)
    if region.ndim == 3:  # the largest cross-section of a volume
        return float(region.sum(axis=(1, 2)).max()) * voxel_size(spacing, 2)
    return float(region.sum()) * voxel_size(spacing, 2)


def masked_mean(image, mask, spacing) -> float:
    region = foreground(mask)
    values = image[0][region] if image.shape[1:] == region.shape else None
    if values is None:
        raise MeasureError("the mask's shape differs from the image's")
    return float(values.mean()) if values.size else float("nan")


MEASURES = {m.name: m for m in [
    Measure("mean", "Mean intensity", "", lambda image, mask, spacing: float(image.mean())),
    Measure("std", "Standard deviation", "", lambda image, mask, spacing: float(image.std())),
    Measure("min", "Minimum", "", lambda image, mask, spacing: float(image.min())),
    Measure("max", "Maximum", "", lambda image, mask, spacing: float(image.max())),
    Measure("p5", "5th percentile", "", percentile(5)),
    Measure("median", "Median", "", percentile(50)),
    Measure("p95", "95th percentile", "", percentile(95)),
    Measure("mask_volume", "Mask volume", "ml", mask_volume_ml, needs_mask=True),
    Measure("lesion_area", "Lesion area (largest slice)", "mm²", lesion_area_mm2, needs_mask=True),
    Measure("mask_mean", "Mean intensity inside the mask", "", masked_mean, needs_mask=True),
]}


def measure(image: np.ndarray, names: list[str], mask: np.ndarray | None = None, spacing: tuple[float, ...] = ()) -> dict:
    """{measure: value} for one sample, and {measure: reason} under "problems" for those it cannot take."""
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; known: {', '.join(MEASURES)}")
    values, problems = {}, {}
    for name in names:
        try:
            values[name] = MEASURES[name].function(np.asarray(image, dtype=np.float32), mask, tuple(spacing))
        except MeasureError as exc:
            problems[name] = str(exc)
    return {"values": values, "problems": problems}


def histogram(images: list[np.ndarray], bins: int = 64) -> tuple[list[float], list[int]]:
    """One histogram over several images with shared bin edges: (edges, counts)."""
    if not images:
        return [], []
    low = min(float(np.min(i)) for i in images)
    high = max(float(np.max(i)) for i in images)
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    counts = sum(np.histogram(i, bins=edges)[0] for i in images)
    return edges.tolist(), [int(c) for c in counts]

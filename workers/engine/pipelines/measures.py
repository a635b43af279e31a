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
    edges = shared_edges(min(float(np.min(i)) for i in images), max(float(np.max(i)) for i in images), bins)
    return edges, [int(c) for c in np.sum([counts_in(i, edges) for i in images], axis=0)]


HISTOGRAM = "histogram"
HISTOGRAM_BINS = 64
CHART_BINS = 30


def schemas() -> list[dict]:
    """What an aggregation pipeline can compute, for the editor and the API."""
    rows = [{"name": m.name, "title": m.title, "unit": m.unit, "needs_mask": m.needs_mask} for m in MEASURES.values()]
    rows.append({"name": HISTOGRAM, "title": "Intensity histogram (shared bins, per sample and per label)", "unit": "voxels",
                 "needs_mask": False})
    return rows


def checked_measures(names) -> list[str]:
    """The names in the order given, once each; ValueError naming the unknown ones."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("measures must be a list of measure names")
    known = [*MEASURES, HISTOGRAM]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown measure(s) {', '.join(unknown)}; choose among {', '.join(known)}")
    return list(dict.fromkeys(names))


def shared_edges(low: float, high: float, bins: int = HISTOGRAM_BINS) -> list[float]:
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = 0.0, 1.0
    return np.linspace(low, high if high > low else low + 1, bins + 1).tolist()


def counts_in(values: np.ndarray, edges: list[float]) -> list[int]:
    return [int(c) for c in np.histogram(np.asarray(values, dtype=np.float64), bins=np.asarray(edges))[0]]


def box_statistics(values: list[float]) -> dict:
    """Tukey's box (quartiles, whiskers at 1.5 IQR within the data) for a precomputed Plotly box trace."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not data.size:
        return {"count": 0}
    q1, median, q3 = (float(v) for v in np.percentile(data, [25, 50, 75]))
    reach = 1.5 * (q3 - q1)
    inside = data[(data >= q1 - reach) & (data <= q3 + reach)]
    return {"count": int(data.size), "mean": float(data.mean()), "q1": q1, "median": median, "q3": q3,
            "lowerfence": float(inside.min()), "upperfence": float(inside.max()),
            "min": float(data.min()), "max": float(data.max())}


def summarise(rows: list[tuple[str, dict]], names: list[str], bins: int = CHART_BINS) -> dict:
    """Per measure: a box per label and a histogram per label over bins shared by every label.

    rows are (label, {measure: value}); a measure missing from a row (it could not be
    taken on that sample) is left out of that measure's charts only.
    """
    labels = sorted({label for label, _ in rows})
    summary = {}
    for name in names:
        by_label = {label: [values[name] for row_label, values in rows if row_label == label and values.get(name) is not None
                            and np.isfinite(values[name])] for label in labels}
        everything = [v for values in by_label.values() for v in values]
        if not everything:
            continue
        edges = shared_edges(min(everything), max(everything), bins)
        summary[name] = {"edges": edges, "labels": {
            label: {"box": box_statistics(values), "counts": counts_in(values, edges)} for label, values in by_label.items() if values}}
    return summary

"""What every job needs to know of stored samples: how their arrays are laid out, and what a set
of them adds up to (the dataset's summary). Ingest, merge, preprocessing, measures and the pipeline
preview all use these, so the rules are written once.

Stored layouts: a 2D image is (H, W) or (H, W, 3); a volume is (D, H, W) or (D, H, W, 3) for
colour, or (C, D, H, W) for several channels. Operations take channels first: (C, H, W) or (C, D, H, W).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Protocol

import numpy as np

IMAGE = "image"
VOLUME = "volume"
CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"


def channels_first(array: np.ndarray, kind: str) -> np.ndarray:
    """A stored array as the operations take it, in float32."""
    array = np.asarray(array, dtype=np.float32)
    if kind == IMAGE:
        return array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
    return array if array.ndim == 4 else array[None]


def stored_layout(output: np.ndarray, kind: str) -> np.ndarray:
    """An operation's output (channels first) as it is stored."""
    if kind == IMAGE:
        return output.transpose(1, 2, 0) if output.shape[0] == 3 else output[0]
    return output[0] if output.shape[0] == 1 else output


def grid(shape: list[int] | tuple[int, ...], kind: str) -> tuple[int, int, int, int]:
    """(depth, height, width, channels) of a stored array's shape."""
    colour = kind == IMAGE and len(shape) == 3 or kind == VOLUME and len(shape) == 4 and shape[-1] == 3
    if kind == IMAGE:
        height, width = shape[:2]
        return 1, int(height), int(width), 3 if colour else 1
    depth, height, width = shape[-4:-1] if colour else shape[-3:]
    return int(depth), int(height), int(width), 3 if colour else 1


def stored_shape(kind: str, depth: int, height: int, width: int, channels: int) -> list[int]:
    """The stored array's shape of a sample known by its grid (the inverse of `grid`, for one channel or RGB)."""
    if kind == IMAGE:
        return [height, width] + ([3] if channels == 3 else [])
    return [depth, height, width]


class Described(Protocol):
    label: str
    patient: str
    modality: str
    mask: str
    meta: dict


def summarise(samples: Iterable[Described]) -> dict:
    """A dataset's summary fields from its samples: counts per class, patients, modalities, task, and how
    many samples have a mask and which label values the masks hold."""
    samples = list(samples)
    masked = [s for s in samples if s.mask]
    return {
        "class_counts": dict(sorted(Counter(s.label for s in samples).items())),
        "sample_count": len(samples),
        "patient_count": len({s.patient for s in samples if s.patient}),
        "modalities": ", ".join(sorted({s.modality for s in samples if s.modality}))[:200],
        "task": SEGMENTATION if masked else CLASSIFICATION,
        "masked_count": len(masked),
        "mask_values": sorted({int(v) for s in masked for v in s.meta.get("mask_values", [])}),
    }

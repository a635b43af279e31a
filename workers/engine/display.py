"""Turning stored pixels into something to look at or train on: rescale, window, slice, encode.

Used by the training cache, thumbnails and the sample viewer, so all three agree.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

AXES = {"axial": 0, "coronal": 1, "sagittal": 2}


def modality_values(pixels: np.ndarray, meta: dict) -> np.ndarray:
    """Stored values -> modality values (Hounsfield units for CT) by rescale slope and intercept."""
    slope, intercept = meta.get("rescale_slope", 1.0), meta.get("rescale_intercept", 0.0)
    values = pixels.astype(np.float32)
    if slope != 1.0 or intercept != 0.0:
        values = values * np.float32(slope) + np.float32(intercept)
    return values


def default_window(values: np.ndarray, meta: dict) -> tuple[float, float]:
    """The file's own window when it has one, else the 0.5-99.5 percentile range."""
    if meta.get("window_width", 0) > 0:
        return float(meta["window_center"]), float(meta["window_width"])
    sample = values[:: max(1, values.size // 200_000)] if values.ndim == 1 else values.ravel()[:: max(1, values.size // 200_000)]
    low, high = (float(v) for v in np.percentile(sample, (0.5, 99.5))) if sample.size else (0.0, 1.0)
    if high <= low:
        low, high = float(values.min()), float(values.max())
    return (low + high) / 2, max(high - low, 1e-6)


def to_uint8(pixels: np.ndarray, meta: dict, center: float | None = None, width: float | None = None) -> np.ndarray:
    """Grey images through a window (linear, as DICOM PS3.3 C.11.2.1.2); colour scaled to 8 bits."""
    if pixels.ndim == 3:  # callers pass 2D planes: a third axis is colour
        if pixels.dtype == np.uint8:
            return pixels
        return (pixels.astype(np.float32) * (255.0 / max(float(pixels.max()), 1.0))).astype(np.uint8)
    if pixels.dtype == np.uint8 and center is None and not meta.get("window_width") and meta.get("photometric") != "MONOCHROME1":
        return pixels
    values = modality_values(pixels, meta)
    if center is None or width is None:
        center, width = default_window(values, meta)
    low = center - width / 2
    scaled = np.clip((values - low) * (255.0 / max(width, 1e-6)), 0, 255).astype(np.uint8)
    if meta.get("photometric") == "MONOCHROME1":
        scaled = 255 - scaled
    return scaled


def plane(volume: np.ndarray, axis: str, index: int | None) -> tuple[np.ndarray, int, int]:
    """One 2D plane of a (D, H, W[, 3]) volume; returns (plane, index used, number of planes)."""
    dim = AXES[axis]
    count = volume.shape[dim]
    index = count // 2 if index is None else max(0, min(int(index), count - 1))
    taken = np.take(volume, index, axis=dim)
    # Coronal and sagittal planes are shown head up.
    if dim != 0:
        taken = taken[::-1]
    return taken, index, count


def png_bytes(pixels: np.ndarray, max_size: int | None = None, aspect: float = 1.0) -> bytes:
    """A PNG; aspect (row spacing over column spacing) stretches rows so that millimetres
    are square on screen: a coronal plane of 5 mm slices is not shown squashed."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if abs(aspect - 1.0) > 0.01:
        height = max(1, min(round(image.height * aspect), 8 * max(image.width, image.height)))
        image = image.resize((image.width, height), Image.BILINEAR)
    if max_size:
        image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def overlay(base: np.ndarray, mask: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """Colour the mask's labels over a grey or colour picture."""
    rgb = np.repeat(base[..., None], 3, axis=-1).astype(np.float32) if base.ndim == 2 else base.astype(np.float32)
    palette = np.array([[0, 0, 0], [255, 64, 64], [64, 200, 64], [64, 128, 255], [255, 200, 0], [200, 64, 255]], np.float32)
    labels = mask.astype(np.int64) % len(palette)
    painted = labels > 0
    rgb[painted] = (1 - opacity) * rgb[painted] + opacity * palette[labels[painted]]
    return rgb.astype(np.uint8)


# A heat map's colours, low to high (blue, cyan, green, yellow, red: the "jet" order people read heat maps in), and its
# opacity: the coolest values fade out, so the sample shows through where the model did not look.
HEAT_STOPS = np.array([[0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]], np.float32)
HEAT_FADE_BELOW = 0.15


def heat_colours(values: np.ndarray) -> np.ndarray:
    """An RGBA picture of a heat map with values in [0, 1]: coloured low to high along HEAT_STOPS, transparent at 0
    and opaque from HEAT_FADE_BELOW up (the page's opacity slider then dims the whole overlay)."""
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0, 1)
    position = values * (len(HEAT_STOPS) - 1)
    lower = np.minimum(position.astype(np.int64), len(HEAT_STOPS) - 2)
    fraction = (position - lower)[..., None]
    rgb = HEAT_STOPS[lower] * (1 - fraction) + HEAT_STOPS[lower + 1] * fraction
    alpha = np.clip(values / HEAT_FADE_BELOW, 0, 1) * 255
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)

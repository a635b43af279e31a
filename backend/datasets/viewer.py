"""What the sample viewer shows: planes of a sample with window/level and mask, thumbnails, tags."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from backend.core.errors import ServiceError
from workers.engine.display import AXES, default_window, modality_values, overlay, plane, png_bytes, to_uint8

from .models import Sample

THUMBNAIL_SIZE = 128
FLAT = 0.001  # a window narrower than this shows a flat plane (one value): its width is this, never 0
MAX_TAG_VALUE = 200


def load(sample: Sample, relative: str) -> np.ndarray:
    path = sample.project_dir / relative
    if not path.is_file():
        raise ServiceError("The sample's pixels are missing from storage; ingest the dataset again to rebuild them.",
                           code="file_missing", status_code=404)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def is_colour(sample: Sample) -> bool:
    return sample.channels == 3


def volume_of(sample: Sample, array: np.ndarray, frame: int) -> np.ndarray:
    """The (D, H, W[, 3]) volume to slice: 4D volumes pick one frame of their leading axis."""
    if sample.kind == Sample.Kind.IMAGE:
        return array[None]
    if array.ndim == 4 and not is_colour(sample):
        if not 0 <= frame < array.shape[0]:
            raise ServiceError(f"frame must be between 0 and {array.shape[0] - 1}.", field="frame")
        return array[frame]
    return array


def frames(sample: Sample, array_shape) -> int:
    return array_shape[0] if sample.kind == Sample.Kind.VOLUME and len(array_shape) == 4 and not is_colour(sample) else 1


def render(sample: Sample, axis: str = "axial", index: int | None = None, center: float | None = None,
           width: float | None = None, frame: int = 0, with_mask: bool = False) -> tuple[bytes, int, int]:
    """A PNG of one plane; returns (png, index used, number of planes along the axis)."""
    if axis not in AXES:
        raise ServiceError(f"axis must be one of {', '.join(AXES)}.", field="axis")
    if sample.kind == Sample.Kind.IMAGE and axis != "axial":
        raise ServiceError("A 2D image has only the axial plane.", field="axis")
    if width is not None and width <= 0:
        raise ServiceError("The window width must be above 0.", field="width")
    if (center is None) != (width is None):
        raise ServiceError("Give both center and width, or neither.", field="width" if width is None else "center")
    volume = volume_of(sample, load(sample, sample.array), frame)
    picture, used, count = plane(volume, axis, index)
    shown = to_uint8(np.asarray(picture), sample.meta, center, width)
    if with_mask and sample.mask:
        mask_volume = load(sample, sample.mask)
        mask_volume = mask_volume[None] if sample.kind == Sample.Kind.IMAGE else mask_volume
        mask_plane, _, _ = plane(mask_volume, axis, used)
        if mask_plane.shape[:2] == shown.shape[:2]:
            shown = overlay(shown, np.asarray(mask_plane))
    return png_bytes(shown, aspect=pixel_aspect(sample, axis)), used, count


def pixel_aspect(sample: Sample, axis: str) -> float:
    """Row spacing over column spacing of the plane shown (1 when the spacing is unknown)."""
    spacing = [float(v) for v in sample.spacing or [] if isinstance(v, int | float) and v > 0]
    if sample.kind == Sample.Kind.IMAGE or axis == "axial":
        rows_and_columns = spacing[-2:]
    elif len(spacing) == 3:
        rows_and_columns = [spacing[0], spacing[2] if axis == "coronal" else spacing[1]]
    else:
        rows_and_columns = []
    return rows_and_columns[0] / rows_and_columns[1] if len(rows_and_columns) == 2 else 1.0


def thumbnail(sample: Sample) -> Path:
    """Made on first request and kept: ingest stays fast, and the grid only pays for what it shows."""
    path = sample.thumbnail_path
    if not path.is_file():
        volume = volume_of(sample, load(sample, sample.array), 0)
        picture, _, _ = plane(volume, "axial", None)
        data = png_bytes(to_uint8(np.asarray(picture), sample.meta), max_size=THUMBNAIL_SIZE)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")  # threads of one process may draw the same one
        temporary.write_bytes(data)
        os.replace(temporary, path)
    return path


def display_facts(sample: Sample) -> dict:
    """Shape per axis, frames, and the default window in modality units (HU for CT)."""
    array = load(sample, sample.array)
    volume = volume_of(sample, array, 0)
    middle, _, _ = plane(volume, "axial", None)
    if is_colour(sample):
        center, width = 127.5, 255.0
    else:
        center, width = default_window(modality_values(np.asarray(middle), sample.meta), sample.meta)
        if width < FLAT and sample.kind == Sample.Kind.VOLUME:  # a flat middle slice: the window of the whole volume
            center, width = default_window(modality_values(np.asarray(volume).ravel(), sample.meta), sample.meta)
    spatial = volume.shape[:3]
    return {
        "planes": {"axial": spatial[0], "coronal": spatial[1], "sagittal": spatial[2]} if sample.kind == Sample.Kind.VOLUME else {"axial": 1},
        "frames": frames(sample, array.shape),
        # A width the viewer can send back: a flat sample's is tiny, and rounded it would be 0, which the plane refuses.
        "window_center": round(float(center), 3), "window_width": max(round(float(width), 3), FLAT),
        "units": "HU" if sample.modality == "CT" else "",
    }


def tags(sample: Sample) -> list[dict]:
    """The stored (de-identified) header: DICOM attributes, or the NIfTI facts kept at ingest."""
    if sample.original.endswith(".dcm") and (sample.project_dir / sample.original).is_file():
        import pydicom  # ~30 MB resident beside NumPy: only the workers that show a header pay for it

        ds = pydicom.dcmread(sample.project_dir / sample.original, stop_before_pixels=True, force=True)
        return tag_rows(ds, 0)
    # Not the file's: the row of a joined table, and the mask's label values (the page's facts line shows them).
    facts = {k: v for k, v in sample.meta.items() if k not in ("table", "mask_values")}
    return [{"tag": "", "name": key, "value": str(value)[:MAX_TAG_VALUE], "depth": 0} for key, value in sorted(facts.items())]


def tag_rows(ds, depth: int) -> list[dict]:
    """Attributes in file order; a sequence's items follow it one level deeper."""
    rows = []
    for element in ds:
        if element.VR in ("OB", "OW", "OF", "OD", "UN") or element.tag.group == 0x7FE0:
            continue
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        if element.VR == "SQ":
            items = len(element.value)
            rows.append({"tag": tag, "name": element.name, "value": f"{items} item{'s' if items != 1 else ''}", "depth": depth})
            for item in element.value:
                rows.extend(tag_rows(item, depth + 1))
            continue
        rows.append({"tag": tag, "name": element.name, "value": str(element.value)[:MAX_TAG_VALUE], "depth": depth})
    return rows

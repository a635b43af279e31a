"""A segmentation evaluation's cases as the results page shows them (docs/results.md, "Segmentation"): sorted worst
first or by one label's measure, and each case's predicted label map drawn over the sample viewer's plane (its
outline, or filled) so it lies over the reference mask the viewer draws. The maps are written by the evaluation job
(workers/evaluation.py); this module only reads them (NumPy and Pillow: the web tier imports no torch)."""
from __future__ import annotations

import numpy as np
from django.db.models import F, FloatField
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast

from backend.core.errors import ServiceError
from backend.datasets.models import Sample
from backend.datasets.viewer import pixel_aspect
from workers.engine.display import AXES, overlay, plane, png_bytes

from .models import Evaluation, SegmentationCase

# Each order's sort: the worst first for every measure (lowest Dice, IoU and NSD; highest HD95).
CASE_ORDERS = {"worst": "mean_dice", "dice": "dice", "iou": "iou", "nsd": "nsd", "hd95": "-hd95", "sample": "sample"}
MASK_STYLES = ("outline", "fill")
FILL_OPACITY = 0.45


def ordered_cases(evaluation: Evaluation, order: str = "worst", label: str | None = None):
    """The evaluation's cases, worst first by mean foreground Dice, or by one label's measure (`label`: the first
    foreground label when not given); a 400 naming the choices for an unknown order or label."""
    if order not in CASE_ORDERS:
        raise ServiceError(f"order is one of {', '.join(CASE_ORDERS)}.", field="order")
    cases = evaluation.cases.select_related("sample")
    if order == "worst":
        return cases.order_by("mean_dice", "id")
    if order == "sample":
        return cases.order_by("sample_id", "id")
    labels = foreground_labels(evaluation)
    label = label or (labels[0] if labels else "")
    if label not in labels:
        raise ServiceError(f"class is one of the run's labels: {', '.join(labels) or '(none)'}.", field="class")
    measure = CASE_ORDERS[order].lstrip("-")
    value = Cast(KeyTransform(label, measure), FloatField())
    ascending = not CASE_ORDERS[order].startswith("-")
    return cases.annotate(sorted_by=value).order_by(F("sorted_by").asc() if ascending else F("sorted_by").desc(), "id")


def foreground_labels(evaluation: Evaluation) -> list[str]:
    return list((evaluation.results.get("classes") or [])[1:])


def case_of(evaluation: Evaluation, sample_id: int) -> SegmentationCase:
    case = evaluation.cases.select_related("sample").filter(sample_id=sample_id).first()
    if case is None:
        raise ServiceError(f"Evaluation {evaluation.pk} has no case of sample {sample_id}.", field="sample", code="not_found",
                           status_code=404)
    return case


def predicted_map(case: SegmentationCase) -> np.ndarray:
    path = case.evaluation.project.storage_dir / case.mask
    if not path.is_file():
        raise ServiceError("The predicted mask is missing from storage; evaluate the run again to rebuild it.",
                           code="file_missing", status_code=404)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def predicted_mask_png(case: SegmentationCase, axis: str = "axial", index: int | None = None,
                       style: str = "outline") -> tuple[bytes, int, int]:
    """One plane of a case's predicted label map as a transparent PNG on the grid, and with the pixel aspect, of the
    sample viewer's plane (GET /api/samples/{id}/slice/): each label's outline (or its area, half transparent) in the
    colour the viewer gives that label's reference; (png, index used, planes along the axis)."""
    if axis not in AXES:
        raise ServiceError(f"axis must be one of {', '.join(AXES)}.", field="axis")
    if style not in MASK_STYLES:
        raise ServiceError(f"style is one of {', '.join(MASK_STYLES)}.", field="style")
    sample = case.sample
    if sample is None:
        raise ServiceError("The case's sample was deleted: its plane cannot be drawn.", code="file_missing", status_code=404)
    if sample.kind == Sample.Kind.IMAGE and axis != "axial":
        raise ServiceError("A 2D image has only the axial plane.", field="axis")
    labels = predicted_map(case)
    volume = labels[None] if labels.ndim == 2 else labels
    drawn, used, count = plane(volume, axis, index)
    return png_bytes(coloured(np.asarray(drawn), style), aspect=pixel_aspect(sample, axis)), used, count


def coloured(labels: np.ndarray, style: str) -> np.ndarray:
    """(H, W, 4) RGBA of a plane of label values: transparent background, each label in its palette colour, along its
    outline (a pixel whose neighbour above, below, left or right holds another value, the image's border included) or
    over its whole area. The colours are the viewer's for the label values (its reference mask's: display.overlay)."""
    labels = labels.astype(np.int64)
    shown = labels > 0
    if style == "outline":
        padded = np.pad(labels, 1, mode="constant", constant_values=-1)
        centre = padded[1:-1, 1:-1]
        differs = ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre)
                   | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
        shown &= differs
    alpha = np.where(shown, 255 if style == "outline" else round(255 * FILL_OPACITY), 0).astype(np.uint8)
    return np.concatenate([overlay(np.zeros(labels.shape, np.uint8), labels, opacity=1.0), alpha[..., None]], axis=-1)

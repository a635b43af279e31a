"""A segmentation run's model on one image (issue 23, docs/results.md "Segment a file"): the explanation of a model whose
output is a map is its label map (a task with `spatial_output`), so an uploaded file (or a dataset's sample) goes through
the explanation's one lifecycle, upload and checks (explanations.py) and the worker predicts the labels instead of a heat
map (workers/segment_upload.py). Here: where its files lie, one plane of the label map drawn for the viewer, and the mask
downloads (NIfTI for a volume, PNG for a 2D image, DICOM SEG for a DICOM input). No torch in the web process."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.core.errors import ServiceError
from backend.datasets.viewer import pixel_aspect
from workers.engine.display import AXES, overlay, plane, png_bytes
from workers.engine.tasks import TASKS

from .models import Explanation, TrainingRun

LABEL_MAP = "labels.npy"  # the label map on the image's own grid, (D, H, W) with D 1 for an image, the dataset's values
# The files a mask downloads as: {as: (file name in the mask folder, content type, what it is)}.
MASK_FILES = {
    "nifti": ("mask.nii.gz", "application/gzip", "NIfTI (.nii.gz), with the input's affine and orientation"),
    "png": ("mask.png", "image/png", "PNG of the label values (8 or 16 bits)"),
    "preview": ("mask-preview.png", "image/png", "PNG in the viewer's colours"),
    "seg": ("mask-seg.dcm", "application/dicom", "DICOM SEG referencing the source images"),
}


def draws_a_map(run: TrainingRun | None) -> bool:
    """Whether the run's model gives a map as large as its input (segmentation): its explanation is a label map."""
    task = TASKS.get((run.spec or {}).get("task", "classification")) if run is not None else None
    return bool(task and task.spatial_output)


def mask_dir(explanation: Explanation) -> Path:
    """The label map and its files, kept with the model's (deleted with the run)."""
    return explanation.model_dir / "explanations" / "masks" / str(explanation.pk)


def is_segmented(explanation: Explanation) -> bool:
    return explanation.status == Explanation.Status.DONE and bool(explanation.results.get("label_map_shape"))


def require_segmented(explanation: Explanation) -> None:
    if explanation.status != Explanation.Status.DONE:
        raise ServiceError(f"Explanation {explanation.pk} is {explanation.status}: its mask comes once it is done.",
                           code="not_ready", status_code=409)
    if not explanation.results.get("label_map_shape"):
        raise ServiceError(f"Explanation {explanation.pk} is a classification's (probabilities and a heat map): it has no "
                           "mask. A segmentation run's model gives one.", code="no_mask", status_code=404)


def class_colours(count: int) -> list[str]:
    """The viewer's colour of each class, in class order (the background's too, never drawn), as #rrggbb."""
    row = overlay(np.zeros((1, count), np.uint8), np.arange(count)[None], opacity=1.0)[0]
    return ["#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb)) for rgb in row]


def mask_png(explanation: Explanation, axis: str = "axial", index: int | None = None) -> tuple[bytes, int, int]:
    """One plane of the label map in the classes' colours, transparent on the background, on the grid and with the
    pixel aspect of the upload's (or sample's) plane, so it lies over it; (png, index used, planes along the axis)."""
    from .explanations import image_of

    require_segmented(explanation)
    if axis not in AXES:
        raise ServiceError(f"axis must be one of {', '.join(AXES)}.", field="axis")
    image = image_of(explanation)
    if image.kind != "volume" and axis != "axial":
        raise ServiceError("A 2D image has only the axial plane.", field="axis")
    path = mask_dir(explanation) / LABEL_MAP
    if not path.is_file():
        raise ServiceError(f"Explanation {explanation.pk}'s label map is missing from storage; segment the file again.",
                           code="file_missing", status_code=404)
    labels = np.load(path, mmap_mode="r", allow_pickle=False)
    picture, used, count = plane(labels, axis, index)
    values = np.asarray(explanation.results.get("label_values") or range(len(explanation.results["classes"])))
    classes = np.searchsorted(np.sort(values), np.asarray(picture))  # a value's class: its place among the values
    rgba = np.concatenate([overlay(np.zeros(classes.shape, np.uint8), classes, opacity=1.0),
                           np.where(classes > 0, 255, 0).astype(np.uint8)[..., None]], axis=-1)
    return png_bytes(rgba, aspect=pixel_aspect(image, axis)), used, count


def mask_file(explanation: Explanation, kind: str | None = None) -> tuple[Path, str, str]:
    """(path, download name, content type) of the mask as `kind` (MASK_FILES; by default its first: NIfTI for a volume,
    PNG for a 2D image), or a 400 saying which files the mask has."""
    require_segmented(explanation)
    made = explanation.results.get("files") or {}
    kind = kind or next(iter(made), "nifti")
    if kind not in MASK_FILES:
        raise ServiceError(f"as must be one of {', '.join(MASK_FILES)}.", field="as")
    if kind not in made:
        raise ServiceError(f"This mask has no {kind} file: {why_not(explanation, kind)} It downloads as "
                           f"{', '.join(made) or 'nothing'}.", field="as")
    path = mask_dir(explanation) / made[kind]
    if not path.is_file():
        raise ServiceError(f"Explanation {explanation.pk}'s {kind} file is missing from storage; segment the file again.",
                           code="file_missing", status_code=404)
    stem = Path((explanation.upload or {}).get("name") or f"sample-{explanation.sample_id}").name
    for suffix in (".gz", ".nii", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    return path, f"{stem or 'image'}-{MASK_FILES[kind][0]}", MASK_FILES[kind][1]


def why_not(explanation: Explanation, kind: str) -> str:
    volume = explanation.results.get("label_map_shape", [1])[0] > 1 or (explanation.upload or {}).get("kind") == "volume"
    if kind == "seg":
        return ("a DICOM SEG references DICOM source images, and this input is not DICOM (or its header says nothing of "
                "where it lies)." if explanation.results.get("seg_note") is None else explanation.results["seg_note"])
    if kind == "nifti":
        return "NIfTI is for volumes and this is a 2D image; download the PNG."
    if kind in ("png", "preview"):
        return "PNG is for 2D images and this is a volume; download the NIfTI." if volume else "it was not written."
    return "it was not written."

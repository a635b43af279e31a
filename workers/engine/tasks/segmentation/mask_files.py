"""A predicted label map as files people take away (issue 23): NIfTI for a volume, PNG for a 2D image, and for a DICOM
input a DICOM SEG object that references the source images, which PACS viewers (OHIF, 3D Slicer, Horos) open over them.

The label map arrives on the sample's stored grid, as the ingest lays out pixels: (D, H, W) for a volume, (H, W) for an
image. A NIfTI volume was stored turned to the closest RAS orientation and flipped to radiological order
(ingest/nifti.py); a DICOM image or multi-frame file as its frames, rows and columns. Each writer puts the labels back
in the input's own geometry, so the mask lies on its scan in any viewer: a NIfTI mask has the input's affine (its
orientation too: an LAS input gives an LAS mask) and its qform/sform codes; a mask of DICOM input has the affine that
its ImagePositionPatient, ImageOrientationPatient and PixelSpacing give (as dcm2niix lays it out: columns, rows,
frames). No Django here.
"""
from __future__ import annotations

import gzip
import io
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from PIL import Image

from ...display import overlay
from ...ingest.masks import LPS_TO_RAS

# (d, h, w) of the stored layout -> (w, h, d): columns, rows, frames, the order DICOM-to-NIfTI converters write.
DICOM_ORDER = np.array([[2, 1], [1, 1], [0, 1]])
MANUFACTURER = "Medical imaging toolkit"


# ----------------------------------------------------------------------------------------------------------- NIfTI


def nifti_image(labels: np.ndarray, meta: dict, spacing: Sequence[float] = (), sources: Sequence | None = None,
                codes: dict | None = None) -> nib.Nifti1Image:
    """The label map ((D, H, W), the stored layout) in the input's geometry: a NIfTI input's orientation and affine
    (meta from ingest/nifti.py; `codes`: its {qform_code, sform_code}, scanner 1 when unknown); a DICOM input's from the
    `sources` (their headers, frames in the order of the label map's first axis), else from what the ingest kept of
    them (meta's position, orientation and pixel spacing); without either, the spacing alone."""
    from ...ingest.masks import voxel_to_world

    labels = compact(labels)
    if labels.ndim != 3:
        raise ValueError(f"a NIfTI mask is of a volume (D, H, W); this label map is {labels.shape}")
    world = dicom_world(sources, labels.shape[0]) if sources and "affine" not in meta else None
    if world is None:
        world = voxel_to_world(list(labels.shape), "volume", meta, [float(v) for v in spacing])
    if world is None:
        steps = [float(v) for v in spacing][-3:] if len(spacing) >= 3 else [1.0, 1.0, 1.0]
        world = np.diag([*steps, 1.0])
    image = nib.Nifti1Image(labels, world)
    if "affine" in meta:  # back to the file's own axes: its affine exactly, whatever its orientation (LAS, oblique)
        wanted = nib.orientations.axcodes2ornt(tuple(meta.get("orientation_codes") or "RAS"))
        image = image.as_reoriented(nib.orientations.ornt_transform(nib.orientations.io_orientation(world), wanted))
    else:
        image = image.as_reoriented(DICOM_ORDER)
    codes = codes or {}
    image.header.set_qform(image.affine, code=int(codes.get("qform_code", 1)))
    image.header.set_sform(image.affine, code=int(codes.get("sform_code", 1)))
    image.header.set_xyzt_units("mm")
    image.set_data_dtype(labels.dtype)
    return image


def nifti_bytes(labels: np.ndarray, meta: dict, spacing: Sequence[float] = (), sources: Sequence | None = None,
                codes: dict | None = None) -> bytes:
    """The label map as a .nii.gz file (nifti_image)."""
    return gzip.compress(nifti_image(labels, meta, spacing, sources, codes).to_bytes(), compresslevel=6, mtime=0)


def dicom_world(sources: Sequence, frames: int) -> np.ndarray | None:
    """The 4x4 matrix from (frame, row, column) to RAS millimetres of DICOM images, one frame each or one multi-frame
    file: a pixel lies at its frame's ImagePositionPatient + column x column spacing along the row direction + row x
    row spacing along the column direction (PS3.3 C.7.6.2.1.1); the frames step from the first position to the last
    (either way along the normal, as the file orders them). LPS -> RAS. None when the headers say nothing of where
    their frames lie, or hold another number of frames than the label map."""
    planes = frame_planes(sources)
    if len(planes) != frames or any(p is None for p in planes):
        return None
    position, orientation, (row_spacing, column_spacing), thickness = planes[0]
    along_row, along_column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    if frames > 1:
        step = (np.asarray(planes[-1][0], float) - np.asarray(position, float)) / (frames - 1)
    else:
        step = np.cross(along_row, along_column) * (thickness or 1.0)
    matrix = np.eye(4)
    matrix[:3, 0] = LPS_TO_RAS @ step
    matrix[:3, 1] = LPS_TO_RAS @ along_column * row_spacing
    matrix[:3, 2] = LPS_TO_RAS @ along_row * column_spacing
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(position, float)
    return matrix


def frame_planes(sources: Sequence) -> list:
    """(ImagePositionPatient, ImageOrientationPatient, (row, column) PixelSpacing, SliceThickness) of every frame of the
    sources, in order (None for a frame whose header lacks one): a multi-frame file's from its functional groups
    (per-frame, else shared), else its own."""
    planes = []
    for ds in sources:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        if per_frame:
            for frame in per_frame:
                planes.append(plane_of(frame, shared, ds))
        else:
            planes.extend([plane_of(None, None, ds)] * int(ds.get("NumberOfFrames", 1) or 1))
    return planes


def plane_of(frame, shared, ds) -> tuple[list[float], list[float], tuple[float, float], float] | None:
    def found(sequence: str, keyword: str):
        for group in (frame, shared):
            items = group.get(sequence) if group is not None else None
            if items and keyword in items[0]:
                return items[0].get(keyword)
        return ds.get(keyword)

    position, orientation = found("PlanePositionSequence", "ImagePositionPatient"), found("PlaneOrientationSequence", "ImageOrientationPatient")
    spacing, thickness = found("PixelMeasuresSequence", "PixelSpacing"), found("PixelMeasuresSequence", "SliceThickness")
    if position is None or orientation is None or spacing is None:
        return None
    return ([float(v) for v in position], [float(v) for v in orientation], (float(spacing[0]), float(spacing[1])),
            float(thickness) if thickness not in (None, "") else 0.0)


def compact(labels: np.ndarray) -> np.ndarray:
    """Label values in the smallest unsigned integers that hold them (uint8, else uint16), as masks are stored."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        raise ValueError("label values must lie in 0..65535")
    return labels.astype(np.uint8 if labels.max(initial=0) <= 255 else np.uint16)


# ------------------------------------------------------------------------------------------------------------- PNG


def label_png(labels: np.ndarray) -> bytes:
    """A 2D label map as a grayscale PNG of its values as they are (8 bits, 16 when a value is over 255): the file a
    program reads back, black to the eye for small labels (label_preview_png is for the eye)."""
    labels = compact(labels)
    if labels.ndim != 2:
        raise ValueError(f"a PNG mask is of a 2D image (H, W); this label map is {labels.shape}")
    picture = Image.fromarray(np.ascontiguousarray(labels))  # uint8: mode L; uint16: I;16
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def label_preview_png(labels: np.ndarray, picture: np.ndarray | None = None, values: Sequence[int] | None = None) -> bytes:
    """The label map in the viewer's colours (display.overlay's palette), over the 8-bit picture when given, else over
    black. Colours go by each value's place among `values` (the classes' label values, background first; by default
    the values present), not by the value itself: labels 1 and 7 of one mask must not share a colour."""
    labels = np.asarray(labels)
    known = np.asarray(sorted({0, *(int(v) for v in (values if values is not None else np.unique(labels)))}))
    ranked = np.searchsorted(known, labels)
    base = np.zeros(labels.shape, np.uint8) if picture is None else np.asarray(picture, np.uint8)
    coloured = overlay(base, ranked, opacity=1.0 if picture is None else 0.4)
    buffer = io.BytesIO()
    Image.fromarray(coloured).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------- DICOM SEG


def dicom_seg(labels: np.ndarray, sources: Sequence, segments: Sequence[tuple[int, str]], *, series_number: int = 300,
              algorithm: str = "segmentation model", version: str = "1", description: str = "Predicted segmentation"):
    """A DICOM SEG object (highdicom; BINARY, one segment per foreground class: the type every SEG reader opens) of the
    label map over the source images: `sources` are their headers (pixel data not needed), one multi-frame file or
    single-frame images, in the order of the label map's first axis ((H, W) for one 2D image); `segments` are
    (label value, name) of the foreground classes, numbered 1.. in that order. Every source frame gets a frame per
    segment, empty ones included, so a reader finds each source frame's mask whatever its convention."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = np.asarray(labels)
    frames = labels[None] if labels.ndim == 2 else labels
    segment_map = np.zeros(frames.shape, np.uint16)  # label values -> segment numbers 1..n, the rest background
    for number, (value, _) in enumerate(segments, start=1):
        segment_map[frames == value] = number
    algorithm_id = hd.AlgorithmIdentificationSequence(name=algorithm[:64], version=version[:64],
                                                      family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(segment_number=number, segment_label=str(name)[:64] or f"label {value}",
                                              segmented_property_category=codes.SCT.Tissue,
                                              segmented_property_type=codes.SCT.Tissue,
                                              algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                              algorithm_identification=algorithm_id)
                    for number, (value, name) in enumerate(segments, start=1)]
    source_images = list(sources)
    pixel_array = segment_map if len(source_images) > 1 or labels.ndim == 3 else segment_map[0]
    return hd.seg.Segmentation(
        source_images=source_images, pixel_array=pixel_array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=algorithm[:64],
        software_versions=version[:64], device_serial_number="0", series_description=description[:64],
        omit_empty_frames=False)


def dicom_seg_bytes(labels: np.ndarray, sources: Sequence, segments: Sequence[tuple[int, str]], **settings) -> bytes:
    buffer = io.BytesIO()
    dicom_seg(labels, sources, segments, **settings).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------- volumes


def label_sizes(labels: np.ndarray, values: Sequence[int], spacing: Sequence[float]) -> list[dict]:
    """Per label value: its voxels (pixels), and with the spacing known its volume in ml (voxels x the voxel's mm³ /
    1000) for a volume, its area in mm² for a 2D image."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(values, default=0) + 1)
    steps = [float(v) for v in spacing][-labels.ndim:] if len(spacing) >= labels.ndim else []
    cell = float(np.prod(steps)) if steps and all(v > 0 for v in steps) else None
    sizes = []
    for value in values:
        count = int(counts[value]) if value < len(counts) else 0
        size = {"value": int(value), "voxels": count}
        if cell is not None:
            size["ml" if labels.ndim == 3 else "mm2"] = round(count * cell / (1000.0 if labels.ndim == 3 else 1.0), 6)
        sizes.append(size)
    return sizes

"""What a mask must satisfy once it is paired: the same grid in space as its image, and label values.

Geometry: the stored arrays of NIfTI and DICOM files are (D, H, W) with a known place in the patient
(nifti.py turns NIfTI to the closest RAS orientation; a DICOM series is ordered along its slice normal).
Each is described by the matrix that takes a voxel index (d, h, w) to millimetres in RAS, and the two
matrices must agree: equal shapes alone would let a mask drawn on another scan, or shifted by a few
slices, slip through. Pictures carry no geometry; only their shapes are compared.

Labels: the values of a mask are its classes and are kept as they are (0/1/2 stays 0/1/2), with two
exceptions that are conventions of pictures, not labels: a 0/255 mask (a picture's white, or a NIfTI written from
one) means background/foreground (stored as 0/1), and a colour picture's colours are classes (numbered in the order of their colours,
black 0; the palette is kept). A paletted PNG is read by its indices, which are its labels.
"""
from __future__ import annotations

import numpy as np

from .decoded import IMAGE, Rejected

# Agreement asked of a mask's geometry: direction cosines within 1e-3, spacings within 0.1 %, and the
# origin within 1 % of the smallest voxel side (float32 headers and rounding stay far below these).
DIRECTION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-3
ORIGIN_TOLERANCE = 0.01
MOST_LABELS = 255
PICTURE_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "PPM", "PGM", "MPO"}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def voxel_to_world(shape: list[int], kind: str, meta: dict, spacing: list[float]) -> np.ndarray | None:
    """The 4x4 matrix from a stored array's index (d, h, w, 1) to RAS millimetres; None without geometry."""
    spatial = [1, *shape[:2]] if kind == IMAGE else list(shape[-3:])
    if "affine" in meta:
        return nifti_voxel_to_world(np.asarray(meta["affine"], dtype=float), spatial)
    if "orientation" in meta and "position" in meta and len(meta.get("pixel_spacing", [])) == 2:
        slice_spacing = spacing[0] if kind != IMAGE and len(spacing) == 3 else meta.get("slice_thickness", 1.0)
        return dicom_voxel_to_world(meta["orientation"], meta["position"], meta["pixel_spacing"], slice_spacing)
    return None


def nifti_voxel_to_world(canonical_affine: np.ndarray, spatial: list[int]) -> np.ndarray:
    """nifti.py stores canonical[X-1-w, Y-1-h, d] at (d, h, w)."""
    _, height, width = spatial
    index = np.array([[0, 0, -1, width - 1], [0, -1, 0, height - 1], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return canonical_affine @ index


def dicom_voxel_to_world(orientation: list[float], position: list[float], pixel_spacing: list[float],
                         slice_spacing: float) -> np.ndarray:
    """DICOM: a pixel (row, column) lies at position + column * column spacing * row direction + row *
    row spacing * column direction (PS3.3 C.7.6.2.1.1); slices follow along the normal. LPS -> RAS."""
    along_row, along_column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(along_row, along_column)
    row_spacing, column_spacing = pixel_spacing
    matrix = np.eye(4)
    matrix[:3, 0] = LPS_TO_RAS @ normal * float(slice_spacing)
    matrix[:3, 1] = LPS_TO_RAS @ along_column * float(row_spacing)
    matrix[:3, 2] = LPS_TO_RAS @ along_row * float(column_spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(position, float)
    return matrix


def geometry_difference(image: np.ndarray, mask: np.ndarray, kind: str) -> str:
    """What differs between two voxel-to-world matrices, in words ('' when they agree). For a 2D image the
    slice direction is not compared: one slice has no spacing between slices."""
    axes = [1, 2] if kind == IMAGE else [0, 1, 2]
    image_spacing = np.linalg.norm(image[:3, axes], axis=0)
    mask_spacing = np.linalg.norm(mask[:3, axes], axis=0)
    problems = []
    if not np.allclose(image_spacing, mask_spacing, rtol=SPACING_TOLERANCE, atol=1e-6):
        problems.append(f"voxel spacing {millimetres(mask_spacing)} against {millimetres(image_spacing)}")
    directions = mask[:3, axes] / mask_spacing, image[:3, axes] / image_spacing
    if not np.allclose(*directions, atol=DIRECTION_TOLERANCE):
        problems.append(f"orientation {axis_codes(directions[0])} against {axis_codes(directions[1])}")
    shift = float(np.linalg.norm(mask[:3, 3] - image[:3, 3]))
    if shift > ORIGIN_TOLERANCE * float(min(image_spacing.min(), mask_spacing.min())) + 1e-4:
        problems.append(f"origin {shift:.3g} mm away ({millimetres(mask[:3, 3])} against {millimetres(image[:3, 3])})")
    return "; ".join(problems)


def millimetres(values) -> str:
    return " x ".join(f"{float(v):.4g}" for v in values) + " mm"


def axis_codes(directions: np.ndarray) -> str:
    """Where each stored axis points, as the nearest RAS letters ('SPL' for an axial stack seen from the feet)."""
    letters = ("LR", "PA", "IS")
    codes = []
    for column in directions.T:
        axis = int(np.argmax(np.abs(column)))
        codes.append(letters[axis][int(column[axis] > 0)])
    return "".join(codes)


def geometry_problem(image_shape: list[int], image_kind: str, image_geometry, mask_shape: list[int],
                     mask_geometry) -> str:
    """Why a mask does not fit its image ('' when it does)."""
    spatial = image_shape[:2] if image_kind == IMAGE else image_shape[-3:]
    mask_spatial = mask_shape[:2] if image_kind == IMAGE else mask_shape[-3:]
    if list(mask_spatial) != list(spatial):
        return f"its shape {list(mask_shape)} differs from the image's {list(image_shape)}"
    if image_geometry is None or mask_geometry is None:
        return ""
    difference = geometry_difference(image_geometry, mask_geometry, image_kind)
    return f"it lies elsewhere in the patient than its image: {difference}" if difference else ""


def make_labels(mask: np.ndarray, file_format: str, kind: str) -> tuple[np.ndarray, list[int], str]:
    """(the mask as stored labels, the label values found, a note); Rejected when it holds no labels."""
    note = ""
    picture = file_format in PICTURE_FORMATS
    if kind == IMAGE and mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask, note = colours_to_labels(mask[..., :3])
    if mask.ndim not in (2, 3) or (kind != IMAGE and mask.ndim != 3):
        raise Rejected(f"a mask holds one label map; this one has shape {list(mask.shape)} (several channels or volumes)")
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
            raise Rejected("the mask holds fractional values (a probability map?); a mask holds whole label "
                           "numbers, 0 for background")
    values = np.unique(mask)
    if values.size and values[0] < 0:
        raise Rejected(f"the mask holds negative values (down to {values[0]:g}); labels are 0 (background) and up")
    if values.size and set(values.tolist()) <= {0, 255} and 255 in values:
        # A binary mask saved as 0/255 (a picture's white, or a NIfTI written from one) is the same as 0/1.
        mask, values = (mask > 0).astype(np.uint8), np.unique((values > 0).astype(np.uint8))
        note = note or f"0/255 {'picture' if picture else 'mask'} read as 0 (background) and 1"
    objects = instances_in(mask, values)
    if objects:
        mask, values = (mask > 0).astype(np.uint8), np.array([0, 1])
        note = (f"an instance mask ({objects:,} objects, each its own number) read as one label, 1 for every object "
                "and 0 the background: the toolkit outlines structures, it does not tell touching objects apart")
    if values.size > MOST_LABELS:
        raise Rejected(f"the mask holds {values.size:,} different values; a mask holds a few label numbers "
                       "(is it an image? a JPEG mask blurs them: save masks as PNG or NIfTI)")
    if values.size and values[-1] > np.iinfo(np.uint16).max:
        raise Rejected(f"label {values[-1]:g} is too large; labels go up to {np.iinfo(np.uint16).max}")
    dtype = np.uint8 if not values.size or values[-1] < 256 else np.uint16
    return mask.astype(dtype), [int(v) for v in values], note


def instances_in(mask: np.ndarray, values: np.ndarray) -> int:
    """How many objects an instance mask numbers (cell nuclei 1 to 125, as StarDist's and the Data Science Bowl's masks
    are), or 0 for a label map. Instance masks hold many values that run nearly consecutively, each the number of one
    separate piece: more than INSTANCE_VALUES values, numbered at least half as densely as 1..N, whose foreground falls
    into at least half as many connected pieces as there are values (touching objects make fewer)."""
    objects = int(values.size - (values.size and values[0] == 0))
    if objects <= INSTANCE_VALUES or values[-1] > 2 * objects:
        return 0
    from scipy import ndimage

    _, pieces = ndimage.label(mask > 0)
    return objects if pieces >= objects / 2 else 0


# More labels than this are rare in a label map, and its structures touch (a body's organs: far fewer pieces than
# labels, even TotalSegmentator's 117); an image of cells or nuclei numbers many more objects, mostly apart.
INSTANCE_VALUES = 32


def colours_to_labels(mask: np.ndarray) -> tuple[np.ndarray, str]:
    """A grey picture saved as RGB is its grey values; a colour-coded one becomes one label per colour."""
    if np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2]):
        return mask[..., 0], ""
    colours, labels = np.unique(mask.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) > MOST_LABELS:
        raise Rejected(f"the mask holds {len(colours):,} colours; a colour-coded mask holds one colour per class")
    # np.unique sorts colours, so black (0, 0, 0), when present, is label 0.
    palette = ", ".join(f"{index}: rgb{tuple(int(c) for c in colour)}" for index, colour in enumerate(colours[:8]))
    more = ", ..." if len(colours) > 8 else ""
    return labels.reshape(mask.shape[:2]).astype(np.uint16), f"colours read as labels ({palette}{more})"

"""NIfTI-1 and NIfTI-2 (.nii, .nii.gz), 3D and 4D, through nibabel.

Volumes are turned to the closest RAS orientation and stored as (D, H, W) =
(inferior->superior, anterior->posterior, patient right->left), the way a
radiologist looks at an axial slice; 4D adds a leading axis (C, D, H, W).
"""
from __future__ import annotations

import gzip
import io
import math

import nibabel as nib
import numpy as np

from .decoded import IMAGE, VOLUME, Decoded, Rejected
from .guard import guarded

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Free-text header fields where scanners and tools sometimes write names or dates.
TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")


def looks_like_nifti(name: str, head: bytes) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES) or head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00",)


def read_nifti(data: bytes, name: str) -> Decoded:
    if data[:2] == b"\x1f\x8b":
        with guarded("corrupt or truncated .nii.gz"):
            data = gzip.decompress(data)
    image_class = header_class(data)
    with guarded("NIfTI with an impossible header or data"):
        check_header(image_class.header_class.from_fileobj(io.BytesIO(data)), len(data))
        img = image_class.from_bytes(data)
        raw, scaling = stored_values(img)
        # Reoriented from an image over the raw array: nibabel applies no scaling to an array it did not read itself.
        canonical = nib.as_closest_canonical(image_class(raw, img.affine, img.header))
        array = np.asanyarray(canonical.dataobj)
        meta = {**describe(img, canonical, image_class), **scaling}
        if array.ndim > 4:
            raise Rejected(f"NIfTI with {array.ndim} dimensions; 3D and 4D volumes are supported")
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
            return Decoded(kind=IMAGE, pixels=radiological(array.reshape(array.shape[0], array.shape[1], 1))[0],
                           format="NIfTI", meta=meta)
        volume = radiological(array)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    return Decoded(kind=VOLUME, pixels=volume, format="NIfTI", meta=meta,
                   notes=[f"{volume.shape[0]} volumes (4D)"] if volume.ndim == 4 else [])


def stored_values(img) -> tuple[np.ndarray, dict]:
    """The voxels as the file stores them (int16 CT stays int16, not float64 Hounsfield units) and the scaling that
    makes them modality values, as DICOM's rescale slope and intercept (applied where values are read: the display,
    the training store), or {} when the file has none."""
    proxy = img.dataobj
    if not hasattr(proxy, "get_unscaled"):
        return np.asanyarray(proxy), {}
    slope, intercept = float(proxy.slope), float(proxy.inter)
    if not (math.isfinite(slope) and slope != 0 and math.isfinite(intercept)) or (slope, intercept) == (1.0, 0.0):
        return np.asanyarray(proxy), {}
    return np.asanyarray(proxy.get_unscaled()), {"rescale_slope": slope, "rescale_intercept": intercept}


def describe(img, canonical, image_class) -> dict:
    if not np.all(np.isfinite(img.affine)):
        raise Rejected("NIfTI with an impossible header or data (its affine holds values that are not numbers)")
    zooms = [round(float(z), 6) for z in canonical.header.get_zooms()[:3]]
    return {
        "voxel_spacing": [zooms[2], zooms[1], zooms[0]] if len(zooms) == 3 else zooms,
        "orientation_codes": "".join(nib.aff2axcodes(img.affine)),
        "affine": np.round(canonical.affine, 6).tolist(),
        "nifti_version": 2 if image_class is nib.Nifti2Image else 1,
    }


def header_class(data: bytes):
    size = int.from_bytes(data[:4], "little")
    big = int.from_bytes(data[:4], "big")
    if 540 in (size, big):
        return nib.Nifti2Image
    if 348 in (size, big):
        return nib.Nifti1Image
    raise Rejected("NIfTI with an impossible header (sizeof_hdr is neither 348 nor 540); the file is not NIfTI or is damaged")


def check_header(header, size: int) -> None:
    dims = header["dim"]
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or any(int(d) < 1 for d in dims[1:ndim + 1]):
        raise Rejected(f"NIfTI with an impossible header or data (dimensions {list(map(int, dims[:ndim + 1]))} are impossible)")
    if not all(0 < float(z) < math.inf for z in header.get_zooms()[:3]):
        raise Rejected(f"NIfTI with an impossible header or data (voxel sizes {[float(z) for z in header.get_zooms()[:3]]} "
                       "must be positive numbers)")
    expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    if size < expected:
        raise Rejected(f"NIfTI with an impossible header or data (the file holds {size:,} bytes but its header describes {expected:,}; it is truncated)")


def radiological(array: np.ndarray) -> np.ndarray:
    """(x, y, z[, t]) in RAS -> ([t,] z, y reversed, x reversed)."""
    flipped = array[::-1, ::-1]
    axes = (3, 2, 1, 0) if flipped.ndim == 4 else (2, 1, 0)
    return np.ascontiguousarray(flipped.transpose(axes))

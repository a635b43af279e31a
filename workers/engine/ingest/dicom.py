"""DICOM files: decode with pydicom and its plugins, de-identify, describe for series assembly."""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut

from .decoded import IMAGE, SLICE, VOLUME, Decoded, NotAnImage, Quarantined
from .deid import Deidentifier

NON_IMAGE_MODALITIES = {
    "SR": "structured report", "RTSTRUCT": "RT structure set", "RTPLAN": "RT plan", "PR": "presentation state",
    "KO": "key object selection", "ECG": "waveform", "DOC": "encapsulated document", "REG": "registration",
    "SEG": "segmentation object", "RTRECORD": "RT treatment record",
}


def looks_like_dicom(name: str, head: bytes) -> bool:
    if head[128:132] == b"DICM":
        return True
    lower = name.lower()
    # Files written without the preamble still start with a group 0x0008 (or 0x0002) element.
    return lower.endswith((".dcm", ".dicom", ".ima")) or ("." not in lower.rsplit("/", 1)[-1] and head[:2] in (b"\x08\x00", b"\x02\x00"))


def read_dicom(data: bytes, deidentifier: Deidentifier | None) -> Decoded:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.get("Modality")  # a file that is not DICOM at all fails on its first element
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError, AttributeError) as exc:
        raise ValueError(f"corrupt or truncated DICOM ({short(exc)})")
    modality = str(ds.get("Modality", "") or "")
    if not any(keyword in ds for keyword in ("SOPClassUID", "Modality", "PixelData", "StudyInstanceUID")):
        raise ValueError("corrupt or truncated DICOM (no recognisable DICOM attributes)")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        what = NON_IMAGE_MODALITIES.get(modality, f"{modality or 'unknown'} object")
        raise NotAnImage(f"DICOM {what} with no pixel data; recognised and left out (not an image)")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise Quarantined("quarantined: BurnedInAnnotation is YES, so text on the pixels may identify the "
                          "patient; review it outside the toolkit before uploading a cleaned copy")
    pixels = decode_pixels(ds)
    meta = describe(ds)
    patient = deidentifier.deidentify(ds) if deidentifier else str(ds.get("PatientID", "") or "")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    kind = VOLUME if frames > 1 else SLICE
    if kind == SLICE and pixels.ndim == 3 and pixels.shape[-1] != 3:
        kind = VOLUME
    return Decoded(
        kind=kind, pixels=pixels, format="DICOM", original=write(ds), original_suffix=".dcm",
        modality=modality, patient=patient, study=str(ds.get("StudyInstanceUID", "") or ""),
        series=str(ds.get("SeriesInstanceUID", "") or ""), meta=meta,
        notes=["de-identified (PS3.15 Basic Profile)"] if deidentifier else [],
    )


def decode_pixels(ds) -> np.ndarray:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = ds.pixel_array
    except NotImplementedError as exc:
        raise ValueError(f"pixel data compressed as {syntax.name if syntax else 'unknown'} and no installed decoder reads it ({short(exc)})")
    except (ValueError, AttributeError, EOFError, OSError, RuntimeError, KeyError, TypeError) as exc:
        raise ValueError(f"corrupt or truncated DICOM pixel data ({short(exc)})")
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        if pixels.dtype != np.uint8:
            pixels = (pixels >> 8).astype(np.uint8) if pixels.max() > 255 else pixels.astype(np.uint8)
    # Big-endian files decode to big-endian arrays; everything downstream expects native order.
    return np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))


def describe(ds) -> dict:
    """What display, ordering and preprocessing need, read before de-identification."""
    meta = {
        "photometric": str(ds.get("PhotometricInterpretation", "")),
        "rescale_slope": number(ds.get("RescaleSlope"), 1.0),
        "rescale_intercept": number(ds.get("RescaleIntercept"), 0.0),
        "bits_stored": int(ds.get("BitsStored", 8) or 8),
        "signed": int(ds.get("PixelRepresentation", 0) or 0) == 1,
    }
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        meta["window_center"], meta["window_width"] = first_number(center), first_number(width)
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is not None and len(spacing) == 2:
        meta["pixel_spacing"] = [float(spacing[0]), float(spacing[1])]
    thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if thickness not in (None, ""):
        meta["slice_thickness"] = float(thickness)
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if position is not None and len(position) == 3:
        meta["position"] = [float(v) for v in position]
    if orientation is not None and len(orientation) == 6:
        meta["orientation"] = [float(v) for v in orientation]
    if ds.get("InstanceNumber") not in (None, ""):
        meta["instance"] = int(ds.InstanceNumber)
    return meta


def slice_location(meta: dict) -> float | None:
    """Distance along the slice normal: the order of a series, whatever the files are called."""
    if "position" in meta and "orientation" in meta:
        row, col = np.array(meta["orientation"][:3]), np.array(meta["orientation"][3:])
        return float(np.dot(np.cross(row, col), meta["position"]))
    return None


def write(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def number(value, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def first_number(value) -> float:
    if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and not isinstance(value, (str, bytes)):
        value = value[0]
    return number(value, 0.0)


def short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


__all__ = ["IMAGE", "looks_like_dicom", "read_dicom", "slice_location"]

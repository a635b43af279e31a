"""DICOM files: decode with pydicom and its plugins, de-identify, describe for series assembly."""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom import config
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut

from .decoded import IMAGE, SLICE, VOLUME, Decoded, NotAnImage, Quarantined
from .deid import Deidentifier
from .dicom_copy import element_layout, write_copy

# Clinical files are full of small VR violations (over-long strings, stray characters). The ingest
# reports what stops a file; pydicom's per-value checks would only log warnings, at a tenth of the
# cost of a small file's ingest.
config.settings.reading_validation_mode = config.IGNORE

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
        layout = element_layout(ds, data)
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
    if deidentifier:
        patient, touched = deidentifier.deidentify(ds)
    else:
        patient, touched = str(ds.get("PatientID", "") or ""), set()
    header = write_copy(ds, data, layout, touched)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    kind = VOLUME if frames > 1 else SLICE
    if kind == SLICE and pixels.ndim == 3 and pixels.shape[-1] != 3:
        kind = VOLUME
    return Decoded(
        kind=kind, pixels=pixels, format="DICOM", original=header, original_suffix=".dcm",
        modality=modality, patient=patient, study=str(ds.get("StudyInstanceUID", "") or ""),
        series=str(ds.get("SeriesInstanceUID", "") or ""), meta=meta,
        notes=["de-identified (PS3.15 Basic Profile)"] if deidentifier else [],
    )


def decode_pixels(ds) -> np.ndarray:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = plain_pixels(ds, syntax)
        if pixels is None:
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


def plain_pixels(ds, syntax) -> np.ndarray | None:
    """The pixels of the commonest file, read straight from its buffer: uncompressed, one frame,
    grayscale, 8 or 16 bits all stored. For a small image pydicom's general decoder costs half
    the time of reading the file; anything else (and anything short) goes to it."""
    if syntax is None or syntax.is_compressed or syntax.is_deflated or 0x7FE00010 not in ds:
        return None
    little = syntax.is_little_endian
    rows, columns = raw_unsigned(ds, 0x00280010, little), raw_unsigned(ds, 0x00280011, little)
    bits, stored = raw_unsigned(ds, 0x00280100, little), raw_unsigned(ds, 0x00280101, little)
    signed, samples = raw_unsigned(ds, 0x00280103, little), raw_unsigned(ds, 0x00280002, little)
    if not rows or not columns or bits not in (8, 16) or stored != bits or signed not in (0, 1) or samples not in (None, 1):
        return None
    if 0x00280008 in ds and str(ds.get("NumberOfFrames", "1")).strip() not in ("", "1"):
        return None
    if str(ds.get("PhotometricInterpretation", "")).strip() not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    data = ds.get_item(0x7FE00010).value
    dtype = np.dtype(("<" if little else ">") + ("i" if signed else "u") + str(bits // 8))
    if not isinstance(data, bytes) or len(data) < rows * columns * dtype.itemsize:
        return None
    return np.frombuffer(data, dtype, count=rows * columns).reshape(rows, columns).astype(dtype.newbyteorder("="))


def raw_unsigned(ds, tag: int, little: bool) -> int | None:
    """A US element's value without pydicom's conversion; None when absent or odd."""
    if tag not in ds:
        return None
    element = ds.get_item(tag)
    if not getattr(element, "is_raw", False):
        value = element.value
        return value if isinstance(value, int) else None
    return int.from_bytes(element.value[:2], "little" if little else "big") if len(element.value or b"") == 2 else None


def describe(ds) -> dict:
    """What display, ordering and preprocessing need, read before de-identification."""
    meta = {
        "photometric": str(ds.get("PhotometricInterpretation", "")),
        "rescale_slope": first(decimals(ds, 0x00281053), 1.0),
        "rescale_intercept": first(decimals(ds, 0x00281052), 0.0),
        "bits_stored": int(ds.get("BitsStored", 8) or 8),
        "signed": int(ds.get("PixelRepresentation", 0) or 0) == 1,
    }
    center, width = decimals(ds, 0x00281050), decimals(ds, 0x00281051)  # WindowCenter, WindowWidth
    if center and width:
        meta["window_center"], meta["window_width"] = center[0], width[0]
    spacing = decimals(ds, 0x00280030) or decimals(ds, 0x00181164)  # PixelSpacing, ImagerPixelSpacing
    if spacing and len(spacing) == 2:
        meta["pixel_spacing"] = spacing
    thickness = decimals(ds, 0x00180088) or decimals(ds, 0x00180050)  # SpacingBetweenSlices, SliceThickness
    if thickness:
        meta["slice_thickness"] = thickness[0]
    position, orientation = decimals(ds, 0x00200032), decimals(ds, 0x00200037)
    if position and len(position) == 3:
        meta["position"] = position
    if orientation and len(orientation) == 6:
        meta["orientation"] = orientation
    instance = decimals(ds, 0x00200013)
    if instance:
        meta["instance"] = int(instance[0])
    return meta


def decimals(ds, tag: int) -> list[float] | None:
    """A DS or IS element's numbers, parsed from the raw bytes when the element is still raw
    (pydicom's value classes cost more than the rest of reading the header); None when absent
    or unreadable, which callers treat alike."""
    if tag not in ds:
        return None
    element = ds.get_item(tag)
    try:
        if getattr(element, "is_raw", False):
            text = (element.value or b"").decode("ascii").strip(" \0")
            values = [float(v) for v in text.split("\\")] if text else []
        else:
            value = element.value
            items = value if isinstance(value, MultiValue | list | tuple) else [value]
            values = [float(v) for v in items if v not in (None, "")]
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return values or None


def first(values: list[float] | None, default: float) -> float:
    return values[0] if values else default


def slice_location(meta: dict) -> float | None:
    """Distance along the slice normal: the order of a series, whatever the files are called."""
    if "position" in meta and "orientation" in meta:
        row, col = np.array(meta["orientation"][:3]), np.array(meta["orientation"][3:])
        return float(np.dot(np.cross(row, col), meta["position"]))
    return None


def short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


__all__ = ["IMAGE", "looks_like_dicom", "read_dicom", "slice_location"]

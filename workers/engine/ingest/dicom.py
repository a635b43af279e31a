"""DICOM files: decode with pydicom and its plugins, de-identify, describe for series assembly."""
from __future__ import annotations

import io
import math
import posixpath

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from .decoded import IMAGE, SLICE, VOLUME, Decoded, DirectoryIndex, NotAnImage, Quarantined, Rejected
from .deid import Deidentifier
from .dicom_copy import element_layout, write_copy
from .guard import exception_text, guarded

# Clinical files are full of small VR violations (over-long strings, stray characters). The ingest
# reports what stops a file; pydicom's per-value checks would only log warnings, at a tenth of the
# cost of a small file's ingest.
config.settings.reading_validation_mode = config.IGNORE

NON_IMAGE_MODALITIES = {
    "SR": "structured report", "RTSTRUCT": "RT structure set", "RTPLAN": "RT plan", "PR": "presentation state",
    "KO": "key object selection", "ECG": "waveform", "DOC": "encapsulated document", "REG": "registration",
    "SEG": "segmentation object", "RTRECORD": "RT treatment record",
}
DICOMDIR_REASON = "DICOMDIR: an index of the files beside it; upload them with it"
# The groups a DICOM data set without a preamble starts with: file meta, then identification.
HEADLESS_FIRST_GROUPS = (b"\x02\x00", b"\x08\x00")
# The transfer syntax a file without file meta is encoded in, by (implicit VR, little endian) as pydicom found it.
SYNTAX_BY_ENCODING = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
                      (False, False): ExplicitVRBigEndian}


def looks_like_dicom(name: str, head: bytes) -> bool:
    if head[128:132] == b"DICM":
        return True
    base = name.lower().rsplit("/", 1)[-1]
    return base.endswith((".dcm", ".dicom", ".ima")) or base == "dicomdir" or looks_headless(head)


def looks_headless(head: bytes) -> bool:
    """A data set written without preamble, 'DICM' and (often) file meta, as some archives and old
    modalities do: its first element is of group 0x0002 or 0x0008, followed by an explicit VR or a
    plausible implicit length. Told by its bytes, not its name: such files are often named by their
    SOP instance UID ('1.2.840.113619.2.55.3.604688119.971'), dots and all."""
    if len(head) < 8 or head[:2] not in HEADLESS_FIRST_GROUPS:
        return False
    return head[4:6].isalpha() and head[4:6].isupper() or int.from_bytes(head[4:8], "little") < 0x10000


def read_dicom(data: bytes, deidentifier: Deidentifier | None) -> Decoded:
    with guarded("corrupt or truncated DICOM"):
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        name_transfer_syntax(ds)
        layout = element_layout(ds, data)
        modality = code_string(ds.get("Modality", ""))  # a file that is not DICOM at all fails on its first element
        check_holds_an_image(ds, modality)
    with guarded("corrupt or truncated DICOM pixel data"):
        pixels = decode_pixels(ds)
    with guarded("the DICOM attributes could not be read"):
        meta = describe(ds)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    with guarded("the file could not be de-identified" if deidentifier else "the DICOM attributes could not be read"):
        patient, touched = deidentifier.deidentify(ds) if deidentifier else (str(ds.get("PatientID", "") or ""), set())
    with guarded("the de-identified header could not be written"):
        header = write_copy(ds, data, layout, touched)
    kind = VOLUME if frames > 1 else SLICE
    if kind == SLICE and pixels.ndim == 3 and pixels.shape[-1] != 3:
        kind = VOLUME
    with guarded("the DICOM attributes could not be read"):
        study, series = str(ds.get("StudyInstanceUID", "") or ""), str(ds.get("SeriesInstanceUID", "") or "")
    return Decoded(
        kind=kind, pixels=pixels, format="DICOM", original=header, original_suffix=".dcm",
        modality=modality, patient=patient, study=study, series=series, meta=meta,
        notes=["de-identified (PS3.15 Basic Profile)"] if deidentifier else [],
    )


def name_transfer_syntax(ds) -> None:
    """A file with no file meta says nothing of its encoding; pydicom found it from the first element
    (implicit VR little endian when it could not tell). Naming it lets the pixels decode and gives
    the kept header a proper file meta, so it reads without force."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = ds.original_encoding
    meta.TransferSyntaxUID = SYNTAX_BY_ENCODING.get((implicit, little), ImplicitVRLittleEndian)
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    for meta_keyword, keyword in (("MediaStorageSOPClassUID", "SOPClassUID"), ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        if meta_keyword not in meta and keyword in ds:
            setattr(meta, meta_keyword, ds[keyword].value)
    ds.preamble = ds.preamble or b"\0" * 128


def check_holds_an_image(ds, modality: str) -> None:
    if is_dicomdir(ds):
        raise DirectoryIndex(DICOMDIR_REASON, listed_files(ds))
    if not any(keyword in ds for keyword in ("SOPClassUID", "Modality", "PixelData", "StudyInstanceUID")):
        raise Rejected("corrupt or truncated DICOM (no recognisable DICOM attributes)")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop_class = UID(str(ds.get("SOPClassUID", "") or ""))
        if 0x00280010 in ds or "Image Storage" in sop_class.name:  # Rows, or an image's SOP class: the pixels were lost
            raise Rejected("corrupt or truncated DICOM (it is an image but its pixel data is missing)")
        known_class = sop_class.name != sop_class  # pydicom names the SOP classes of the standard
        if modality not in NON_IMAGE_MODALITIES and not known_class:
            raise Rejected("corrupt or truncated DICOM (no pixel data, and nothing says what else it holds)")
        what = NON_IMAGE_MODALITIES.get(modality) or f"{sop_class.name} object"
        raise NotAnImage(f"DICOM {what} with no pixel data; recognised and left out (not an image)")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise Quarantined("quarantined: BurnedInAnnotation is YES, so text on the pixels may identify the "
                          "patient; review it outside the toolkit before uploading a cleaned copy")


def code_string(value) -> str:
    """A code string (Modality) as the file has it, or '' when it is no code string at all."""
    text = str(value or "").strip()
    return text if len(text) <= 16 and text.replace("_", "").replace(" ", "").isalnum() and text.isascii() else ""


def is_dicomdir(ds) -> bool:
    return str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == MediaStorageDirectoryStorage or 0x00041220 in ds


def listed_files(ds) -> list[str]:
    """The files a DICOMDIR lists, in its order, as paths relative to its folder ('' for a
    record whose ReferencedFileID cannot be read: the DICOMDIR's note counts it)."""
    with guarded("DICOMDIR whose directory records cannot be read"):
        listed = []
        for record in ds.get("DirectoryRecordSequence", None) or []:
            file_id = record.get("ReferencedFileID")
            if file_id is None:
                continue
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            path = posixpath.normpath("/".join(str(part).strip() for part in parts))
            readable = path.isprintable() and not path.startswith(("../", "/"))  # a damaged record says nothing
            listed.append(path if readable else "")
        return listed


def decode_pixels(ds) -> np.ndarray:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = plain_pixels(ds, syntax)
        if pixels is None:
            pixels = ds.pixel_array
    except NotImplementedError as exc:
        if not (syntax and syntax.is_compressed):
            raise
        raise Rejected(f"pixel data compressed as {syntax.name} and no installed decoder reads it ({exception_text(exc)})")
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
    # What tells apart slices of one series that lie at the same place: echoes, dynamics, acquisitions.
    for key, tag in (("echo", 0x00180086), ("temporal_position", 0x00209128), ("acquisition", 0x00200012)):
        value = decimals(ds, tag)
        if value:
            meta[key] = value[0]
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
    if not all(map(math.isfinite, values)):
        return None  # 'NaN' and '1e999' parse, but no geometry or window is made of them (and JSON refuses them)
    return values or None


def first(values: list[float] | None, default: float) -> float:
    return values[0] if values else default


def slice_location(meta: dict) -> float | None:
    """Distance along the slice normal: the order of a series, whatever the files are called."""
    if "position" in meta and "orientation" in meta:
        row, col = np.array(meta["orientation"][:3]), np.array(meta["orientation"][3:])
        return float(np.dot(np.cross(row, col), meta["position"]))
    return None


__all__ = ["IMAGE", "looks_like_dicom", "read_dicom", "slice_location"]

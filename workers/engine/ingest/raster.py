"""Ordinary pictures (PNG, JPEG, BMP, PPM/PGM, TIFF) through Pillow, keeping 16-bit depth."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from .decoded import IMAGE, Decoded, Rejected
from .guard import guarded

RASTER_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "PPM", "MPO"}
SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
              b"P5": "PGM", b"P6": "PPM", b"P2": "PGM", b"P3": "PPM"}
WIDE_MODES = {"I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int32, "F": np.float32}


def claimed_format(data: bytes) -> str:
    return next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), "")


def read_raster(data: bytes, keep_original: bool, labels: bool = False) -> Decoded:
    """Decode to (H, W) in the file's own depth, or (H, W, 3) uint8 for colour. With `labels` (a mask),
    a paletted picture gives its palette indices, which are its labels, not the colours they are drawn in.

    With de-identification on, only the pixels are kept: text chunks and EXIF may name the patient.
    """
    with guarded("corrupt or truncated image"), opened(data) as img:
        if img.format not in RASTER_FORMATS:
            raise Rejected(f"{img.format} images are not supported; use PNG, JPEG, BMP, TIFF or PGM/PPM")
        pages = getattr(img, "n_frames", 1)
        img.load()
        pixels, fmt = (np.asarray(img, dtype=np.uint8) if labels and img.mode == "P" else to_array(img)), img.format
    notes = [f"only the first of {pages} pages was taken"] if pages > 1 else []
    return Decoded(kind=IMAGE, pixels=pixels, format=fmt, original=data if keep_original else None,
                   original_suffix="." + fmt.lower().replace("mpo", "jpeg"), notes=notes)


def opened(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if claimed_format(data):
            raise Rejected(f"corrupt or truncated image (starts like a {claimed_format(data)} file but cannot be decoded)")
        raise Rejected("unknown format: not DICOM, NIfTI, PNG, JPEG, BMP, TIFF or PGM/PPM")


def to_array(img: Image.Image) -> np.ndarray:
    if img.mode in WIDE_MODES:
        return np.asarray(img, dtype=WIDE_MODES[img.mode])
    if img.mode in ("1", "L", "LA") or (img.mode == "P" and img.palette and img.palette.mode == "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode in ("I;16S", "I;16BS"):
        return np.asarray(img, dtype=np.int16)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)

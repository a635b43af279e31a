"""The de-identified header of a DICOM file, written by splicing.

What is kept of an uploaded DICOM file is its de-identified header (every
attribute the profile lets through) and, separately, its decoded pixels (the
sample's array). Keeping the pixel data in the header file too would store
every image twice and write it twice, and writing is what an ingest of many
files mostly waits on.

De-identification changes a handful of elements; the rest of the header is
copied byte for byte from the upload, and only the changed elements (and the
file meta) are encoded again. dcmwrite re-encodes and re-checks every element,
which was half the cost of ingesting a small file. The result is byte-identical
to what dcmwrite writes for the same dataset (tests/unit/test_formats.py checks
it per transfer syntax); anything unusual (deflated or private syntaxes, files
that do not lay out as read) goes through dcmwrite.
"""
from __future__ import annotations

import contextlib
import io
import struct

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pydicom.valuerep import PersonName

LONG_HEADER_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
# Pixel data (integer, float, double) and the padding after it; and command or file meta elements in
# the data set, which PS3.10 does not allow there (DIMSE captures have them) and dcmwrite refuses to write.
LEFT_OUT_GROUPS = {0x7FE0, 0xFFFC, 0x0000, 0x0002}
# Text VRs with a 2-byte length whose values we write ourselves when they are plain ASCII.
PLAIN_TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "PN", "SH", "TM", "UI"}


def element_layout(ds, data: bytes) -> dict[int, tuple[int, int]] | None:
    """Where each top-level element lies in the file, {tag: (start, end)}, read before anything
    decodes an element; None when the bytes cannot be trusted to splice."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_deflated or syntax.is_private:
        return None
    byte_order = "little" if syntax.is_little_endian else "big"
    starts = []
    for tag in ds.keys():
        raw = ds.get_item(tag)
        if not getattr(raw, "is_raw", False) or raw.value_tell is None:
            return None
        if raw.is_implicit_VR != syntax.is_implicit_VR or raw.is_little_endian != syntax.is_little_endian:
            return None  # the file does not say what it is encoded as
        header = 8 if syntax.is_implicit_VR or raw.VR not in LONG_HEADER_VRS else 12
        start = raw.value_tell - header
        tag_bytes = (tag >> 16).to_bytes(2, byte_order) + (tag & 0xFFFF).to_bytes(2, byte_order)
        if start < 0 or data[start:start + 4] != tag_bytes:
            return None
        starts.append((tag, start, raw))
    spans = {}
    for k, (tag, start, raw) in enumerate(starts):
        if k + 1 < len(starts):
            end = starts[k + 1][1]
        else:
            end = len(data) if raw.length == 0xFFFFFFFF else raw.value_tell + raw.length
        spans[tag] = (start, end)
    return spans


def write_copy(ds, data: bytes, layout: dict[int, tuple[int, int]] | None, touched: set[int]) -> bytes:
    """The header file for ds, pixel data left out: elements not in `touched` are copied from
    `data` where `layout` places them."""
    for tag in [tag for tag in ds.keys() if tag >> 16 in LEFT_OUT_GROUPS]:
        del ds[tag]
    try:
        return encoded_copy(ds, data, layout, touched)
    except Exception:
        # pydicom reads what it cannot write back: an element written the implicit way inside an
        # explicit-VR file (some writers do, in sequences above all) is read with no VR, and writing
        # it raises TypeError ("encoding without a string argument"); a damaged file meta fails
        # likewise. Name those VRs from the dictionary, keep only the file meta PS3.10 requires, and
        # write once more; whatever still fails is the file's (the per-file guard reports it).
        name_missing_vrs(ds)
        ds.file_meta = standard_meta(ds.file_meta)
        return encoded_copy(ds, data, layout, touched)


def encoded_copy(ds, data: bytes, layout: dict[int, tuple[int, int]] | None, touched: set[int]) -> bytes:
    if layout is None:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=False)
        return buffer.getvalue()
    syntax = ds.file_meta.TransferSyntaxUID
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    parts = [b"\0" * 128 + b"DICM", encoded_meta(ds.file_meta)]
    encodings = ds.get("SpecificCharacterSet") or default_encoding
    view = memoryview(data)
    for tag in sorted(ds.keys()):
        if tag & 0xFFFF == 0:
            continue  # group lengths go stale once elements change; dcmwrite leaves them out too
        if tag in layout and tag not in touched:
            start, end = layout[tag]
            parts.append(view[start:end])
            continue
        element = ds.get_item(tag)
        encoded = None if element.is_raw else plain_text(tag, element, implicit, little)
        if encoded is None:
            fp = DicomBytesIO()
            fp.is_implicit_VR, fp.is_little_endian = implicit, little
            write_data_element(fp, element, encodings)
            encoded = fp.getvalue()
        parts.append(encoded)
    return b"".join(parts)


def name_missing_vrs(ds) -> None:
    """Give every undecoded element read with no VR the VR the dictionary names (UN when it names
    none, or two), here and in the items of decoded sequences. Only the label changes: a value's
    bytes are the same in implicit and explicit VR."""
    for tag in list(ds.keys()):
        element = ds.get_item(tag)
        if getattr(element, "is_raw", False):
            if element.VR is None:
                ds[tag] = element._replace(VR=dictionary_vr_or_un(tag))
        elif element.VR == "SQ":
            for item in element.value or []:
                name_missing_vrs(item)


def standard_meta(meta) -> FileMetaDataset:
    """A file meta of the elements PS3.10 requires, with the values of the one read."""
    standard = FileMetaDataset()
    standard.FileMetaInformationVersion = b"\x00\x01"
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"):
        with contextlib.suppress(Exception):  # a value that cannot be read is left out, not guessed
            if meta.get(keyword):
                setattr(standard, keyword, str(meta.get(keyword)))
    standard.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return standard


def dictionary_vr_or_un(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "LO" if tag >> 16 & 1 and 0x0010 <= tag & 0xFFFF <= 0x00FF else "UN"  # private creators are LO
    return "UN" if " or " in vr else vr


def encoded_meta(meta) -> bytes:
    """File meta is always explicit VR little endian: its group length, version and text elements."""
    encoded = []
    for tag in sorted(meta.keys()):
        if tag == 0x00020000:
            continue
        element = meta.get_item(tag)
        if getattr(element, "is_raw", False) and element.VR and element.length != 0xFFFFFFFF:
            encoded.append(explicit_header(tag, element.VR, len(element.value or b"")) + (element.value or b""))
            continue
        element = meta[tag]
        text = plain_text(tag, element, implicit=False, little=True)
        if text is None:
            fp = DicomBytesIO()
            write_file_meta_info(fp, meta, enforce_standard=False)
            return fp.getvalue()
        encoded.append(text)
    body = b"".join(encoded)
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


def explicit_header(tag: int, vr: str, length: int) -> bytes:
    """An element header in explicit VR little endian, as file meta always is."""
    if vr in LONG_HEADER_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def plain_text(tag: int, element, implicit: bool, little: bool) -> bytes | None:
    """The element encoded, when it is a short text VR holding ASCII; None otherwise."""
    vr = element.VR
    if vr not in PLAIN_TEXT_VRS:
        return None
    value = element.value
    if value is None or value == "":
        text = ""
    elif isinstance(value, str | PersonName):
        text = str(value)
    elif isinstance(value, list | tuple) or hasattr(value, "__iter__") and not isinstance(value, bytes):
        if not all(isinstance(v, str | PersonName) for v in value):
            return None
        text = "\\".join(str(v) for v in value)
    else:
        return None
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    if len(raw) > 0xFFFF:
        return None
    order = "<" if little else ">"
    if implicit:
        return struct.pack(order + "HHI", tag >> 16, tag & 0xFFFF, len(raw)) + raw
    return struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw)) + raw

"""Single files compressed with gzip (scan.dcm.gz, image.png.gz), opened within the limits zip members have.

A .nii.gz is not one of them: the NIfTI reader opens it (nibabel knows the format).
"""
from __future__ import annotations

import zlib

from .decoded import Rejected
from .guard import guarded
from .sources import ARCHIVE_SUFFIXES, IngestLimits

GZIP_MAGIC = b"\x1f\x8b"
RATIO_FREE_BYTES = 1024**2  # as for zip members: small files may compress as much as they like


def is_gzipped_file(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(".gz") and not lower.endswith((".nii.gz", *ARCHIVE_SUFFIXES))


def gunzip(data: bytes, limits: IngestLimits) -> bytes:
    """The content of a gzip file, decompressed no further than the size and compression-ratio
    limits allow (a gzip bomb is refused before it fills the memory)."""
    allowed = min(limits.max_entry_bytes, max(RATIO_FREE_BYTES, limits.max_compression_ratio * len(data)))
    content = bytearray()
    rest = data
    with guarded("corrupt gzip file"):
        while rest:  # a gzip file may hold several members, one after the other
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            content += inflater.decompress(rest, allowed + 1 - len(content))
            if len(content) > allowed:
                raise Rejected(limit_reason(allowed, limits))
            if not inflater.eof:
                raise Rejected("corrupt gzip file (it ends before its compressed data does)")
            rest = inflater.unused_data.lstrip(b"\0")  # some writers pad the end with zeros
    return bytes(content)


def limit_reason(allowed: int, limits: IngestLimits) -> str:
    if allowed == limits.max_entry_bytes:
        return f"once decompressed, the file is larger than {limits.max_entry_bytes // 1024**2:,} MB"
    return f"compression ratio over {limits.max_compression_ratio}:1 is too high (possible gzip bomb)"

"""Bringing uploads in: sources (zip, folders, files), formats (DICOM, NIfTI, raster), de-identification, samples."""
from .inspection import UploadInspection, inspect_upload
from .job import (
    CACHE_FILE,
    CLASSIFICATION,
    LABELS_FROM_FOLDERS,
    LABELS_NONE,
    SEGMENTATION,
    FileRecord,
    IngestOptions,
    IngestSummary,
    MemoryJournal,
    SampleSpec,
    build_cache,
    discard_slice_arrays,
    ingest_upload,
)
from .sources import ACCEPTED, QUARANTINED, REJECTED, SKIPPED, ArchiveError, IngestLimits

__all__ = [
    "ACCEPTED", "CACHE_FILE", "CLASSIFICATION", "LABELS_FROM_FOLDERS", "LABELS_NONE", "QUARANTINED", "REJECTED",
    "SEGMENTATION", "SKIPPED", "ArchiveError", "FileRecord", "IngestLimits", "IngestOptions", "IngestSummary",
    "MemoryJournal", "SampleSpec", "build_cache", "UploadInspection", "discard_slice_arrays", "ingest_upload", "inspect_upload",
]

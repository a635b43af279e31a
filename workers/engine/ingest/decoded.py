"""What a format reader hands back for one file, whatever the format, or why it hands nothing back."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .sources import QUARANTINED, REJECTED, SKIPPED

IMAGE = "image"    # one 2D picture: (H, W) or (H, W, 3)
VOLUME = "volume"  # 3D (D, H, W) or 4D (C, D, H, W)
SLICE = "slice"    # a single-frame DICOM that may join others of its series into a volume


class FileOutcome(ValueError):
    """Why one file is not taken, in words for a person; `status` is the outcome the file gets.
    A ValueError, so callers that only care whether a file decodes catch them all at once."""

    status = REJECTED


class Rejected(FileOutcome):
    """The file cannot be taken: damaged, unsupported, or a step of its ingest failed."""


class NotAnImage(FileOutcome):
    """A valid file with no picture in it (DICOM structured report, RT structure ...)."""

    status = SKIPPED


class DirectoryIndex(NotAnImage):
    """A DICOMDIR: it lists files (upload paths, in its order) and holds no picture itself."""

    def __init__(self, message: str, listed: list[str]):
        super().__init__(message)
        self.listed = listed


class Quarantined(FileOutcome):
    """A file held back for a person to review (burned-in annotations)."""

    status = QUARANTINED


@dataclass
class Decoded:
    kind: str
    pixels: np.ndarray
    format: str
    # What is kept of the file besides its pixels: a DICOM file's (de-identified) header, or the
    # uploaded picture when the project does not de-identify; None when the pixels are all.
    original: bytes | None = None
    original_suffix: str = ""
    modality: str = ""
    patient: str = ""
    study: str = ""
    series: str = ""
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

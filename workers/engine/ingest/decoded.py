"""What a format reader hands back for one file, whatever the format."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IMAGE = "image"    # one 2D picture: (H, W) or (H, W, 3)
VOLUME = "volume"  # 3D (D, H, W) or 4D (C, D, H, W)
SLICE = "slice"    # a single-frame DICOM that may join others of its series into a volume


class NotAnImage(ValueError):
    """A valid file with no picture in it (DICOM structured report, RT structure ...)."""


class Quarantined(ValueError):
    """A file held back for a person to review (burned-in annotations)."""


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

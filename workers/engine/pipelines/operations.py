"""The operation registry: each operation is a small class with typed parameters.

An operation takes a channel-first float32 array, (C, H, W) for a 2D image or
(C, D, H, W) for a volume, and returns one of the same kind. `dims` says which
it supports; `random` operations draw everything from the generator they are
given, so a seed reproduces them. `Context` carries what an operation may need
beyond the pixels: the sample's spacing, its DICOM facts and table row, and
statistics fitted over a patient or the whole dataset.

The web tier reads this registry on every pipeline form and API call (schemas, parameter
checks), so operation modules import MONAI and torch inside `apply`: only the processes
that run operations (workers, the editor's preview) pay for them, some 800 MB resident.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..params import Configurable, Param, registry_of

AUGMENTATION = "augmentation"
PREPROCESSING = "preprocessing"
# What an operation acts on, in the manner of MONAI's dictionary transforms: a spatial one moves the pixels, so a
# sample's mask goes through it too, with the same draw and nearest-neighbour interpolation (labels must not
# blend); an intensity one changes values only, so it touches the image alone.
SPATIAL = "spatial"
INTENSITY = "intensity"


class UnsupportedInput(ValueError):
    """The operation cannot take this input (a 3D volume to a 2D-only operation, say)."""


@dataclass
class Context:
    # Per spatial axis, in mm; () when unknown. Operations that change the pixel grid (resample,
    # resize) update it, so a derived dataset records the spacing its arrays have.
    spacing: tuple[float, ...] = ()
    meta: dict = field(default_factory=dict)   # rescale, window ... and "table": the joined table row
    patient: str = ""
    statistics: dict = field(default_factory=dict)  # {(scope, key): (mean, std, minimum, maximum)}
    nearest: bool = False  # a mask goes through: spatial operations interpolate by nearest neighbour


def interpolation(context: Context, linear: str) -> str:
    """The interpolation a spatial operation uses: `linear` (bilinear, trilinear ...) for images, nearest for masks."""
    return "nearest" if context.nearest else linear


class Operation(Configurable):
    category: ClassVar[str] = AUGMENTATION
    dims: ClassVar[tuple[int, ...]] = (2, 3)
    random: ClassVar[bool] = True
    acts_on: ClassVar[str] = INTENSITY  # SPATIAL operations say so (geometry.py, resample, crops)

    def __call__(self, image: np.ndarray, rng: np.random.Generator, context: Context | None = None) -> np.ndarray:
        spatial = image.ndim - 1
        if spatial not in self.dims:
            kind = "3D volumes" if spatial == 3 else "2D images"
            raise UnsupportedInput(f"{self.title} does not work on {kind}; it takes {' and '.join(f'{d}D' for d in self.dims)} input.")
        result = self.apply(np.asarray(image, dtype=np.float32), rng, context or Context())
        return np.ascontiguousarray(result, dtype=np.float32)

    def apply(self, image: np.ndarray, rng: np.random.Generator, context: Context) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict:
        return {**super().schema(), "category": cls.category, "dims": list(cls.dims), "random": cls.random,
                "acts_on": cls.acts_on}


OPERATIONS, register = registry_of("operation")


def seed_from(rng: np.random.Generator) -> int:
    """A seed for a library transform (MONAI's set_random_state), drawn from our generator."""
    return int(rng.integers(0, 2**31 - 1))


def probability(default: float = 1.0) -> Param:
    return Param("probability", "float", default, "Chance that the operation is applied to a given image.", 0.0, 1.0)


def applies(operation, rng: np.random.Generator) -> bool:
    return rng.random() < operation.probability

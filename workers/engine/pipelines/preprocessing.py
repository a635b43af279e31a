"""Medical preprocessing (P4): Hounsfield units, windows, normalisation, resampling, patches.

These read the sample's own facts from the Context: rescale slope and intercept
and its window (from the DICOM header), its voxel spacing, its table row, and
statistics fitted over its patient or the whole dataset before the run. MONAI is
imported in `apply` (see operations.py).
"""
from __future__ import annotations

import re

import numpy as np

from ..params import Param, ParamError
from .intensity import monai
from .operations import PREPROCESSING, SPATIAL, Operation, UnsupportedInput, interpolation, register

SCOPES = ("image", "patient", "dataset")


class Preprocessing(Operation):
    category = PREPROCESSING
    random = False


@register
class RescaleToHU(Preprocessing):
    """Applies the DICOM rescale slope and intercept: CT pixels become Hounsfield units."""
    name, title = "rescale_to_hu", "Rescale to Hounsfield units"

    def apply(self, image, rng, context):
        slope = float(context.meta.get("rescale_slope", 1.0))
        intercept = float(context.meta.get("rescale_intercept", 0.0))
        return image * slope + intercept


@register
class Window(Preprocessing):
    """Keeps a window of intensities (centre and width, e.g. lung -600/1500 HU) and maps it to 0..1."""
    name, title = "window", "Window (centre / width)"
    params = (Param("center", "float", 40.0, "Window centre, in the image's units (HU after rescaling).", -1e5, 1e5),
              Param("width", "float", 400.0, "Window width.", 1e-6, 1e6),
              Param("from_file", "bool", False, "Use the window stored in each file's header when it has one."))

    def apply(self, image, rng, context):
        from monai.transforms import ScaleIntensityRange

        center, width = self.center, self.width
        if self.from_file and context.meta.get("window_width"):
            center, width = float(context.meta["window_center"]), float(context.meta["window_width"])
        return monai(ScaleIntensityRange(a_min=center - width / 2, a_max=center + width / 2, b_min=0.0, b_max=1.0, clip=True), image, rng)


def fitted(context, scope: str, title: str) -> tuple[float, float, float, float]:
    key = (scope, context.patient if scope == "patient" else "")
    if key not in context.statistics:
        raise UnsupportedInput(f"{title} per {scope} needs statistics fitted over the {scope} before the run; none were given.")
    return context.statistics[key]


@register
class ZScore(Preprocessing):
    """Subtracts the mean and divides by the standard deviation of the image, its patient or the dataset."""
    name, title = "z_score", "Z-score"
    params = (Param("scope", "choice", "image", "Whose mean and standard deviation.", choices=SCOPES),)

    def apply(self, image, rng, context):
        if self.scope == "image":
            from monai.transforms import NormalizeIntensity

            return monai(NormalizeIntensity(), image, rng)
        mean, std, _, _ = fitted(context, self.scope, self.title)
        return (image - mean) / (std if std > 0 else 1.0)


@register
class MinMax(Preprocessing):
    """Maps the minimum and maximum of the image, its patient or the dataset to 0 and 1."""
    name, title = "min_max", "Min-max"
    params = (Param("scope", "choice", "image", "Whose minimum and maximum.", choices=SCOPES),)

    def apply(self, image, rng, context):
        if self.scope == "image":
            from monai.transforms import ScaleIntensity

            return monai(ScaleIntensity(minv=0.0, maxv=1.0), image, rng)
        _, _, low, high = fitted(context, self.scope, self.title)
        return (image - low) / (high - low if high > low else 1.0)


@register
class Resample(Preprocessing):
    """Resamples to a voxel spacing in mm, so every sample shows the same anatomy per pixel."""
    name, title = "resample", "Resample to a spacing"
    acts_on = SPATIAL
    params = (Param("pixel_mm", "float", 1.0, "Spacing of rows and columns, in mm.", 0.01, 100.0),
              Param("slice_mm", "float", 0.0, "Spacing of slices, in mm (volumes; 0 keeps it).", 0.0, 100.0))

    def apply(self, image, rng, context):
        from monai.transforms import Resize

        sides = image.shape[1:]
        spacing = tuple(context.spacing)[-len(sides):]
        if len(spacing) != len(sides) or not all(s > 0 for s in spacing):
            raise UnsupportedInput("Resampling needs the sample's voxel spacing, which is unknown for this sample.")
        targets = ([self.slice_mm or spacing[0]] if len(sides) == 3 else []) + [self.pixel_mm, self.pixel_mm]
        size = [max(1, round(side * have / want)) for side, have, want in zip(sides, spacing, targets)]
        context.spacing = tuple(have * side / new for have, side, new in zip(spacing, sides, size))
        return monai(Resize(spatial_size=size, mode=interpolation(context, "bilinear" if len(sides) == 2 else "trilinear")), image, rng)


@register
class CropAroundPoint(Preprocessing):
    """Crops a patch of a fixed size centred on coordinates from a table column ("x, y" or "x, y, z"
    in pixels: column, row and slice); the patch is padded with zeros where it leaves the image."""
    name, title = "crop_around_point", "Crop a patch around a point"
    acts_on = SPATIAL
    params = (Param("column", "text", "center", "The table column with the coordinates."),
              Param("height", "int", 64, "Patch rows.", 1, 4096), Param("width", "int", 64, "Patch columns.", 1, 4096),
              Param("depth", "int", 16, "Patch slices (volumes).", 1, 2048))

    def apply(self, image, rng, context):
        text = str((context.meta.get("table") or {}).get(self.column, "")).strip()
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]
        spatial = image.ndim - 1
        if len(numbers) != spatial:
            raise UnsupportedInput(f"The table column '{self.column}' must hold {spatial} coordinates for this sample; it holds '{text}'.")
        center = [round(v) for v in reversed(numbers)]  # x, y[, z] -> (slice,) row, column
        size = ([self.depth] if spatial == 3 else []) + [self.height, self.width]
        padded = np.pad(image, [(0, 0)] + [(s, s) for s in size])
        starts = [c - s // 2 + s for c, s in zip(center, size)]
        region = tuple(slice(max(0, a), max(0, a) + s) for a, s in zip(starts, size))
        patch = padded[(slice(None), *region)]
        if patch.shape[1:] != tuple(size):
            raise ParamError("column", f"The point {text} lies outside the image.")
        return patch

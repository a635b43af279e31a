"""Geometric augmentations and sizing (P3): flip, rotate, zoom, shift, crops, resize, elastic.

All through MONAI's spatial transforms, which take channel-first 2D and 3D arrays
alike (imported in `apply`, see operations.py). Rotation is in the image plane
(about the slice axis for a volume), as the theses used it; rotating out of plane
would mix slices of different spacing.
"""
from __future__ import annotations

import math

import numpy as np

from ..params import Param, ParamError
from .intensity import monai
from .operations import SPATIAL, Operation, applies, interpolation, probability, register

FLIP_AXES = ("left-right", "up-down", "head-foot")


@register
class Flip(Operation):
    """Mirrors the image left-right, up-down or (volumes) head-foot."""
    name, title = "flip", "Flip"
    acts_on = SPATIAL
    params = (Param("axis", "choice", "left-right", "Which way to mirror.", choices=FLIP_AXES), probability(0.5))

    def apply(self, image, rng, context):
        from monai.transforms import RandFlip

        spatial = image.ndim - 1
        if self.axis == "head-foot" and spatial == 2:
            raise ParamError("axis", "A 2D image has no head-foot axis; flip left-right or up-down.")
        axis = {"left-right": spatial - 1, "up-down": spatial - 2, "head-foot": 0}[self.axis]
        return monai(RandFlip(prob=self.probability, spatial_axis=axis), image, rng)


@register
class Rotate(Operation):
    """Rotates in the image plane by an angle (degrees) drawn from a range."""
    name, title = "rotate", "Rotate"
    acts_on = SPATIAL
    params = (Param("degrees", "range", (-15.0, 15.0), "Angle in degrees, drawn from this range.", -180.0, 180.0), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandRotate

        radians = tuple(math.radians(d) for d in self.degrees)
        transform = RandRotate(range_x=radians, prob=self.probability, keep_size=True, padding_mode="zeros",
                               mode=interpolation(context, "bilinear"))
        return monai(transform, image, rng)


@register
class Zoom(Operation):
    """Zooms in or out by a factor drawn from a range, keeping the image size."""
    name, title = "zoom", "Zoom / scale"
    acts_on = SPATIAL
    params = (Param("factor", "range", (0.9, 1.1), "Zoom factor, drawn from this range; above 1 enlarges.", 0.1, 10.0), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandZoom

        low, high = self.factor
        return monai(RandZoom(prob=self.probability, min_zoom=low, max_zoom=high, keep_size=True, padding_mode="constant",
                              mode=interpolation(context, "area")), image, rng)


@register
class Shift(Operation):
    """Shifts the image by up to a fraction of its size along each in-plane axis."""
    name, title = "shift", "Shift"
    acts_on = SPATIAL
    params = (Param("fraction", "float", 0.1, "Largest shift as a fraction of the image's side.", 0.0, 1.0), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandAffine

        sides = image.shape[1:]
        ranges = [(0.0, 0.0)] * (len(sides) - 2) + [(-self.fraction * s, self.fraction * s) for s in sides[-2:]]
        return monai(RandAffine(prob=self.probability, translate_range=ranges, padding_mode="zeros",
                                     mode=interpolation(context, "bilinear")), image, rng)


def crop_size(image, fraction: float) -> list[int]:
    return [max(1, round(side * fraction)) for side in image.shape[1:]]


@register
class RandomCrop(Operation):
    """Crops a region of a given fraction of each side at a random place."""
    name, title = "random_crop", "Random crop"
    acts_on = SPATIAL
    params = (Param("fraction", "float", 0.9, "Side of the crop as a fraction of the image's side.", 0.05, 1.0),)

    def apply(self, image, rng, context):
        from monai.transforms import RandSpatialCrop

        return monai(RandSpatialCrop(roi_size=crop_size(image, self.fraction), random_size=False), image, rng)


@register
class CenterCrop(Operation):
    """Crops the central region of a given fraction of each side."""
    name, title = "center_crop", "Centre crop"
    acts_on = SPATIAL
    random = False
    params = (Param("fraction", "float", 0.9, "Side of the crop as a fraction of the image's side.", 0.05, 1.0),)

    def apply(self, image, rng, context):
        from monai.transforms import CenterSpatialCrop

        return monai(CenterSpatialCrop(roi_size=crop_size(image, self.fraction)), image, rng)


@register
class ResizeTo(Operation):
    """Resizes to a given size in pixels (slices for volumes; 0 keeps that side)."""
    name, title = "resize", "Resize"
    acts_on = SPATIAL
    random = False
    params = (Param("height", "int", 224, "Rows.", 0, 4096), Param("width", "int", 224, "Columns.", 0, 4096),
              Param("depth", "int", 0, "Slices (volumes only; 0 keeps them).", 0, 2048))

    def apply(self, image, rng, context):
        from monai.transforms import Resize

        sides = list(image.shape[1:])
        wanted = ([self.depth] if len(sides) == 3 else []) + [self.height, self.width]
        size = [w or s for w, s in zip(wanted, sides)]
        if len(context.spacing) >= len(sides):  # the same anatomy over more or fewer pixels
            kept = tuple(context.spacing)[-len(sides):]
            context.spacing = tuple(have * side / new for have, side, new in zip(kept, sides, size))
        mode = interpolation(context, "bilinear" if len(sides) == 2 else "trilinear")
        return monai(Resize(spatial_size=size, mode=mode, anti_aliasing=False), image, rng)


@register
class Elastic(Operation):
    """Deforms the image smoothly, as soft tissue moves: random displacements on a coarse grid of
    control points, interpolated to every pixel."""
    name, title = "elastic", "Elastic deformation"
    acts_on = SPATIAL
    params = (Param("magnitude", "range", (1.0, 3.0), "Largest displacement in pixels, drawn from this range.", 0.0, 100.0),
              Param("grid", "int", 4, "Control points along each side (fewer: smoother, broader warps).", 2, 64),
              probability())

    def apply(self, image, rng, context):
        # Our own, in torch: MONAI's Rand2DElastic moves the image even at zero magnitude (its control
        # grid is resampled off by a fraction of a pixel), so "no deformation" would not be the identity.
        if not applies(self, rng):
            return image
        import torch
        import torch.nn.functional as F

        spatial = image.ndim - 1
        sides = image.shape[1:]
        magnitude = rng.uniform(*self.magnitude)
        coarse = rng.normal(0.0, 1.0, (1, spatial, *([self.grid] * spatial))).astype(np.float32)
        mode = "bicubic" if spatial == 2 else "trilinear"
        field = F.interpolate(torch.from_numpy(coarse), size=sides, mode=mode, align_corners=True)[0]
        field = field / max(float(field.abs().max()), 1e-6) * magnitude  # pixels, per axis
        axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in sides], indexing="ij")
        # grid_sample wants (x, y[, z]) in -1..1, fastest axis first.
        moved = [(axes[a] + field[a]) / max(sides[a] - 1, 1) * 2 - 1 for a in range(spatial)]
        grid = torch.stack(moved[::-1], dim=-1)[None]
        warped = F.grid_sample(torch.from_numpy(image)[None], grid, mode=interpolation(context, "bilinear"), padding_mode="zeros",
                               align_corners=True)
        return warped[0].numpy()

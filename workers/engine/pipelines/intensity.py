"""Intensity augmentations (P3): noise, dropout, blur, contrast. All work on 2D and 3D input.

MONAI's transforms do the image arithmetic where they match an operation; the
noise kinds MONAI lacks (Laplace, Poisson, impulse, salt and pepper) are single
numpy draws. MONAI and torch are imported in `apply` (see operations.py).
"""
from __future__ import annotations

import numpy as np

from ..params import Param, ParamError
from .operations import Operation, applies, probability, register, seed_from


def monai(transform, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A MONAI transform on a copy (some, coarse dropout among them, write into their input)."""
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed_from(rng))
    return np.asarray(transform(image.copy()), dtype=np.float32)


def extent(image: np.ndarray) -> tuple[float, float]:
    return float(image.min()), float(image.max())


@register
class Add(Operation):
    """Adds a value drawn from a range to every pixel (per channel if asked)."""
    name, title = "add", "Add"
    params = (Param("value", "range", (-0.1, 0.1), "The added value is drawn from this range.", -1e4, 1e4),
              Param("per_channel", "bool", False, "Draw a value for each channel."), probability())

    def apply(self, image, rng, context):
        if not applies(self, rng):
            return image
        shape = (image.shape[0],) + (1,) * (image.ndim - 1) if self.per_channel else ()
        return image + rng.uniform(*self.value, size=shape).astype(np.float32)


@register
class Multiply(Operation):
    """Multiplies every pixel by a factor drawn from a range (per channel if asked)."""
    name, title = "multiply", "Multiply"
    params = (Param("factor", "range", (0.9, 1.1), "The factor is drawn from this range.", 0.0, 100.0),
              Param("per_channel", "bool", False, "Draw a factor for each channel."), probability())

    def apply(self, image, rng, context):
        if not applies(self, rng):
            return image
        shape = (image.shape[0],) + (1,) * (image.ndim - 1) if self.per_channel else ()
        return image * rng.uniform(*self.factor, size=shape).astype(np.float32)


@register
class AdditiveGaussianNoise(Operation):
    """Adds Gaussian noise of the given standard deviation (in image units)."""
    name, title = "additive_gaussian_noise", "Additive Gaussian noise"
    params = (Param("std", "float", 0.05, "Standard deviation of the noise.", 0.0, 1e4),
              Param("mean", "float", 0.0, "Mean of the noise.", -1e4, 1e4), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandGaussianNoise

        return monai(RandGaussianNoise(prob=self.probability, mean=self.mean, std=self.std, sample_std=False), image, rng)


@register
class AdditiveLaplaceNoise(Operation):
    """Adds Laplace-distributed noise (heavier tails than Gaussian)."""
    name, title = "additive_laplace_noise", "Additive Laplace noise"
    params = (Param("scale", "float", 0.05, "Scale (diversity) of the noise.", 0.0, 1e4), probability())

    def apply(self, image, rng, context):
        return image + rng.laplace(0.0, self.scale, image.shape).astype(np.float32) if applies(self, rng) else image


@register
class AdditivePoissonNoise(Operation):
    """Adds Poisson-distributed counts (shot noise), centred so the mean brightness stays."""
    name, title = "additive_poisson_noise", "Additive Poisson noise"
    params = (Param("lam", "float", 4.0, "Mean count (lambda); the noise's variance is the same.", 0.0, 1e4),
              Param("scale", "float", 0.01, "Image units per count.", 0.0, 1e4), probability())

    def apply(self, image, rng, context):
        if not applies(self, rng):
            return image
        return image + (rng.poisson(self.lam, image.shape) - self.lam).astype(np.float32) * self.scale


class ReplacePixels(Operation):
    """Replaces a fraction of the pixels; subclasses say with what."""
    params = (Param("fraction", "float", 0.02, "Fraction of pixels replaced.", 0.0, 1.0), probability())

    def apply(self, image, rng, context):
        if not applies(self, rng):
            return image
        chosen = rng.random(image.shape[1:]) < self.fraction
        result = image.copy()
        result[:, chosen] = self.replacement(image, rng, int(chosen.sum()))
        return result

    def replacement(self, image, rng, count):
        raise NotImplementedError


@register
class ImpulseNoise(ReplacePixels):
    """Replaces a fraction of the pixels with random intensities from the image's range."""
    name, title = "impulse_noise", "Impulse noise"

    def replacement(self, image, rng, count):
        return rng.uniform(*extent(image), size=(image.shape[0], count)).astype(np.float32)


@register
class SaltAndPepper(ReplacePixels):
    """Replaces a fraction of the pixels with the image's minimum or maximum, half each."""
    name, title = "salt_and_pepper", "Salt and pepper"

    def replacement(self, image, rng, count):
        low, high = extent(image)
        return np.where(rng.random(count) < 0.5, low, high).astype(np.float32)


@register
class Salt(ReplacePixels):
    """Replaces a fraction of the pixels with the image's maximum."""
    name, title = "salt", "Salt"

    def replacement(self, image, rng, count):
        return extent(image)[1]


@register
class Pepper(ReplacePixels):
    """Replaces a fraction of the pixels with the image's minimum."""
    name, title = "pepper", "Pepper"

    def replacement(self, image, rng, count):
        return extent(image)[0]


@register
class Dropout(ReplacePixels):
    """Sets a fraction of the pixels to zero."""
    name, title = "dropout", "Dropout"

    def replacement(self, image, rng, count):
        return 0.0


@register
class CoarseDropout(Operation):
    """Sets rectangular (cuboid in 3D) holes to zero."""
    name, title = "coarse_dropout", "Coarse dropout"
    params = (Param("holes", "int", 4, "Number of holes.", 1, 100),
              Param("size", "float", 0.1, "Side of a hole as a fraction of the image's side.", 0.01, 1.0), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandCoarseDropout

        size = [max(1, round(s * self.size)) for s in image.shape[1:]]
        return monai(RandCoarseDropout(holes=self.holes, spatial_size=size, fill_value=0, prob=self.probability), image, rng)


@register
class ChannelShuffle(Operation):
    """Shuffles the order of the channels (colour images; one channel is left as it is)."""
    name, title = "channel_shuffle", "Channel shuffle"
    params = (probability(),)

    def apply(self, image, rng, context):
        return image[rng.permutation(image.shape[0])] if applies(self, rng) else image


@register
class Invert(Operation):
    """Inverts intensities within the image's range (dark becomes bright)."""
    name, title = "invert", "Invert"
    params = (probability(0.5),)

    def apply(self, image, rng, context):
        if not applies(self, rng):
            return image
        low, high = extent(image)
        return low + high - image


@register
class GaussianBlur(Operation):
    """Blurs with a Gaussian kernel whose sigma (in pixels) is drawn from a range."""
    name, title = "gaussian_blur", "Gaussian blur"
    params = (Param("sigma", "range", (0.5, 1.5), "Sigma in pixels, drawn from this range.", 0.0, 50.0), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandGaussianSmooth

        return monai(RandGaussianSmooth(sigma_x=self.sigma, sigma_y=self.sigma, sigma_z=self.sigma, prob=self.probability), image, rng)


@register
class AverageBlur(Operation):
    """Replaces each pixel by the mean of its neighbourhood (a box kernel)."""
    name, title = "average_blur", "Average blur"
    params = (Param("size", "int", 3, "Kernel side in pixels (odd).", 1, 31), probability())

    def check(self):
        if self.size % 2 == 0:
            raise ParamError("size", "size must be odd, so the kernel has a centre.")

    def apply(self, image, rng, context):
        if not applies(self, rng) or self.size == 1:
            return image
        import torch
        import torch.nn.functional as F

        tensor = torch.from_numpy(image)[None]
        pad = self.size // 2
        spatial = image.ndim - 1
        padded = F.pad(tensor, (pad,) * 2 * spatial, mode="replicate")
        pool = F.avg_pool2d if spatial == 2 else F.avg_pool3d
        return pool(padded, self.size, stride=1)[0].numpy()


@register
class MedianBlur(Operation):
    """Replaces each pixel by the median of its neighbourhood (removes salt and pepper)."""
    name, title = "median_blur", "Median blur"
    params = (Param("radius", "int", 1, "Neighbourhood radius in pixels (1 is 3x3).", 1, 10), probability())

    def apply(self, image, rng, context):
        from monai.transforms import MedianSmooth

        return monai(MedianSmooth(radius=self.radius), image, rng) if applies(self, rng) else image


@register
class HistogramEqualization(Operation):
    """Spreads intensities so their histogram is flat, within the image's range."""
    name, title = "histogram_equalization", "Histogram equalization"
    params = (Param("bins", "int", 256, "Histogram bins.", 2, 65536), probability())

    def apply(self, image, rng, context):
        if not applies(self, rng):
            return image
        from monai.transforms import HistogramNormalize

        low, high = extent(image)
        return image if high <= low else monai(HistogramNormalize(num_bins=self.bins, min=low, max=high), image, rng)


@register
class GammaContrast(Operation):
    """Changes contrast by a gamma curve (drawn from a range) over the image's range."""
    name, title = "gamma_contrast", "Gamma contrast"
    params = (Param("gamma", "range", (0.7, 1.5), "Gamma, drawn from this range; below 1 brightens.", 0.05, 10.0), probability())

    def apply(self, image, rng, context):
        from monai.transforms import RandAdjustContrast

        return monai(RandAdjustContrast(prob=self.probability, gamma=self.gamma), image, rng)




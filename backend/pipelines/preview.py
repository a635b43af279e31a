"""The pipeline preview: a few real samples of a dataset before and after the steps.

Volumes show their middle slice, and the steps run on that slice as a 2D image
(with the in-plane spacing), so the preview answers while parameters are moved.
Per-patient and per-dataset statistics are fitted over the samples shown.
"""
from __future__ import annotations

import base64

import numpy as np

from backend.datasets.models import Dataset, Sample
from backend.datasets.viewer import load, volume_of
from workers.engine.display import plane, png_bytes, to_uint8
from workers.engine.pipelines import Context, ParamError, Pipeline, UnsupportedInput, fit_statistics
from workers.engine.samples import IMAGE, channels_first

from .services import checked_steps

PREVIEW_SIZE = 192


def preview(user, dataset: Dataset, steps, seed: int, count: int) -> list[dict]:
    pipeline = Pipeline.from_steps(checked_steps(steps, "augmentation"))
    samples = spread(dataset, count)
    slices = [middle_slice(sample) for sample in samples]
    inputs = [channels_first(pixels, IMAGE) for pixels in slices]
    fitted = fit_statistics(pipeline, ((lambda image=image: image, plane_context(sample)) for sample, image in zip(samples, inputs)))
    items = []
    for index, (sample, pixels, image) in enumerate(zip(samples, slices, inputs)):
        context = plane_context(sample, fitted)
        item = {"sample": sample.pk, "label": sample.label, "before": data_url(to_uint8(pixels, sample.meta)),
                "after": "", "shape": [], "error": ""}
        try:
            result = pipeline(image, seed + index, context)
            item["after"], item["shape"] = data_url(displayable(result)), list(result.shape)
        except (UnsupportedInput, ParamError, ValueError, RuntimeError) as exc:
            item["error"] = str(exc)
        items.append(item)
    return items


def spread(dataset: Dataset, count: int) -> list[Sample]:
    """Samples spread evenly over the dataset, so the preview is not all one class."""
    ids = list(dataset.samples.values_list("id", flat=True))
    if not ids:
        return []
    chosen = sorted({ids[round(k * (len(ids) - 1) / max(count - 1, 1))] for k in range(min(count, len(ids)))})
    by_id = Sample.objects.select_related("dataset__project").in_bulk(chosen)
    return [by_id[i] for i in chosen]


def middle_slice(sample: Sample) -> np.ndarray:
    volume = volume_of(sample, load(sample, sample.array), 0)
    picture, _, _ = plane(volume, "axial", None)
    return np.asarray(picture)


def plane_context(sample: Sample, statistics: dict | None = None) -> Context:
    """The steps run on a volume's middle slice as on a 2D image, with the in-plane spacing."""
    return Context(spacing=tuple(sample.spacing[-2:]), meta=sample.meta, patient=sample.patient, statistics=statistics or {})


def displayed(pixels: np.ndarray) -> np.ndarray:
    """Channels-first pixels as a picture: (H, W) or (H, W, 3)."""
    return pixels.transpose(1, 2, 0) if pixels.shape[0] == 3 else pixels[0]


def displayable(result: np.ndarray) -> np.ndarray:
    """The pipeline's output (any units) stretched to 0..255 for the eye."""
    picture = displayed(result)
    low, high = float(picture.min()), float(picture.max())
    scaled = (picture - low) / (high - low) * 255 if high > low else np.zeros_like(picture)
    return scaled.astype(np.uint8)


def data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels, max_size=PREVIEW_SIZE)).decode()

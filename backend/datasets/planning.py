"""A dataset's volumes as a plan: the fingerprint its job stored (or made on first need, for datasets made before
fingerprints existed) and the plan the engine derives from it (workers/engine/planning.py)."""
from __future__ import annotations

import logging

import numpy as np

from workers.engine.planning import VolumeFacts, fingerprint_of, plan_for

from .models import Dataset, Sample, real_intensities

log = logging.getLogger(__name__)


def fingerprint_of_samples(samples: list[Sample], floats_are_real: bool = True) -> dict:
    """The fingerprint over the samples' volumes, or where there are none over their 2D images when some of them have
    real intensities (more than 8 bits) or masks (`Dataset.planned`'s rule); {} otherwise."""
    def loader(path):
        return lambda: np.load(path, mmap_mode="r")

    planned = [s for s in samples if s.kind == Sample.Kind.VOLUME]
    dims = 3
    images = [s for s in samples if s.kind == Sample.Kind.IMAGE]
    if not planned and (real_intensities({s.dtype for s in images}, floats_are_real) or any(s.mask for s in images)):
        planned, dims = [s for s in samples if s.kind == Sample.Kind.IMAGE], 2
    facts = [VolumeFacts(loader(s.project_dir / s.array), tuple(s.spacing), s.meta, s.modality,
                         loader(s.project_dir / s.mask) if s.mask else None, dims)
             for s in planned]
    return fingerprint_of(facts)


def fingerprint_for(dataset: Dataset) -> dict:
    """The stored fingerprint; made now (and stored) for a ready dataset with a plan that has none yet."""
    if dataset.fingerprint or dataset.status != Dataset.Status.READY or not dataset.planned:
        return dataset.fingerprint
    try:
        fingerprint = fingerprint_of_samples(list(dataset.samples.select_related("dataset__project")),
                                             dataset.floats_are_real())
    except (OSError, ValueError) as error:  # a stored array gone or damaged: the page shows no plan rather than fail
        log.warning("No fingerprint for dataset %s: %s", dataset.pk, error)
        return {}
    Dataset.objects.filter(pk=dataset.pk).update(fingerprint=fingerprint)
    dataset.fingerprint = fingerprint
    return fingerprint


def plan_of(dataset: Dataset, device_memory_bytes: int | None = None) -> dict:
    """The plan a run on this dataset starts from ({} for a dataset of 8-bit 2D images)."""
    return plan_for(fingerprint_for(dataset), device_memory_bytes) if dataset.planned else {}


PLAN_ROWS = (("target_spacing", "Spacing (mm)"), ("normalisation", "Intensities"), ("patch_size", "Patch"),
             ("batch_size", "Batch"))
NORMALISATION_WORDS = {"ct": "CT: clip, then one z-score", "dataset": "clip, then one z-score for the dataset",
                       "zscore": "z-score per sample", "none": "as they are"}


def plan_in_words(plan: dict) -> list[dict]:
    """The plan as rows a clinician can read: {setting, value, why}."""
    def value(key):
        if key in ("target_spacing", "patch_size"):
            return " × ".join(f"{v:g}" for v in plan[key])
        if key == "normalisation":
            return NORMALISATION_WORDS[plan[key]]
        return str(plan[key])

    return [{"key": key, "setting": title, "value": value(key), "why": plan["reasons"].get(key, "")}
            for key, title in PLAN_ROWS if key in plan]

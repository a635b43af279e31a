"""A dataset's volumes as a plan: the fingerprint its job stored (or made on first need, for datasets made before
fingerprints existed) and the plan the engine derives from it (workers/engine/planning.py)."""
from __future__ import annotations

import numpy as np

from workers.engine.planning import VolumeFacts, fingerprint_of, plan_for

from .models import Dataset, Sample


def fingerprint_of_samples(samples: list[Sample]) -> dict:
    """The fingerprint over the samples' volumes ({} when there are none)."""
    def loader(path):
        return lambda: np.load(path, mmap_mode="r")

    volumes = [VolumeFacts(loader(s.project_dir / s.array), tuple(s.spacing), s.meta, s.modality,
                           loader(s.project_dir / s.mask) if s.mask else None)
               for s in samples if s.kind == Sample.Kind.VOLUME]
    return fingerprint_of(volumes)


def fingerprint_for(dataset: Dataset) -> dict:
    """The stored fingerprint; made now (and stored) for a ready dataset of volumes that has none yet."""
    if dataset.fingerprint or dataset.status != Dataset.Status.READY or 3 not in dataset.dimensions:
        return dataset.fingerprint
    fingerprint = fingerprint_of_samples(list(dataset.samples.select_related("dataset__project")))
    Dataset.objects.filter(pk=dataset.pk).update(fingerprint=fingerprint)
    dataset.fingerprint = fingerprint
    return fingerprint


def plan_of(dataset: Dataset, device_memory_bytes: int | None = None) -> dict:
    """The plan a run on this dataset starts from ({} for a dataset of 2D images)."""
    return plan_for(fingerprint_for(dataset), device_memory_bytes)


PLAN_ROWS = (("target_spacing", "Voxel spacing (mm)"), ("normalisation", "Intensities"), ("patch_size", "Patch (voxels)"),
             ("batch_size", "Batch"))
NORMALISATION_WORDS = {"ct": "CT: clip, then one z-score", "zscore": "z-score per volume", "none": "as they are"}


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

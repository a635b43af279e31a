"""The preprocessing job: a pipeline version run over a dataset makes a derived dataset.

Every sample of the parent goes through the steps (statistics per patient or per
dataset are fitted first when a step needs them); the outputs are new arrays in
the derived dataset's folder, and each sample keeps its label, patient and a
link to the sample it came from. A sample the steps cannot take is reported
with the reason and left out; the rest come in.
"""
from __future__ import annotations

import hashlib
import shutil
from collections import Counter

import numpy as np
from django.db import transaction

from backend.datasets.models import Dataset, IngestReportEntry, Sample
from workers.engine.ingest import build_cache
from workers.engine.observer import JobStopped
from workers.engine.pipelines import Context, ParamError, Pipeline, Statistics, UnsupportedInput

from .ingest import DatasetJob
from .jobs import finish, register
from .merge import spec_of

Status = Dataset.Status
# Steps after which the stored values no longer mean what the parent's header says.
DROPS_RESCALE = {"rescale_to_hu", "window", "z_score", "min_max"}
DROPS_WINDOW = {"window", "z_score", "min_max"}


class PreprocessingJob(DatasetJob):
    task = "workers.tasks.preprocess_dataset"
    noun = "preprocessing"

    def work(self, derived: Dataset, reporter) -> None:
        build(derived, reporter)

    def discard(self, derived: Dataset, status: str) -> None:
        clear(derived)


PREPROCESSING = register(PreprocessingJob())


def clear(derived: Dataset) -> None:
    derived.samples.all().delete()
    derived.report.all().delete()
    shutil.rmtree(derived.storage_dir, ignore_errors=True)


def build(derived: Dataset, observer) -> None:
    clear(derived)  # a redelivered job starts again: preprocessing is cheap next to an ingest
    parent, version = derived.derived_from, derived.pipeline_version
    pipeline = Pipeline.from_steps(version.steps)
    samples = list(parent.samples.order_by("id"))
    fitted = fit_statistics(pipeline, samples, observer)
    arrays = derived.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rows, outcomes = [], []
    for index, sample in enumerate(samples):
        if observer.should_stop():
            raise JobStopped("stopped by the user")
        context = Context(spacing=tuple(sample.spacing), meta=sample.meta, patient=sample.patient, statistics=fitted)
        try:
            output, context = pipeline.apply(channels_first(np.load(sample.project_dir / sample.array), sample), index, context)
        except (UnsupportedInput, ParamError, ValueError) as exc:
            outcomes.append(IngestReportEntry(dataset=derived, index=index, path=sample.source_path[:1024], status="rejected", reason=str(exc)))
            continue
        stored = stored_layout(output, sample)
        relative = f"datasets/{derived.pk}/arrays/{index:07d}.npy"
        np.save(derived.project.storage_dir / relative, stored)
        rows.append(derived_sample(derived, sample, stored, relative, context, pipeline))
        outcomes.append(IngestReportEntry(dataset=derived, index=index, path=sample.source_path[:1024], status="accepted",
                                          reason=f"from sample {sample.pk}"))
        if index % 50 == 0:
            observer.progress(index + 1, len(samples) * 2, f"processed {index + 1:,} of {len(samples):,} samples")
    with transaction.atomic():
        Sample.objects.bulk_create(rows, batch_size=2000)
        IngestReportEntry.objects.bulk_create(outcomes, batch_size=2000)
    cache_and_finish(derived, observer, len(samples))


def fit_statistics(pipeline: Pipeline, samples: list[Sample], observer) -> dict:
    """Statistics of the images as they reach the first step that needs them (per patient or dataset)."""
    first = next((k for k, op in enumerate(pipeline.operations) if getattr(op, "scope", "image") != "image"), None)
    if first is None:
        return {}
    before = Pipeline(pipeline.operations[:first])
    statistics = Statistics()
    for index, sample in enumerate(samples):
        if observer.should_stop():
            raise JobStopped("stopped by the user")
        context = Context(spacing=tuple(sample.spacing), meta=sample.meta, patient=sample.patient)
        try:
            statistics.add(before(channels_first(np.load(sample.project_dir / sample.array), sample), index, context), sample.patient)
        except (UnsupportedInput, ParamError, ValueError):
            continue  # reported when the sample itself is processed
    return statistics.fitted()


def channels_first(array: np.ndarray, sample: Sample) -> np.ndarray:
    """Stored layouts (H, W), (H, W, 3), (D, H, W), (C, D, H, W) as the operations take them."""
    array = np.asarray(array, dtype=np.float32)
    if sample.kind == Sample.Kind.IMAGE:
        return array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
    return array if array.ndim == 4 else array[None]


def stored_layout(output: np.ndarray, sample: Sample) -> np.ndarray:
    if sample.kind == Sample.Kind.IMAGE:
        return output.transpose(1, 2, 0) if output.shape[0] == 3 else output[0]
    return output[0] if output.shape[0] == 1 else output


def derived_sample(derived: Dataset, sample: Sample, stored: np.ndarray, relative: str, context: Context, pipeline: Pipeline) -> Sample:
    names = {op.name for op in pipeline.operations}
    meta = {k: v for k, v in sample.meta.items()
            if not (k in ("rescale_slope", "rescale_intercept") and names & DROPS_RESCALE)
            and not (k in ("window_center", "window_width") and names & DROPS_WINDOW)}
    meta["derived_from_sample"] = sample.pk
    colour = sample.kind == Sample.Kind.IMAGE and stored.ndim == 3
    spatial = stored.shape[:2] if sample.kind == Sample.Kind.IMAGE else stored.shape[-3:]
    depth, (height, width) = (1, spatial) if sample.kind == Sample.Kind.IMAGE else (spatial[0], spatial[1:])
    same_grid = (depth, height, width) == (sample.depth, sample.height, sample.width)
    return Sample(
        dataset=derived, source_dataset=derived, label=sample.label, kind=sample.kind, modality=sample.modality,
        patient=sample.patient, study_uid=sample.study_uid, series_uid=sample.series_uid, source_path=sample.source_path,
        files=sample.files, array=relative, original=sample.original,
        mask=sample.mask if same_grid else "",  # a mask no longer fits once the pixel grid changed
        depth=depth, height=height, width=width, channels=3 if colour else 1, dtype=str(stored.dtype),
        spacing=[round(float(v), 6) for v in context.spacing], meta=meta, sha256=hashlib.sha256(stored.tobytes()).hexdigest())


def cache_and_finish(derived: Dataset, observer, total: int) -> None:
    samples = list(derived.samples.order_by("id"))
    specs = [spec_of(s) for s in samples]
    notes: dict[str, str] = {}
    channels, height, width = build_cache(specs, derived.project.storage_dir, derived.cache_path, observer, notes, progress_offset=total)
    for sample, spec in zip(samples, specs):
        sample.cache_index = spec.cache_index
    Sample.objects.bulk_update(samples, ["cache_index"], batch_size=2000)
    left_out = derived.report.exclude(status="accepted").count()
    if not samples:
        finish(Dataset, derived.pk, Status.FAILED, "The pipeline could not process any sample; the report says why for each.")
        return
    version = derived.pipeline_version
    message = f"{len(samples):,} samples through {version.pipeline.name} v{version.number}" + (
        f"; {left_out:,} left out (see the report)." if left_out else ".")
    finish(Dataset, derived.pk, Status.READY, message, class_counts=dict(sorted(Counter(s.label for s in samples).items())),
           channels=channels, height=height, width=width, sample_count=len(samples),
           task=Dataset.Task.SEGMENTATION if any(s.mask for s in samples) else Dataset.Task.CLASSIFICATION,
           patient_count=len({s.patient for s in samples if s.patient}),
           modalities=", ".join(sorted({s.modality for s in samples if s.modality}))[:200])

"""What the three jobs that build a dataset's samples share (ingest, merge, preprocessing): the
runner base, clearing what a job left, caching stored samples and the dataset's summary fields."""
from __future__ import annotations

import shutil
from functools import partial

import numpy as np

from backend.core.tasks import INGEST_QUEUE
from backend.datasets.models import Dataset, Sample
from backend.datasets.planning import fingerprint_of_samples
from workers.engine.ingest import SampleSpec, build_cache
from workers.engine.observer import JobStopped
from workers.engine.pipelines import Context, Pipeline, fit_statistics
from workers.engine.samples import channels_first, stored_shape, summarise

from .jobs import JobReporter, JobRunner

DERIVED_FOLDERS = ("arrays", "originals", "thumbnails", "cache", "store")


class DatasetJob(JobRunner):
    model = Dataset
    queue = INGEST_QUEUE

    def owns(self, dataset: Dataset) -> bool:
        return dataset.job_task == self.task

    def discard(self, dataset: Dataset, status: str) -> None:
        clear_derived(dataset)


def clear_derived(dataset: Dataset) -> None:
    """Samples, report and the files made from the upload; the upload itself stays."""
    dataset.samples.all().delete()
    dataset.report.all().delete()
    for folder in DERIVED_FOLDERS:
        shutil.rmtree(dataset.storage_dir / folder, ignore_errors=True)


def spec_of(sample: Sample) -> SampleSpec:
    """What the engine's cache builder needs of a stored sample."""
    shape = stored_shape(sample.kind, sample.depth, sample.height, sample.width, sample.channels)
    return SampleSpec(kind=sample.kind, label=sample.label, source_path=sample.source_path, files=[], array=sample.array,
                      original="", modality=sample.modality, patient=sample.patient, study="", series="", shape=shape,
                      dtype=sample.dtype, spacing=sample.spacing, meta=sample.meta, sha256=sample.sha256)


def cache_stored_samples(dataset: Dataset, reporter: JobReporter, progress_offset: int = 0) -> dict:
    """Builds the training cache of a dataset's stored samples, records each one's place in it, and
    returns the dataset's summary fields (counts, grid of the cache, patients, modalities, task)."""
    samples = list(dataset.samples.order_by("id"))
    specs = [spec_of(s) for s in samples]
    channels, height, width = build_cache(specs, dataset.project.storage_dir, dataset.cache_path, reporter, {}, progress_offset)
    for sample, spec in zip(samples, specs):
        sample.cache_index = spec.cache_index
    Sample.objects.bulk_update(samples, ["cache_index"], batch_size=2000)
    return {**summarise(samples), "channels": channels, "height": height, "width": width, "fingerprint": fingerprint_of_samples(samples, dataset.floats_are_real())}



def pixels_of(sample: Sample) -> np.ndarray:
    """A stored sample's array, channels first, as pipeline operations take it."""
    return channels_first(np.load(sample.project_dir / sample.array), sample.kind)


def context_of(sample: Sample, statistics: dict | None = None) -> Context:
    return Context(spacing=tuple(sample.spacing), meta=sample.meta, patient=sample.patient, statistics=statistics or {})


def statistics_for(pipeline: Pipeline, samples: list[Sample], reporter: JobReporter) -> dict:
    """The per-patient and per-dataset statistics the pipeline's steps need, over the samples."""
    def check_stop():
        if reporter.should_stop():
            raise JobStopped("stopped by the user")

    return fit_statistics(pipeline, ((partial(pixels_of, s), context_of(s)) for s in samples), check_stop)

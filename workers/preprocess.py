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

import numpy as np
from django.db import transaction

from backend.datasets.models import Dataset, IngestReportEntry, Sample
from workers.engine.observer import JobStopped
from workers.engine.pipelines import Context, ParamError, Pipeline, UnsupportedInput
from workers.engine.samples import grid, stored_layout

from .datasets import DatasetJob, cache_stored_samples, context_of, pixels_of, statistics_for
from .jobs import JobReporter, register

# Steps after which the stored values no longer mean what the parent's header says.
DROPS_RESCALE = {"rescale_to_hu", "window", "z_score", "min_max"}
DROPS_WINDOW = {"window", "z_score", "min_max"}


class PreprocessingJob(DatasetJob):
    task = "workers.tasks.preprocess_dataset"
    noun = "preprocessing"

    def work(self, derived: Dataset, reporter: JobReporter) -> None:
        clear(derived)  # a redelivered job starts again: preprocessing is cheap next to an ingest
        processed = process_samples(derived, reporter)
        fields = cache_stored_samples(derived, reporter, progress_offset=processed)
        if not fields["sample_count"]:
            self.finish(derived, Dataset.Status.FAILED, "The pipeline could not process any sample; the report says why for each.")
            return
        left_out = derived.report.exclude(status="accepted").count()
        version = derived.pipeline_version
        message = f"{fields['sample_count']:,} samples through {version.pipeline.name} v{version.number}" + (
            f"; {left_out:,} left out (see the report)." if left_out else ".")
        self.finish(derived, Dataset.Status.READY, message, **fields)

    def discard(self, derived: Dataset, status: str) -> None:
        clear(derived)


PREPROCESSING = register(PreprocessingJob())


def clear(derived: Dataset) -> None:
    """A derived dataset's folder holds only what the job made: all of it goes."""
    derived.samples.all().delete()
    derived.report.all().delete()
    shutil.rmtree(derived.storage_dir, ignore_errors=True)


def process_samples(derived: Dataset, reporter: JobReporter) -> int:
    """Every parent sample through the steps; returns how many were tried."""
    pipeline = Pipeline.from_steps(derived.pipeline_version.steps)
    samples = list(derived.derived_from.samples.order_by("id"))
    fitted = statistics_for(pipeline, samples, reporter)
    (derived.storage_dir / "arrays").mkdir(parents=True, exist_ok=True)
    rows, outcomes = [], []
    for index, sample in enumerate(samples):
        if reporter.should_stop():
            raise JobStopped("stopped by the user")
        outcome = IngestReportEntry(dataset=derived, index=index, path=sample.source_path[:1024], status="accepted",
                                    reason=f"from sample {sample.pk}")
        try:
            output, context = pipeline.apply(pixels_of(sample), index, context_of(sample, fitted))
        except (UnsupportedInput, ParamError, ValueError) as exc:
            outcome.status, outcome.reason = "rejected", str(exc)
        else:
            stored = stored_layout(output, sample.kind)
            relative = f"datasets/{derived.pk}/arrays/{index:07d}.npy"
            np.save(derived.project.storage_dir / relative, stored)
            rows.append(derived_sample(derived, sample, stored, relative, context, pipeline))
        outcomes.append(outcome)
        if index % 50 == 0:
            reporter.progress(index + 1, len(samples) * 2, f"processed {index + 1:,} of {len(samples):,} samples")
    with transaction.atomic():
        Sample.objects.bulk_create(rows, batch_size=2000)
        IngestReportEntry.objects.bulk_create(outcomes, batch_size=2000)
    return len(samples)


def derived_sample(derived: Dataset, sample: Sample, stored: np.ndarray, relative: str, context: Context, pipeline: Pipeline) -> Sample:
    names = {op.name for op in pipeline.operations}
    meta = {k: v for k, v in sample.meta.items()
            if not (k in ("rescale_slope", "rescale_intercept") and names & DROPS_RESCALE)
            and not (k in ("window_center", "window_width") and names & DROPS_WINDOW)}
    meta["derived_from_sample"] = sample.pk
    depth, height, width, channels = grid(stored.shape, sample.kind)
    same_grid = (depth, height, width) == (sample.depth, sample.height, sample.width)
    return Sample(
        dataset=derived, source_dataset=derived, label=sample.label, kind=sample.kind, modality=sample.modality,
        patient=sample.patient, study_uid=sample.study_uid, series_uid=sample.series_uid, source_path=sample.source_path,
        files=sample.files, array=relative, original=sample.original,
        mask=sample.mask if same_grid else "",  # a mask no longer fits once the pixel grid changed
        depth=depth, height=height, width=width, channels=channels, dtype=str(stored.dtype),
        spacing=[round(float(v), 6) for v in context.spacing], meta=meta, sha256=hashlib.sha256(stored.tobytes()).hexdigest())

"""The aggregation job: an aggregation pipeline version measures every sample of a dataset.

Each sample goes through the version's steps (rescale to HU, a window ...; statistics
per patient or dataset are fitted first when a step needs them), then each measure
is taken on the result; masks and spacing are the sample's own, so volumes are in
ml of the stored grid. A histogram needs bins shared by every sample, so it takes
a second pass once the range of all samples is known. A measure that cannot be
taken on a sample is left empty with the reason; the steps failing on a sample
leave its whole row empty with the reason. The job starts again from the first
sample when a worker dies: rows are only written at the end.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from django.db import transaction

from backend.core.tasks import INGEST_QUEUE
from backend.datasets.models import Sample
from backend.pipelines.models import Aggregation, AggregationRow
from workers.engine.observer import JobStopped
from workers.engine.pipelines import ParamError, Pipeline, UnsupportedInput
from workers.engine.pipelines.measures import HISTOGRAM, MEASURES, counts_in, measure, shared_edges, summarise

from .datasets import context_of, pixels_of, statistics_for
from .jobs import JobRunner, finish, register

Status = Aggregation.Status
FAILED_STEPS = "*"  # the problems key when the steps, not one measure, failed on a sample


class AggregationJob(JobRunner):
    """Rows are only written at the end, so a job started again (its worker died) begins at the first sample."""

    model = Aggregation
    task = "workers.tasks.aggregate_dataset"
    queue = INGEST_QUEUE
    noun = "table of measures"

    def work(self, aggregation: Aggregation, reporter) -> None:
        aggregation = Aggregation.objects.select_related("dataset__project", "pipeline_version").get(pk=aggregation.pk)
        measure_dataset(aggregation, reporter)

    def failure_message(self, exc: Exception) -> str:
        return f"The measures failed unexpectedly ({type(exc).__name__}); the worker log has the details."


AGGREGATION = register(AggregationJob())


def measure_dataset(aggregation: Aggregation, observer) -> None:
    version = aggregation.pipeline_version
    pipeline = Pipeline.from_steps(version.steps)
    names = [name for name in aggregation.measures if name != HISTOGRAM]
    wants_histogram = HISTOGRAM in aggregation.measures
    samples = list(aggregation.dataset.samples.order_by("id"))
    total = len(samples) * (2 if wants_histogram else 1)
    fitted = statistics_for(pipeline, samples, observer)
    rows, low, high = [], np.inf, -np.inf
    for index, sample in enumerate(samples):
        check_stop(observer)
        image, problem = processed(pipeline, sample, index, fitted)
        row = AggregationRow(aggregation=aggregation, index=index, sample=sample, label=sample.label, patient=sample.patient)
        if image is None:
            row.problems = {FAILED_STEPS: problem}
        else:
            taken = measure(image, names, mask_of(sample, names), tuple(sample.spacing))
            row.values, row.problems = rounded(taken["values"]), taken["problems"]
            low, high = min(low, float(image.min())), max(high, float(image.max()))
        rows.append(row)
        observer.progress(index + 1, total, f"measured {index + 1:,} of {len(samples):,} samples")
    edges, histograms = [], {}
    if wants_histogram:
        edges, histograms = histogram_pass(pipeline, samples, rows, fitted, shared_edges(low, high), observer)
    store(aggregation, rows, names, edges, histograms)


def check_stop(observer) -> None:
    if observer.should_stop():
        raise JobStopped("stopped by the user")


def processed(pipeline: Pipeline, sample: Sample, index: int, fitted: dict) -> tuple[np.ndarray | None, str]:
    """The sample after the steps, or None and why the steps could not take it."""
    try:
        return pipeline(pixels_of(sample), index, context_of(sample, fitted)), ""
    except (UnsupportedInput, ParamError, ValueError) as exc:
        return None, str(exc)


def mask_of(sample: Sample, names: list[str]) -> np.ndarray | None:
    if not sample.mask or not any(MEASURES[name].needs_mask for name in names):
        return None
    return np.load(sample.project_dir / sample.mask)


def rounded(values: dict) -> dict:
    # Six significant digits: the table stays readable and exports stay small; nan means "no voxel in the mask".
    return {name: (float(f"{value:.6g}") if np.isfinite(value) else None) for name, value in values.items()}


def histogram_pass(pipeline, samples, rows, fitted, edges, observer) -> tuple[list[float], dict]:
    """Second pass: every sample's histogram over the bins shared by all, summed per label."""
    per_label = defaultdict(lambda: np.zeros(len(edges) - 1, dtype=np.int64))
    for index, (sample, row) in enumerate(zip(samples, rows)):
        check_stop(observer)
        if FAILED_STEPS in row.problems:
            continue
        image, _ = processed(pipeline, sample, index, fitted)
        row.histogram = counts_in(image, edges)
        per_label[row.label] += row.histogram
        observer.progress(len(samples) + index + 1, 2 * len(samples), "histograms")
    return [round(e, 6) for e in edges], {label: counts.tolist() for label, counts in sorted(per_label.items())}


def store(aggregation: Aggregation, rows: list[AggregationRow], names: list[str], edges: list[float], histograms: dict) -> None:
    measured = sum(1 for row in rows if FAILED_STEPS not in row.problems)
    with transaction.atomic():
        AggregationRow.objects.filter(aggregation=aggregation).delete()  # a redelivered job starts again
        AggregationRow.objects.bulk_create(rows, batch_size=2000)
    summary = summarise([(row.label, row.values) for row in rows if row.values], names)
    left_out = len(rows) - measured
    message = f"{measured:,} of {len(rows):,} samples measured" + (
        f"; the steps could not take {left_out:,} (the table says why)." if left_out else ".")
    status = Status.READY if measured or not rows else Status.FAILED
    if status == Status.FAILED:
        message = "The steps could not take any sample; the table says why for each."
    finish(Aggregation, aggregation.pk, status, message, histogram_edges=edges, histograms=histograms, summary=summary, measured_count=measured)

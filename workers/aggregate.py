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

import logging
from collections import defaultdict
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.datasets.models import Sample
from backend.pipelines.models import Aggregation, AggregationRow
from workers.engine.observer import JobStopped
from workers.engine.pipelines import Context, ParamError, Pipeline, UnsupportedInput
from workers.engine.pipelines.measures import HISTOGRAM, MEASURES, counts_in, measure, shared_edges, summarise

from .observers import DatabaseObserver
from .preprocess import channels_first, fit_statistics

log = logging.getLogger(__name__)
Status = Aggregation.Status
FAILED_STEPS = "*"  # the problems key when the steps, not one measure, failed on a sample


class AggregationObserver(DatabaseObserver):
    """Progress writes also say the worker is alive."""

    def progress(self, done: int, total: int, message: str = "") -> None:
        super().progress(done, total, message)
        Aggregation.objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())


def run_aggregation(aggregation_id: int, hostname: str = "") -> None:
    claimed = Aggregation.objects.filter(pk=aggregation_id, status=Status.QUEUED).update(
        status=Status.RUNNING, claimed_by=hostname, heartbeat_at=timezone.now(), message="")
    if not claimed:
        return  # finished, stopped, deleted or taken by another worker
    aggregation = Aggregation.objects.select_related("dataset__project", "pipeline_version").get(pk=aggregation_id)
    try:
        if aggregation.stop_requested:
            raise JobStopped("stopped before it started")
        measure_dataset(aggregation, AggregationObserver(aggregation, has_message=False))
    except JobStopped:
        finish(aggregation_id, Status.STOPPED, "Stopped by the user; nothing was kept.")
    except Exception as exc:
        log.exception("aggregation %s failed", aggregation_id)
        finish(aggregation_id, Status.FAILED, f"The measures failed unexpectedly ({type(exc).__name__}); the worker log has the details.")


def finish(aggregation_id: int, status: str, message: str, **fields) -> None:
    Aggregation.objects.filter(pk=aggregation_id).update(status=status, message=message, finished_at=timezone.now(), **fields)


def measure_dataset(aggregation: Aggregation, observer) -> None:
    version = aggregation.pipeline_version
    pipeline = Pipeline.from_steps(version.steps)
    names = [name for name in aggregation.measures if name != HISTOGRAM]
    wants_histogram = HISTOGRAM in aggregation.measures
    samples = list(aggregation.dataset.samples.order_by("id"))
    total = len(samples) * (2 if wants_histogram else 1)
    fitted = fit_statistics(pipeline, samples, observer)
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
    context = Context(spacing=tuple(sample.spacing), meta=sample.meta, patient=sample.patient, statistics=fitted)
    try:
        return pipeline(channels_first(np.load(sample.project_dir / sample.array), sample), index, context), ""
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
    finish(aggregation.pk, status, message, histogram_edges=edges, histograms=histograms, summary=summary, measured_count=measured)


def recover_interrupted_aggregations(hostname: str, starting: bool) -> int:
    """Requeue aggregations whose worker died: ours from before a restart, or any silent for too long."""
    from backend.core.tasks import INGEST_QUEUE, send_after_commit

    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALE_SECONDS)
    requeued = 0
    for aggregation in Aggregation.objects.filter(status=Status.RUNNING):
        mine = starting and aggregation.claimed_by == hostname
        silent = aggregation.heartbeat_at is None or aggregation.heartbeat_at < stale
        if not (mine or silent):
            continue
        with transaction.atomic():
            if Aggregation.objects.filter(pk=aggregation.pk, status=Status.RUNNING, heartbeat_at=aggregation.heartbeat_at).update(
                    status=Status.QUEUED, claimed_by="", message="Starting again after the worker stopped."):
                log.warning("restarting aggregation %s (worker %s stopped)", aggregation.pk, aggregation.claimed_by or "unknown")
                send_after_commit("workers.tasks.aggregate_dataset", aggregation.pk, INGEST_QUEUE)
                requeued += 1
    return requeued

"""The ingest job: turn a dataset's upload into samples, a report and a training cache.

The report rows are the job's journal: they are written in batches as files are
read, so a worker killed half-way leaves a record of what is done. Another
worker (or the same one, restarted) resumes from there: `recover_interrupted_ingests`
requeues ingests whose worker is gone, and `ingest_upload` skips journalled files.
"""
from __future__ import annotations

import logging
import shutil
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.core.tasks import INGEST_QUEUE, send_after_commit
from backend.datasets.models import Dataset, IngestReportEntry, Sample
from workers.engine.ingest import (
    ACCEPTED,
    ArchiveError,
    FileRecord,
    IngestOptions,
    IngestSummary,
    discard_slice_arrays,
    ingest_upload,
)
from workers.engine.observer import JobStopped

from .observers import DatabaseObserver

log = logging.getLogger(__name__)
DERIVED_FOLDERS = ("arrays", "originals", "thumbnails", "cache")
Status = Dataset.Status


class ReportJournal:
    """The engine's Journal on IngestReportEntry rows."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def recorded(self) -> dict[int, FileRecord]:
        rows = self.dataset.report.values_list("index", "path", "status", "reason", "detail")
        return {index: FileRecord(index, path, status, reason, detail) for index, path, status, reason, detail in rows}

    def record(self, records: list[FileRecord]) -> None:
        """Records a file's outcome; recording it again replaces it (the engine revises outcomes
        when assembling samples fails on a file it had accepted)."""
        if not records:
            return
        IngestReportEntry.objects.bulk_create(
            [IngestReportEntry(dataset=self.dataset, index=r.index, path=r.path[:1024], status=r.status, reason=r.reason, detail=r.detail)
             for r in records],
            batch_size=1000, update_conflicts=True, unique_fields=["dataset", "index"], update_fields=["status", "reason", "detail"],
        )
        Dataset.objects.filter(pk=self.dataset.pk).update(heartbeat_at=timezone.now())


class IngestObserver(DatabaseObserver):
    """Progress writes also say the worker is alive."""

    def progress(self, done: int, total: int, message: str = "") -> None:
        super().progress(done, total, message)
        Dataset.objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())


def clear_derived(dataset: Dataset) -> None:
    dataset.samples.all().delete()
    dataset.report.all().delete()
    for folder in DERIVED_FOLDERS:
        shutil.rmtree(dataset.storage_dir / folder, ignore_errors=True)


def finish(dataset_id: int, status: str, message: str, **fields) -> None:
    Dataset.objects.filter(pk=dataset_id).update(status=status, message=message, finished_at=timezone.now(), **fields)


def claim(dataset_id: int, hostname: str) -> Dataset | None:
    """Take a queued (or resumed) ingest; None when it is finished, stopped, gone or taken by a live worker."""
    claimed = Dataset.objects.filter(pk=dataset_id, status__in=[Status.QUEUED]).update(
        status=Status.INGESTING, claimed_by=hostname, heartbeat_at=timezone.now(), message="")
    if not claimed:
        return None
    return Dataset.objects.select_related("project").get(pk=dataset_id)


def run_ingest(dataset_id: int, hostname: str = "") -> None:
    dataset = claim(dataset_id, hostname)
    if dataset is None:
        return
    if dataset.stop_requested:
        clear_derived(dataset)
        finish(dataset_id, Status.STOPPED, "Stopped before it started.")
        return
    options = IngestOptions(deidentifier=dataset.project.deidentifier(), labels_from=dataset.labels_from,
                            processes=settings.INGEST_PROCESSES)
    journal = ReportJournal(dataset)
    try:
        summary = ingest_upload(dataset.upload_dir, dataset.storage_dir, options, IngestObserver(dataset, has_message=False), journal)
    except JobStopped:
        clear_derived(dataset)
        shutil.rmtree(dataset.upload_dir, ignore_errors=True)
        finish(dataset_id, Status.STOPPED, "Ingest stopped by the user; nothing was kept.")
        return
    except ArchiveError as exc:
        finish(dataset_id, Status.FAILED, str(exc))
        return
    except Exception as exc:
        log.exception("ingest of dataset %s failed", dataset_id)
        clear_derived(dataset)
        finish(dataset_id, Status.FAILED, f"The ingest failed unexpectedly ({type(exc).__name__}). Nothing was kept; the worker log has the details.")
        return
    store_result(dataset, summary)
    records = list(journal.recorded().values())
    discard_slice_arrays(records, summary, dataset.storage_dir)
    # The upload holds the files as they came, identifiers included: only the de-identified copies stay.
    shutil.rmtree(dataset.upload_dir, ignore_errors=True)


def sample_rows(dataset: Dataset, summary: IngestSummary) -> list[Sample]:
    prefix = f"datasets/{dataset.pk}/"
    rows = []
    for spec in summary.samples:
        shape = spec.shape
        colour = spec.kind == "image" and len(shape) == 3 or spec.kind == "volume" and len(shape) == 4 and shape[-1] == 3
        spatial = shape[:2] if spec.kind == "image" else (shape[-4:-1] if colour else shape[-3:])
        depth, (height, width) = (1, spatial) if spec.kind == "image" else (spatial[0], spatial[1:])
        rows.append(Sample(
            dataset=dataset, source_dataset=dataset, label=spec.label, kind=spec.kind, modality=spec.modality[:20],
            patient=spec.patient[:64], study_uid=spec.study[:64], series_uid=spec.series[:64],
            source_path=spec.source_path[:1024], files=spec.files, array=prefix + spec.array,
            original=prefix + spec.original if spec.original else "", mask=prefix + spec.mask if spec.mask else "",
            cache_index=spec.cache_index, depth=depth, height=height, width=width, channels=3 if colour else 1,
            dtype=spec.dtype, spacing=spec.spacing, meta=spec.meta, sha256=spec.sha256,
        ))
    return rows


def store_result(dataset: Dataset, summary: IngestSummary) -> None:
    samples = summary.samples
    with transaction.atomic():
        dataset.samples.all().delete()  # a resumed job may have stored some before it was killed
        Sample.objects.bulk_create(sample_rows(dataset, summary), batch_size=2000)
        add_notes(dataset, summary.notes)
        counts = Counter(dataset.report.values_list("status", flat=True))
        not_taken = sum(n for status, n in counts.items() if status != ACCEPTED)
        modalities = sorted({s.modality for s in samples if s.modality})
        fields = {
            "class_counts": summary.class_counts, "channels": summary.channels, "height": summary.height,
            "width": summary.width, "task": summary.task, "sample_count": len(samples),
            "patient_count": len({s.patient for s in samples if s.patient}), "modalities": ", ".join(modalities)[:200],
            "size_bytes": folder_size(dataset.storage_dir),
        }
        if samples:
            message = f"{len(samples):,} samples from {counts.get(ACCEPTED, 0):,} files" + (
                f"; {not_taken:,} files not taken (see the report)." if not_taken else ".")
            finish(dataset.pk, Status.READY, message, **fields)
        else:
            finish(dataset.pk, Status.FAILED, "No usable images were found in the upload; the report says why for each file.", **fields)


def add_notes(dataset: Dataset, notes: dict[str, str]) -> None:
    """What assembling samples found out about files (series slices, masks, odd shapes) goes to their report rows."""
    paths = list(notes)
    for start in range(0, len(paths), 500):
        entries = list(dataset.report.filter(path__in=paths[start:start + 500]))
        for entry in entries:
            entry.reason = "; ".join(filter(None, [entry.reason, notes[entry.path]]))
        IngestReportEntry.objects.bulk_update(entries, ["reason"], batch_size=500)


def folder_size(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "upload" not in p.relative_to(folder).parts[:1])


def recover_interrupted_ingests(hostname: str, starting: bool) -> int:
    """Requeue ingests whose worker died: ours from before a restart, or any silent for too long."""
    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALE_SECONDS)
    candidates = Dataset.objects.filter(status=Status.INGESTING)
    requeued = 0
    for dataset in candidates:
        mine = starting and dataset.claimed_by == hostname
        silent = dataset.heartbeat_at is None or dataset.heartbeat_at < stale
        if not (mine or silent):
            continue
        with transaction.atomic():
            taken = Dataset.objects.filter(pk=dataset.pk, status=Status.INGESTING, heartbeat_at=dataset.heartbeat_at).update(
                status=Status.QUEUED, claimed_by="", message="Resuming after the worker stopped.")
            if taken:
                log.warning("resuming ingest of dataset %s (worker %s stopped)", dataset.pk, dataset.claimed_by or "unknown")
                send_after_commit(dataset.job_task, dataset.pk, INGEST_QUEUE)
                requeued += 1
    return requeued

"""The ingest job: unpack a dataset's uploaded archive into samples, a report and a cache."""
from __future__ import annotations

import logging
import shutil

from django.db import transaction
from django.utils import timezone

from backend.datasets.models import Dataset, IngestReportEntry, Sample
from workers.engine.ingest import ACCEPTED, ArchiveError, IngestResult, ingest_archive
from workers.engine.observer import JobStopped

from .observers import DatabaseObserver

log = logging.getLogger(__name__)
DERIVED_FOLDERS = ("originals", "thumbnails", "cache")


def clear_derived(dataset: Dataset) -> None:
    """Remove what an earlier, interrupted attempt left, so a retry starts clean."""
    dataset.samples.all().delete()
    dataset.report.all().delete()
    for folder in DERIVED_FOLDERS:
        shutil.rmtree(dataset.storage_dir / folder, ignore_errors=True)


def finish(dataset_id: int, status: str, message: str, **fields) -> None:
    Dataset.objects.filter(pk=dataset_id).update(status=status, message=message, finished_at=timezone.now(), **fields)


def run_ingest(dataset_id: int) -> None:
    dataset = Dataset.objects.filter(pk=dataset_id).select_related("project").first()
    if dataset is None or dataset.status in (Dataset.Status.READY, Dataset.Status.STOPPED):
        return
    if dataset.stop_requested:
        finish(dataset_id, Dataset.Status.STOPPED, "Stopped before it started.")
        return
    clear_derived(dataset)
    Dataset.objects.filter(pk=dataset_id).update(status=Dataset.Status.INGESTING, message="")
    try:
        result = ingest_archive(dataset.upload_path, dataset.storage_dir, DatabaseObserver(dataset, has_message=False))
    except JobStopped:
        clear_derived(dataset)
        finish(dataset_id, Dataset.Status.STOPPED, "Ingest stopped by the user; nothing was kept.")
        return
    except ArchiveError as exc:
        finish(dataset_id, Dataset.Status.FAILED, str(exc))
        return
    except Exception as exc:
        log.exception("ingest of dataset %s failed", dataset_id)
        clear_derived(dataset)
        finish(dataset_id, Dataset.Status.FAILED, f"The ingest failed unexpectedly ({type(exc).__name__}). Nothing was kept; the worker log has the details.")
        return
    store_result(dataset, result)


def store_result(dataset: Dataset, result: IngestResult) -> None:
    accepted = result.accepted
    with transaction.atomic():
        Sample.objects.bulk_create(
            [
                Sample(
                    dataset=dataset, label=o.label, source_path=o.path, original=o.original,
                    thumbnail=o.thumbnail, cache_index=o.cache_index, width=o.width, height=o.height,
                    channels=o.channels, sha256=o.sha256,
                )
                for o in accepted
            ],
            batch_size=5000,
        )
        IngestReportEntry.objects.bulk_create(
            [IngestReportEntry(dataset=dataset, path=o.path, status=o.status if o.status != ACCEPTED else "changed", reason=o.reason)
             for o in result.outcomes if o.reason],
            batch_size=5000,
        )
        rejected = sum(1 for o in result.outcomes if o.status != ACCEPTED)
        if accepted:
            message = f"{len(accepted)} images ingested" + (f"; {rejected} files not taken (see the report)." if rejected else ".")
            finish(dataset.pk, Dataset.Status.READY, message, class_counts=result.class_counts,
                   channels=result.channels, height=result.height, width=result.width)
        else:
            finish(dataset.pk, Dataset.Status.FAILED, "No usable images were found in the upload; the report says why for each file.")

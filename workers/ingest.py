"""The ingest job: turn a dataset's upload into samples, a report and a training cache.

The report rows are the job's journal: they are written in batches as files are
read, so a worker killed half-way leaves a record of what is done. Another
worker (or the same one, restarted) resumes from there: the recovery sweep
(workers/jobs.py) queues the ingest again, and `ingest_upload` skips journalled files.
"""
from __future__ import annotations

import shutil
from collections import Counter

from django.conf import settings
from django.db import transaction

from backend.datasets.models import Dataset, IngestReportEntry, Sample
from backend.datasets.planning import fingerprint_of_samples
from workers.engine.ingest import (
    ACCEPTED,
    ArchiveError,
    FileRecord,
    IngestOptions,
    IngestSummary,
    discard_slice_arrays,
    ingest_upload,
)
from workers.engine.samples import grid, summarise

from .datasets import DatasetJob, clear_derived
from .jobs import JobReporter, finish, register

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


class IngestJob(DatasetJob):
    task = "workers.tasks.ingest_dataset"
    noun = "ingest"
    stopped_message = "Ingest stopped by the user; nothing was kept."

    def work(self, dataset: Dataset, reporter: JobReporter) -> None:
        dataset = Dataset.objects.select_related("project").get(pk=dataset.pk)
        options = IngestOptions(deidentifier=dataset.project.deidentifier(), labels_from=dataset.labels_from,
                                processes=settings.INGEST_PROCESSES)
        journal = ReportJournal(dataset)
        try:
            summary = ingest_upload(dataset.upload_dir, dataset.storage_dir, options, reporter, journal)
        except ArchiveError as exc:  # the upload as a whole cannot be opened: say what is wrong with it
            self.finish(dataset, Dataset.Status.FAILED, str(exc))
            return
        store_result(dataset, summary)
        discard_slice_arrays(list(journal.recorded().values()), summary, dataset.storage_dir)
        # The upload holds the files as they came, identifiers included: only the de-identified copies stay.
        shutil.rmtree(dataset.upload_dir, ignore_errors=True)

    def discard(self, dataset: Dataset, status: str) -> None:
        clear_derived(dataset)
        if status == Dataset.Status.STOPPED:
            shutil.rmtree(dataset.upload_dir, ignore_errors=True)


INGEST = register(IngestJob())


def sample_rows(dataset: Dataset, summary: IngestSummary) -> list[Sample]:
    prefix = f"datasets/{dataset.pk}/"
    rows = []
    for spec in summary.samples:
        depth, height, width, channels = grid(spec.shape, spec.kind)
        rows.append(Sample(
            dataset=dataset, source_dataset=dataset, label=spec.label, kind=spec.kind, modality=spec.modality[:20],
            patient=spec.patient[:64], study_uid=spec.study[:64], series_uid=spec.series[:64],
            source_path=spec.source_path[:1024], files=spec.files, array=prefix + spec.array,
            original=prefix + spec.original if spec.original else "", mask=prefix + spec.mask if spec.mask else "",
            cache_index=spec.cache_index, depth=depth, height=height, width=width, channels=channels,
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
        fields = {**summarise(samples), "channels": summary.channels, "height": summary.height, "width": summary.width,
                  "size_bytes": folder_size(dataset.storage_dir), "fingerprint": fingerprint_of_samples(list(dataset.samples.select_related("dataset__project"))),
                  "label_names": summary.label_names}
        if samples:
            message = f"{len(samples):,} samples from {counts.get(ACCEPTED, 0):,} files" + (
                f"; {not_taken:,} files not taken (see the report)." if not_taken else ".") + unnamed_in_words(fields)
            finish(Dataset, dataset.pk, Status.READY, message, **fields)
        else:
            finish(Dataset, dataset.pk, Status.FAILED, "No usable images were found in the upload; the report says why for each file.", **fields)


def unnamed_in_words(fields: dict) -> str:
    """' Labels 1, 2 have no name ...' when the upload named some labels but not every value its masks hold
    (without any label file, every label goes by its number until someone names it: nothing to report)."""
    named = Dataset(mask_values=fields["mask_values"], label_names=fields["label_names"])
    unnamed = named.unnamed_label_values
    if not fields["label_names"] or not unnamed:
        return ""
    values = ", ".join(map(str, unnamed))
    return (f" Label{'s' if len(unnamed) > 1 else ''} {values} {'have' if len(unnamed) > 1 else 'has'} no name in the "
            "upload's label file; name them in the Labels card.")


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

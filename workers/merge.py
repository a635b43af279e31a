"""The merge job: index the samples of several datasets under one, with a label mapping, and cache them."""
from __future__ import annotations

from django.db import transaction

from backend.datasets.models import Dataset, Sample

from .datasets import DatasetJob, cache_stored_samples
from .jobs import JobReporter, register

COPIED_FIELDS = ["source_dataset_id", "kind", "modality", "patient", "study_uid", "series_uid", "source_path", "files",
                 "array", "original", "mask", "depth", "height", "width", "channels", "dtype", "spacing", "meta", "sha256"]


class MergeJob(DatasetJob):
    task = "workers.tasks.merge_datasets"
    noun = "merge"
    stopped_message = "Merge stopped by the user; nothing was kept."

    def work(self, merged: Dataset, reporter: JobReporter) -> None:
        index_samples(merged)
        fields = cache_stored_samples(merged, reporter)
        sources = ", ".join(merged.merged_from.order_by("id").values_list("name", flat=True))
        self.finish(merged, Dataset.Status.READY, f"{fields['sample_count']:,} samples indexed from {sources}; no file was copied.",
                    **fields)


MERGE = register(MergeJob())


def index_samples(merged: Dataset) -> None:
    mapping = merged.label_mapping
    with transaction.atomic():
        merged.samples.all().delete()
        for source in merged.merged_from.order_by("id"):
            rows = source.samples.order_by("id").values("label", *COPIED_FIELDS)
            batch = []
            for row in rows.iterator(chunk_size=5000):
                row["label"] = mapping.get(row["label"], row["label"])
                batch.append(Sample(dataset=merged, **row))
                if len(batch) >= 5000:
                    Sample.objects.bulk_create(batch)
                    batch = []
            Sample.objects.bulk_create(batch)

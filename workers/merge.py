"""The merge job: index the samples of several datasets under one, with a label mapping, and cache them."""
from __future__ import annotations

from collections import Counter

from django.db import transaction

from backend.datasets.models import Dataset, Sample
from workers.engine.ingest import SampleSpec, build_cache

from .ingest import DatasetJob
from .jobs import JobReporter, finish, register

Status = Dataset.Status
COPIED_FIELDS = ["source_dataset_id", "kind", "modality", "patient", "study_uid", "series_uid", "source_path", "files",
                 "array", "original", "mask", "depth", "height", "width", "channels", "dtype", "spacing", "meta", "sha256"]


class MergeJob(DatasetJob):
    task = "workers.tasks.merge_datasets"
    noun = "merge"
    stopped_message = "Merge stopped by the user; nothing was kept."

    def work(self, merged: Dataset, reporter: JobReporter) -> None:
        index_samples(merged)
        cache_samples(merged, reporter)

    def discard(self, merged: Dataset, status: str) -> None:
        merged.samples.all().delete()  # the samples are rows over other datasets' files: no file to remove


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


def spec_of(sample: Sample) -> SampleSpec:
    """What build_cache needs of a stored sample (merges and derived datasets cache stored samples)."""
    shape = [sample.height, sample.width] + ([3] if sample.channels == 3 else []) if sample.kind == "image" else \
        [sample.depth, sample.height, sample.width]
    return SampleSpec(kind=sample.kind, label=sample.label, source_path=sample.source_path, files=[], array=sample.array,
                      original="", modality=sample.modality, patient=sample.patient, study="", series="", shape=shape,
                      dtype=sample.dtype, spacing=sample.spacing, meta=sample.meta, sha256=sample.sha256)


def cache_samples(merged: Dataset, reporter: JobReporter) -> None:
    samples = list(merged.samples.order_by("id"))
    specs = [spec_of(s) for s in samples]
    notes: dict[str, str] = {}
    channels, height, width = build_cache(specs, merged.project.storage_dir, merged.cache_path, reporter, notes)
    for sample, spec in zip(samples, specs):
        sample.cache_index = spec.cache_index
    Sample.objects.bulk_update(samples, ["cache_index"], batch_size=2000)
    sources = list(merged.merged_from.values_list("name", flat=True))
    finish(Dataset, merged.pk, Status.READY, f"{len(samples):,} samples indexed from {', '.join(sources)}; no file was copied.",
           class_counts=dict(sorted(Counter(s.label for s in samples).items())), channels=channels, height=height, width=width,
           sample_count=len(samples), patient_count=len({s.patient for s in samples if s.patient}),
           modalities=", ".join(sorted({s.modality for s in samples if s.modality}))[:200])

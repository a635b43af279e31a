"""Datasets: accepting uploads, partitions, and the queries pages and API share."""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from django.conf import settings
from django.db import transaction

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.core.tasks import INGEST_QUEUE, send_after_commit
from backend.projects.services import projects_for, remove_tree_after_commit, require_owner
from workers.engine.ingest import ArchiveError, IngestLimits, inspect_archive
from workers.engine.splits import SUBSETS, stratified_split

from .models import Dataset, Partition, PartitionMember

MAX_REPORTED_PROBLEMS = 20


def datasets_for(user):
    return Dataset.objects.filter(project__in=projects_for(user))


def partitions_for(user):
    return Partition.objects.filter(dataset__project__in=projects_for(user))


def save_upload(upload, directory: Path) -> Path:
    """Stream an uploaded file to disk in chunks; memory stays flat whatever its size."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", suffix=".part", delete=False)
    with handle:
        for chunk in upload.chunks(1024 * 1024):
            handle.write(chunk)
    return Path(handle.name)


def describe(problems) -> str:
    lines = [f"{p.path}: {p.reason}" for p in problems[:MAX_REPORTED_PROBLEMS]]
    if len(problems) > MAX_REPORTED_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_REPORTED_PROBLEMS} more")
    return "; ".join(lines)


def create_dataset_from_upload(project, name: str, upload, user) -> tuple[Dataset, list[dict]]:
    """Check the archive, keep it, and queue its ingest. Returns the dataset and warnings.

    The archive is refused (ServiceError) when nothing in it could become a sample;
    otherwise the bad entries are returned as warnings and listed in the ingest report.
    """
    require_owner(user, project)
    if upload is None:
        raise ServiceError("Choose a zip file to upload.", field="archive")
    if upload.size and upload.size > settings.UPLOAD_MAX_BYTES:
        raise ServiceError(
            f"The file is {upload.size / 1024**3:.1f} GB; uploads are limited to {settings.UPLOAD_MAX_BYTES / 1024**3:.1f} GB. "
            "Split it into several archives.", field="archive", code="too_large", status_code=413,
        )
    name = (name or "").strip() or Path(upload.name or "dataset").stem
    staging = save_upload(upload, project.storage_dir / "incoming")
    try:
        inspection = inspect_archive(staging, IngestLimits())
    except ArchiveError as exc:
        staging.unlink(missing_ok=True)
        raise ServiceError(str(exc), field="archive")
    if inspection.inspected_all and inspection.images_ok == 0:
        staging.unlink(missing_ok=True)
        raise ServiceError(
            "No file in this archive can be used as an image: " + describe(inspection.problems)
            + ". Fix these files and upload again.",
            field="archive",
        )
    with transaction.atomic():
        dataset = Dataset.objects.create(project=project, name=name, upload_name=upload.name or "", created_by=user)
        dataset.storage_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, dataset.upload_path)
        send_after_commit("workers.tasks.ingest_dataset", dataset.pk, INGEST_QUEUE)
        record(user, project, Action.CREATE, dataset)
    warnings = [{"path": p.path, "reason": p.reason} for p in inspection.problems]
    if len(inspection.labels) == 1:
        only = next(iter(inspection.labels))
        warnings.append({"path": "", "reason": f"Only one class ('{only}') was found; training needs at least two."})
    return dataset, warnings


def request_ingest_stop(actor, dataset: Dataset) -> Dataset:
    require_owner(actor, dataset.project)
    if dataset.status not in (Dataset.Status.QUEUED, Dataset.Status.INGESTING):
        raise ServiceError(f"This dataset is {dataset.get_status_display().lower()}; only an ingest in progress can be stopped.", code="conflict", status_code=409)
    Dataset.objects.filter(pk=dataset.pk).update(stop_requested=True)
    record(actor, dataset.project, Action.CHANGE, dataset, name=f"{dataset.name}: ingest stopped")
    dataset.refresh_from_db()
    return dataset


def check_percentages(train: float, validation: float, test: float) -> None:
    for field, value in (("train_percent", train), ("validation_percent", validation), ("test_percent", test)):
        if value < 0 or value > 100:
            raise ServiceError(f"Each percentage must be between 0 and 100; {field.split('_')[0]} is {value:g}.", field=field)
    total = train + validation + test
    if abs(total - 100) > 1e-6:
        raise ServiceError(
            f"Train, validation and test percentages add up to {total:g}; they must add up to 100.",
            field="test_percent",
        )
    if train <= 0:
        raise ServiceError("The training subset needs a percentage above 0.", field="train_percent")


def create_partition(actor, dataset: Dataset, name: str, train: float, validation: float, test: float, seed: int) -> Partition:
    require_owner(actor, dataset.project)
    if dataset.status != Dataset.Status.READY:
        raise ServiceError("This dataset is not ready yet; wait for its ingest to finish.", field="dataset")
    check_percentages(train, validation, test)
    samples = list(dataset.samples.order_by("cache_index").values_list("pk", "label"))
    if not samples:
        raise ServiceError("This dataset has no samples to partition.", field="dataset")
    percentages = {"train": train, "validation": validation, "test": test}
    assignment = stratified_split([label for _, label in samples], percentages, seed)
    counts: dict[str, Counter] = defaultdict(Counter)
    for (_, label), subset in zip(samples, assignment):
        counts[subset][label] += 1
    with transaction.atomic():
        partition = Partition.objects.create(
            dataset=dataset, name=(name or "").strip() or f"{train:g}/{validation:g}/{test:g} seed {seed}",
            train_percent=train, validation_percent=validation, test_percent=test, seed=seed,
            counts={subset: dict(sorted(counts[subset].items())) for subset in SUBSETS},
        )
        PartitionMember.objects.bulk_create(
            [PartitionMember(partition=partition, sample_id=pk, subset=subset) for (pk, _), subset in zip(samples, assignment)],
            batch_size=5000,
        )
        record(actor, dataset.project, Action.CREATE, partition, name=f"{dataset.name}: {partition.name}")
    return partition


def delete_dataset(actor, dataset: Dataset) -> None:
    require_owner(actor, dataset.project)
    if dataset.status in (Dataset.Status.QUEUED, Dataset.Status.INGESTING):
        raise ServiceError("This dataset is still being ingested; stop the ingest first.", code="conflict", status_code=409)
    used_by = sum(partition.runs.count() for partition in dataset.partitions.all())
    if used_by:
        raise ServiceError(
            f"This dataset was used by {used_by} training run(s); it is kept so their results stay reproducible. "
            "Delete those runs first.", code="conflict", status_code=409,
        )
    folder = dataset.storage_dir  # before delete(), which clears the primary key it is named by
    with transaction.atomic():
        record(actor, dataset.project, Action.DELETE, dataset)
        dataset.delete()
        remove_tree_after_commit(folder)

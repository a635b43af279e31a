"""Datasets: accepting uploads, partitions, and the queries pages and API share."""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from django.conf import settings
from django.db import transaction

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlan, Thing, carry_out
from backend.core.errors import ServiceError
from backend.core.jobs import STOPPED_AT_ONCE, require_stoppable, stop
from backend.core.tasks import INGEST_QUEUE, send_after_commit
from backend.projects.access import projects_for, require_owner
from backend.projects.services import remove_tree_after_commit
from workers.engine.splits import SUBSETS, grouped_split, groups_of, kfold_split, leaking_patients, subsets_from_column

from .models import Dataset, Partition, PartitionMember
from .partitions import duplicate_error, empty_subsets, same_partition, split_facts

MAX_REPORTED_PROBLEMS = 20


def datasets_for(user):
    return Dataset.objects.filter(project__in=projects_for(user))


def partitions_for(user):
    return Partition.objects.filter(dataset__project__in=projects_for(user))


def safe_relative_path(raw: str) -> Path:
    """A path the browser or a script sent for a file, checked to stay inside the upload folder."""
    parts = [p for p in str(raw).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or "\x00" in p or len(p) > 255 for p in parts) or str(raw).startswith("/"):
        raise ServiceError(f"The path '{raw}' is not a relative path inside the upload; send paths like 'NORMAL/image1.png'.",
                           field="paths")
    return Path(*parts)


def save_upload(upload, target: Path) -> None:
    """Move (Django already streamed it to a temporary file) or copy in chunks: memory stays flat."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(upload, "temporary_file_path"):
        shutil.move(upload.temporary_file_path(), target)
        return
    with open(target, "wb") as handle:
        for chunk in upload.chunks(1024 * 1024):
            handle.write(chunk)


def describe(problems) -> str:
    lines = [f"{p.path}: {p.reason}" for p in problems[:MAX_REPORTED_PROBLEMS]]
    if len(problems) > MAX_REPORTED_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_REPORTED_PROBLEMS} more")
    return "; ".join(lines)


def check_upload_size(files) -> None:
    total = sum(f.size or 0 for f in files)
    if total > settings.UPLOAD_MAX_BYTES:
        raise ServiceError(
            f"The upload is {total / 1024**3:.1f} GB; uploads are limited to {settings.UPLOAD_MAX_BYTES / 1024**3:.1f} GB. "
            "Split it into several uploads and merge the datasets.", field="files", code="too_large", status_code=413,
        )


def stage_files(project, files, paths: list[str]) -> Path:
    if paths and len(paths) != len(files):
        raise ServiceError(f"{len(paths)} paths were sent for {len(files)} files; send one path per file, or none.", field="paths")
    relatives = [safe_relative_path(p) for p in paths] if paths else [safe_relative_path(Path(f.name or "file").name) for f in files]
    if len(set(relatives)) != len(relatives):
        twice = next(r for r in relatives if relatives.count(r) > 1)
        raise ServiceError(f"Two files have the same path '{twice}'; each file needs its own path.", field="paths")
    staging = Path(tempfile.mkdtemp(dir=ensure(project.storage_dir / "incoming"), prefix="upload-"))
    try:
        for upload, relative in zip(files, relatives):
            save_upload(upload, staging / relative)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_name(files, paths) -> str:
    first = (paths[0] if paths else files[0].name) or "dataset"
    top = str(first).replace("\\", "/").strip("/").split("/")[0]
    return Path(top).name.removesuffix(".gz").rsplit(".", 1)[0] if "." in top else top


def create_dataset_from_upload(project, name: str, files, user, paths=(), labels_from=Dataset.LabelsFrom.FOLDERS) -> tuple[Dataset, list[dict]]:
    """Check the upload, keep it, and queue its ingest. Returns the dataset and warnings.

    The upload is refused (ServiceError) when nothing in it could become a sample;
    otherwise the bad files are returned as warnings and listed in the ingest report.
    """
    require_owner(user, project)
    if not files:
        raise ServiceError("Choose files, a folder or a zip archive to upload.", field="files")
    # The ingest engine reads DICOM and NIfTI (pydicom, nibabel: ~50 MB resident): only uploads import it.
    from workers.engine.ingest import ArchiveError, IngestLimits, inspect_upload

    check_upload_size(files)
    staging = stage_files(project, files, list(paths))
    try:
        inspection = inspect_upload(staging, labels_from, IngestLimits())
    except ArchiveError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServiceError(str(exc), field="files")
    if inspection.inspected_all and inspection.images_ok == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServiceError(
            "No file in this upload can be used as an image: " + describe(inspection.problems) + ". Fix these files and upload again.",
            field="files",
        )
    with transaction.atomic():
        dataset = Dataset.objects.create(
            project=project, name=(name or "").strip() or default_name(files, paths), labels_from=labels_from,
            upload_name=", ".join(f.name or "" for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else ""),
            created_by=user,
        )
        dataset.storage_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, dataset.upload_dir)
        send_after_commit("workers.tasks.ingest_dataset", dataset.pk, INGEST_QUEUE)
        record(user, project, Action.CREATE, dataset)
    warnings = [{"path": p.path, "reason": p.reason} for p in inspection.problems]
    labels = [label for label in inspection.labels if label]
    if labels_from == Dataset.LabelsFrom.FOLDERS and len(labels) == 1:
        warnings.append({"path": "", "reason": f"Only one class ('{labels[0]}') was found; training needs at least two."})
    return dataset, warnings


def request_ingest_stop(actor, dataset: Dataset) -> Dataset:
    require_owner(actor, dataset.project)
    require_stoppable(dataset, "dataset's job")
    if stop(dataset) == STOPPED_AT_ONCE:
        # No worker will discard what came in: the upload holds the files as they came, identifiers included.
        remove_tree_after_commit(dataset.upload_dir)
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


def partition_samples(actor, dataset: Dataset, meta: bool = True) -> list[tuple[int, str, str, dict | None]]:
    """(id, label, patient, meta) of the dataset's samples, after the checks every partition needs
    (meta=False: None for meta, which only a column partition reads; the preview runs on every change of the form)."""
    require_owner(actor, dataset.project)
    if dataset.status != Dataset.Status.READY:
        raise ServiceError("This dataset is not ready yet; wait for its ingest to finish.", field="dataset")
    rows = dataset.samples.order_by("id")
    samples = list(rows.values_list("pk", "label", "patient", "meta")) if meta else [
        (pk, label, patient, None) for pk, label, patient in rows.values_list("pk", "label", "patient")]
    if not samples:
        raise ServiceError("This dataset has no samples to partition.", field="dataset")
    return samples


def percentage_split(actor, dataset: Dataset, train: float, validation: float, test: float, seed: int):
    """(samples, assignment, asked): the split a percentage partition stores, which its preview shows."""
    check_percentages(train, validation, test)
    samples = partition_samples(actor, dataset, meta=False)
    asked = {"train": train, "validation": validation, "test": test}
    # Patients stay whole: no one is tested on a model that trained on their other images.
    assignment = grouped_split([s[1] for s in samples], asked, seed, [s[2] for s in samples])
    return samples, assignment, asked


def preview_partition(actor, dataset: Dataset, train: float, validation: float, test: float, seed: int) -> dict:
    """What create_partition would store, without storing it: samples and patients per subset, a summary line,
    warnings, the refusals it would answer (an asked-for subset left empty) and the same partition made before."""
    samples, assignment, asked = percentage_split(actor, dataset, train, validation, test, seed)
    facts = split_facts(samples, assignment, asked)
    existing = same_partition(dataset, samples, assignment, {"train_percent": train, "validation_percent": validation,
                                                                 "test_percent": test, "seed": seed})
    return {**facts, "refusals": empty_subsets(facts, asked), "existing": {"id": existing.pk, "name": existing.name} if existing else None}


def create_partition(actor, dataset: Dataset, name: str, train: float, validation: float, test: float, seed: int) -> Partition:
    samples, assignment, asked = percentage_split(actor, dataset, train, validation, test, seed)
    # Whole patients can leave a subset empty (6 patients, 70/15/15: no test patient): refused, with the counts.
    refusals = empty_subsets(split_facts(samples, assignment, asked), asked)
    if refusals:
        raise ServiceError(refusals[0]["message"], field=refusals[0]["field"], code=refusals[0]["code"], errors=refusals)
    return store_partition(actor, dataset, samples, assignment, name=(name or "").strip() or f"{train:g}/{validation:g}/{test:g} seed {seed}",
                           train_percent=train, validation_percent=validation, test_percent=test, seed=seed)


def create_kfold_partitions(actor, dataset: Dataset, name: str, folds: int, seed: int) -> list[Partition]:
    """k partitions of one cross-validation: fold i is the validation subset of the i-th, the rest train."""
    if not 2 <= folds <= 20:
        raise ServiceError("folds must be between 2 and 20.", field="folds")
    samples = partition_samples(actor, dataset, meta=False)
    assignment = kfold_split([s[1] for s in samples], folds, seed, [s[2] for s in samples])
    sizes = Counter(assignment)
    if any(not sizes[fold] for fold in range(folds)):
        patients = [s[2] for s in samples]
        groups = len(groups_of(len(samples), patients))
        unit = "images" if not any(patients) else "patients" if all(patients) else "patients and images without a patient ID"
        raise ServiceError(f"{folds} folds are more than whole patients can fill: the folds would hold "
                           f"{', '.join(str(sizes[fold]) for fold in range(folds))} samples, from {groups} {unit}. Choose fewer folds.",
                           field="folds")
    base = (name or "").strip() or f"{folds}-fold seed {seed}"
    partitions = []
    with transaction.atomic():
        for fold in range(folds):
            subsets = ["validation" if f == fold else "train" for f in assignment]
            share = 100.0 * subsets.count("validation") / len(subsets)
            partitions.append(store_partition(
                actor, dataset, samples, subsets, name=f"{base}, fold {fold + 1} of {folds}", method=Partition.Method.KFOLD,
                folds=folds, fold=fold + 1, seed=seed, train_percent=100.0 - share, validation_percent=share, test_percent=0.0))
    return partitions


def create_column_partition(actor, dataset: Dataset, name: str, column: str) -> Partition:
    """Subsets as a joined table's column says (train / validation / test, or val, training ...)."""
    samples = partition_samples(actor, dataset)
    values = [str((meta or {}).get("table", {}).get(column, "")) for _, _, _, meta in samples]
    if not any(values):
        raise ServiceError(f"No sample has a value in a table column '{column}'. Join a table with that column on the "
                           "dataset page ('Labels from a table') first.", field="column")
    subsets, unknown = subsets_from_column(values)
    if unknown:
        examples = ", ".join(sorted({repr(v) for _, v in unknown})[:5])
        raise ServiceError(f"{len(unknown)} samples have no subset in column '{column}' (values like {examples}); "
                           "write train, validation or test for every sample.", field="column")
    share = {subset: 100.0 * subsets.count(subset) / len(subsets) for subset in SUBSETS}
    return store_partition(actor, dataset, samples, subsets, name=(name or "").strip() or f"from column {column}",
                           method=Partition.Method.COLUMN, column=column, seed=0, train_percent=share["train"],
                           validation_percent=share["validation"], test_percent=share["test"])


def store_partition(actor, dataset: Dataset, samples, assignment: list[str], **fields) -> Partition:
    """Store a split, unless the dataset has the same partition already (a 400 that names it)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for (_, label, _, _), subset in zip(samples, assignment):
        counts[subset][label] += 1
    leaks = leaking_patients(assignment, [s[2] for s in samples])
    facts = split_facts(samples, assignment)
    with transaction.atomic():
        # One partition of a dataset at a time, so two identical requests cannot both miss each other.
        list(Dataset.objects.select_for_update().filter(pk=dataset.pk).values_list("pk", flat=True))
        existing = same_partition(dataset, samples, assignment, fields)
        if existing:
            error = duplicate_error(existing)
            raise ServiceError(error["message"], code=error["code"], errors=[error])
        partition = Partition.objects.create(dataset=dataset, leaking_patients=leaks,
                                             counts={subset: dict(sorted(counts[subset].items())) for subset in SUBSETS},
                                             patients={subset: facts["subsets"][subset]["patients"] for subset in SUBSETS},
                                             samples_without_patient=facts["samples_without_patient"], **fields)
        PartitionMember.objects.bulk_create(
            [PartitionMember(partition=partition, sample_id=pk, subset=subset) for (pk, _, _, _), subset in zip(samples, assignment)],
            batch_size=5000,
        )
        record(actor, dataset.project, Action.CREATE, partition, name=f"{dataset.name}: {partition.name}")
    return partition


def dataset_deletion(dataset: Dataset) -> DeletionPlan:
    """Deleting a dataset takes its samples, files, partitions and tables of measures; the runs trained on it only when
    asked (their results are why it is kept). A merged dataset that indexes its samples forbids it."""
    plan = DeletionPlan(Thing.of("dataset", dataset), row=dataset, folders=[dataset.storage_dir])
    merges = list(dataset.merged_into.values_list("name", flat=True))
    if merges:
        plan.blocked_by.append(f"The merged dataset(s) {', '.join(repr(m) for m in merges)} index this dataset's samples; "
                               "delete them first.")
    for partition in dataset.partitions.all():
        with_it = partition_deletion(partition)  # its rate searches and runs, read once
        plan.also.extend([with_it.target, *with_it.also])
        plan.add_runs(with_it.run_rows)
    plan.also.extend(Thing.of("aggregation", aggregation) for aggregation in dataset.aggregations.all())
    return plan


def delete_dataset(actor, dataset: Dataset, with_runs: bool = False) -> None:
    carry_out(actor, dataset.project, dataset_deletion(dataset), with_runs)


def partition_deletion(partition: Partition) -> DeletionPlan:
    """Deleting a partition takes its learning-rate searches (one still sweeping is stopped first); the runs trained on
    it only when asked."""
    plan = DeletionPlan(Thing.of("partition", partition), row=partition)
    plan.also.extend(Thing.of("rate_search", search) for search in partition.rate_searches.all() if not search.is_finished)
    plan.add_runs(partition.runs.all())
    return plan


def delete_partition(actor, partition: Partition, with_runs: bool = False) -> None:
    carry_out(actor, partition.dataset.project, partition_deletion(partition), with_runs)


def sample_kinds(dataset: Dataset) -> set[str]:
    return set(dataset.samples.values_list("kind", flat=True).distinct())


def check_mergeable(datasets: list[Dataset]) -> None:
    """Merging only makes sense for one task, one kind of sample and one colour depth; say which differ."""
    if len(datasets) < 2:
        raise ServiceError("Choose at least two datasets to merge.", field="datasets")
    if len({d.project_id for d in datasets}) > 1:
        raise ServiceError("The datasets belong to different projects; merge datasets of one project.", field="datasets")
    for dataset in datasets:
        if dataset.status != Dataset.Status.READY:
            raise ServiceError(f"'{dataset.name}' is {dataset.get_status_display().lower()}; only ready datasets can be merged.", field="datasets")
    first = datasets[0]
    for other in datasets[1:]:
        if other.task != first.task:
            raise ServiceError(f"'{first.name}' is for {first.task} and '{other.name}' for {other.task}; "
                               "merged datasets need one task.", field="datasets")
        if sample_kinds(other) != sample_kinds(first):
            raise ServiceError(f"'{first.name}' holds {' and '.join(sorted(sample_kinds(first)))}s and '{other.name}' "
                               f"{' and '.join(sorted(sample_kinds(other)))}s; 2D images and 3D volumes cannot be mixed.", field="datasets")
        if first.channels and other.channels and other.channels != first.channels:
            describe_channels = {1: "grayscale (1 channel)", 3: "colour (3 channels)"}
            raise ServiceError(f"'{first.name}' is {describe_channels.get(first.channels)} and '{other.name}' "
                               f"{describe_channels.get(other.channels)}; convert one of them with a pipeline first.", field="datasets")


def check_label_mapping(datasets: list[Dataset], mapping: dict) -> dict[str, str]:
    known = set().union(*(d.class_counts for d in datasets))
    cleaned = {}
    for source, target in (mapping or {}).items():
        if source not in known:
            raise ServiceError(f"No dataset being merged has the label '{source}'; the labels are: {', '.join(sorted(known)) or 'none'}.",
                               field="label_mapping")
        target = str(target).strip()
        if not target or len(target) > 100:
            raise ServiceError(f"The new name for '{source}' must be 1 to 100 characters.", field="label_mapping")
        cleaned[source] = target
    return cleaned


def merged_label_names(datasets: list[Dataset]) -> dict[str, str]:
    """The names of the merged masks' label values: each dataset's, which must agree where two name one value (a mask's
    1 that is the liver in one and the spleen in another would teach a model both as one structure)."""
    names: dict[str, tuple[str, str]] = {}
    for dataset in datasets:
        for value, name in dataset.label_names.items():
            if value in names and names[value][0] != name:
                other_name, other = names[value]
                raise ServiceError(f"Label {value} is '{other_name}' in '{other}' and '{name}' in '{dataset.name}': their masks "
                                   "mean different things by it. Merge datasets whose label values mean the same structures "
                                   "(rename the labels on the datasets' pages if only the names differ).", field="datasets")
            names.setdefault(value, (name, dataset.name))
    return {value: name for value, (name, _) in sorted(names.items(), key=lambda item: int(item[0]))}


def merge_datasets(actor, name: str, datasets: list[Dataset], label_mapping: dict) -> Dataset:
    """A new dataset that indexes the samples of others (no file is copied); a job builds its cache."""
    check_mergeable(datasets)
    project = datasets[0].project
    require_owner(actor, project)
    mapping = check_label_mapping(datasets, label_mapping)
    names = merged_label_names(datasets)
    with transaction.atomic():
        merged = Dataset.objects.create(
            project=project, name=(name or "").strip() or " + ".join(d.name for d in datasets)[:200],
            task=datasets[0].task, label_mapping=mapping, label_names=names, created_by=actor,
            upload_name="merge of " + ", ".join(d.name for d in datasets)[:240],
        )
        merged.merged_from.set(datasets)
        send_after_commit("workers.tasks.merge_datasets", merged.pk, INGEST_QUEUE)
        record(actor, project, Action.CREATE, merged)
    return merged

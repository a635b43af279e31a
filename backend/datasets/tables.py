"""Tables (CSV, XLSX) that accompany images: join them to samples, preview, then write labels.

Identifier columns are pseudonymised with the project's own mapping before
anything else happens, so a table of real patient IDs joins images whose IDs
were replaced on the way in, and no real ID is ever stored.
"""
from __future__ import annotations

import io
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.projects.access import require_owner

from .models import Dataset, Sample

if TYPE_CHECKING:
    import pandas as pd

MAX_TABLE_BYTES = 200 * 1024**2
EXAMPLES = 10
# How a table row can point at samples: the column's values are compared with these.
IMAGE_KEYS = {
    "file_name": "file name (with or without extension)",
    "path": "path in the upload",
    "patient": "patient ID",
    "study_uid": "Study Instance UID",
    "series_uid": "Series Instance UID",
}
IDENTIFIER_KIND = {"patient": "patient", "study_uid": "uid", "series_uid": "uid"}


@dataclass
class TableJoin:
    column: str
    image_key: str
    label_column: str
    identifier_columns: list[str]


def read_table(upload) -> pd.DataFrame:
    import pandas as pd  # ~60 MB resident: only the workers that read a table pay for it

    name = (upload.name or "").lower()
    if upload.size and upload.size > MAX_TABLE_BYTES:
        raise ServiceError(f"The table is larger than {MAX_TABLE_BYTES // 1024**2} MB; split it.", field="table")
    data = upload.read()
    try:
        if name.endswith((".xlsx", ".xlsm")):
            frame = pd.read_excel(io.BytesIO(data), dtype=str, engine="openpyxl")
        elif name.endswith((".csv", ".tsv", ".txt")):
            frame = pd.read_csv(io.BytesIO(data), dtype=str, sep=None, engine="python", encoding_errors="replace")
        else:
            raise ServiceError("The table must be a .csv or .xlsx file.", field="table")
    except ServiceError:
        raise
    except Exception as exc:  # pandas and openpyxl raise many kinds for damaged files
        raise ServiceError(f"The table cannot be read ({type(exc).__name__}: {str(exc)[:200]}). Save it again as CSV or XLSX.", field="table")
    if frame.empty:
        raise ServiceError("The table has no rows.", field="table")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.fillna("")


def check_join(frame: pd.DataFrame, join: TableJoin) -> None:
    columns = list(frame.columns)
    for field, column in (("column", join.column), ("label_column", join.label_column)):
        if column and column not in columns:
            raise ServiceError(f"The table has no column '{column}'; its columns are: {', '.join(columns)}.", field=field)
    if join.image_key not in IMAGE_KEYS:
        raise ServiceError(f"image_key must be one of {', '.join(IMAGE_KEYS)}.", field="image_key")
    for column in join.identifier_columns:
        if column not in columns:
            raise ServiceError(f"The table has no column '{column}' to pseudonymise.", field="identifier_columns")


def pseudonymised(frame: pd.DataFrame, join: TableJoin, dataset: Dataset) -> pd.DataFrame:
    """Identifier columns (and an ID or UID join column) through the project's mapping."""
    deidentifier = dataset.project.deidentifier()
    if deidentifier is None:
        return frame
    frame = frame.copy()
    kinds = {column: "identifier" for column in join.identifier_columns}
    if join.image_key in IDENTIFIER_KIND:
        kinds[join.column] = IDENTIFIER_KIND[join.image_key]
    for column, kind in kinds.items():
        frame[column] = [deidentifier.pseudonym_for_value(kind, v) if v.strip() else "" for v in frame[column]]
    return frame


def sample_keys(sample: dict, image_key: str) -> list[str]:
    if image_key == "file_name":
        names = [os.path.basename(path) for path in sample["files"] or [sample["source_path"]]]
        return sorted({n for name in names for n in (name, name.split(".")[0])} | {os.path.basename(sample["source_path"])})
    if image_key == "path":
        return [sample["source_path"], *sample["files"]]
    return [sample[{"patient": "patient", "study_uid": "study_uid", "series_uid": "series_uid"}[image_key]]]


def match(dataset: Dataset, frame: pd.DataFrame, join: TableJoin):
    """(sample id -> row numbers, unmatched sample paths, unmatched row numbers)."""
    rows_by_key: dict[str, list[int]] = defaultdict(list)
    for number, value in enumerate(frame[join.column]):
        if value.strip():
            rows_by_key[value.strip()].append(number)
    matched: dict[int, list[int]] = {}
    unmatched_samples: list[str] = []
    used_rows: set[int] = set()
    samples = dataset.samples.values("id", "source_path", "files", "patient", "study_uid", "series_uid")
    for sample in samples.iterator(chunk_size=5000):
        rows = sorted({r for key in sample_keys(sample, join.image_key) for r in rows_by_key.get(key, [])})
        if rows:
            matched[sample["id"]] = rows
            used_rows.update(rows)
        else:
            unmatched_samples.append(sample["source_path"])
    unmatched_rows = [n for n in range(len(frame)) if n not in used_rows]
    return matched, unmatched_samples, unmatched_rows


def labels_for(frame: pd.DataFrame, matched: dict[int, list[int]], label_column: str) -> tuple[dict[int, str], int]:
    """One label per sample; samples whose rows disagree are counted as conflicts and left alone."""
    labels, conflicts = {}, 0
    for sample_id, rows in matched.items():
        values = {frame[label_column].iloc[r].strip() for r in rows} - {""}
        if len(values) == 1:
            labels[sample_id] = values.pop()[:100]
        elif len(values) > 1:
            conflicts += 1
    return labels, conflicts


def preview(actor, dataset: Dataset, upload, join: TableJoin) -> dict:
    """What applying the table would do; nothing is written."""
    require_owner(actor, dataset.project)
    frame = read_table(upload)
    check_join(frame, join)
    frame = pseudonymised(frame, join, dataset)
    if not join.column:  # the first look: which columns are there
        return {"columns": list(frame.columns), "rows": len(frame), "samples": dataset.samples.count(), "matched_samples": 0,
                "unmatched_samples": 0, "unmatched_sample_examples": [], "unmatched_rows": 0, "unmatched_row_examples": [],
                "label_counts": {}, "conflicts": 0, "head": []}
    matched, unmatched_samples, unmatched_rows = match(dataset, frame, join)
    labels, conflicts = labels_for(frame, matched, join.label_column) if join.label_column else ({}, 0)
    return {
        "columns": list(frame.columns), "rows": len(frame), "samples": dataset.samples.count(),
        "matched_samples": len(matched), "unmatched_samples": len(unmatched_samples),
        "unmatched_sample_examples": unmatched_samples[:EXAMPLES], "unmatched_rows": len(unmatched_rows),
        "unmatched_row_examples": [str(frame[join.column].iloc[n]) for n in unmatched_rows[:EXAMPLES]],
        "label_counts": dict(sorted(Counter(labels.values()).items())), "conflicts": conflicts,
        "head": frame.head(5).to_dict(orient="records"),
    }


def apply(actor, dataset: Dataset, upload, join: TableJoin) -> dict:
    """Write the table's labels (and its row, de-identified, into each matched sample's facts)."""
    require_owner(actor, dataset.project)
    if not join.column:
        raise ServiceError("Choose the column that points at the samples.", field="column")
    if not join.label_column:
        raise ServiceError("Choose the column that gives the label.", field="label_column")
    if dataset.status != Dataset.Status.READY:
        raise ServiceError("This dataset is not ready yet; wait for its ingest to finish.", field="dataset")
    if dataset.partitions.exists():
        raise ServiceError("This dataset already has partitions, which new labels would make wrong; "
                           "delete them (or merge into a new dataset) first.", code="conflict", status_code=409)
    if dataset.merged_into.exists():
        raise ServiceError("Merged datasets index this dataset's samples; give the labels to the merged dataset instead.",
                           code="conflict", status_code=409)
    frame = read_table(upload)
    check_join(frame, join)
    frame = pseudonymised(frame, join, dataset)
    matched, _, _ = match(dataset, frame, join)
    labels, _ = labels_for(frame, matched, join.label_column)
    result = preview_counts(labels, matched)
    with transaction.atomic():
        samples = list(dataset.samples.filter(pk__in=list(matched)))
        for sample in samples:
            sample.label = labels.get(sample.pk, sample.label)
            sample.meta = {**sample.meta, "table": frame.iloc[matched[sample.pk][0]].to_dict()}
        Sample.objects.bulk_update(samples, ["label", "meta"], batch_size=2000)
        counts = Counter(dataset.samples.values_list("label", flat=True))
        Dataset.objects.filter(pk=dataset.pk).update(class_counts=dict(sorted(counts.items())))
        dataset.storage_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(dataset.storage_dir / "table.csv", index=False)
        record(actor, dataset.project, Action.CHANGE, dataset, name=f"{dataset.name}: labels from a table")
    dataset.refresh_from_db()
    return result


def preview_counts(labels: dict[int, str], matched: dict[int, list[int]]) -> dict:
    return {"matched_samples": len(matched), "labelled_samples": len(labels), "label_counts": dict(sorted(Counter(labels.values()).items()))}

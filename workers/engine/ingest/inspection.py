"""A quick look at an upload before accepting it: is anything in it usable at all?"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..label_names import LabelFileProblem, may_name_labels, read_label_file
from .decoded import NotAnImage, Quarantined
from .job import IngestOptions, decode, label_and_role
from .sources import (
    DOCUMENT_REASON,
    REJECTED,
    TABLE_REASON,
    IngestLimits,
    entry_problem,
    upload_entries,
    wrapping_roots,
)


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class UploadInspection:
    entries: int = 0
    images_ok: int = 0
    inspected_all: bool = True
    labels: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)


def inspect_upload(upload_dir: Path, labels_from: str, limits: IngestLimits = IngestLimits(), time_budget_s: float = 3.0) -> UploadInspection:
    """Check structure and decode as many files as the time budget allows (nothing is written).

    Raises ArchiveError when the upload as a whole is unusable.
    """
    inspection = UploadInspection()
    options = IngestOptions(deidentifier=None, labels_from=labels_from, limits=limits)
    deadline = time.monotonic() + time_budget_s
    with upload_entries(upload_dir, limits) as entries:
        roots = wrapping_roots(entries)
        inspection.entries = len(entries)
        for entry in entries:
            status, reason = entry_problem(entry, limits)
            if reason in (TABLE_REASON, DOCUMENT_REASON) and may_name_labels(entry.label_path, entry.size):
                label_file_problem(entry, inspection)
                continue
            if status:
                if status == REJECTED:
                    inspection.problems.append(Problem(entry.path, reason))
                continue
            label, role = label_and_role(entry, roots, options)
            if role == "image":
                inspection.labels[label] += 1
            if time.monotonic() > deadline:
                inspection.inspected_all = False
                continue
            try:
                decode(entry, entry.read(), options)
                inspection.images_ok += 1
            except (NotAnImage, Quarantined) as exc:
                inspection.problems.append(Problem(entry.path, str(exc)))
            except Exception as exc:  # damaged zip members raise many kinds; each is a per-file reason
                inspection.problems.append(Problem(entry.path, str(exc) if isinstance(exc, ValueError) else f"cannot be read ({exc})"))
    return inspection


def label_file_problem(entry, inspection: UploadInspection) -> None:
    """A file that names the masks' labels but cannot be used is said at upload, not only in the ingest report."""
    try:
        read_label_file(entry.label_path, entry.read())
    except LabelFileProblem as exc:
        inspection.problems.append(Problem(entry.path, f"names the labels of the masks, but {exc}; not used"))
    except Exception:  # unreadable from its zip: the ingest says why, file by file
        return

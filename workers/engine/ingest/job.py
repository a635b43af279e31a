"""The ingest job: every file of an upload gets an outcome; the good ones become samples.

Pass 1 reads each file once: checks, decodes, de-identifies, and writes the
de-identified original and its pixels (each written under a temporary name and
renamed, so a crash never leaves half a file under a real name). Outcomes go to
a Journal in batches; a resumed job skips what the journal already holds, so a
killed worker's ingest finishes with no file missing and none twice.

Pass 2 assembles samples: DICOM slices of one series become a volume ordered by
position along the slice normal (never by file name), masks are paired with
their images, and 2D images go into the training cache.

Every step that touches one file runs under the per-file guard (guard.py): what
it raises becomes that file's outcome, and only faults of the job itself end it.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import posixpath
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ..display import to_uint8
from ..label_names import LabelFileProblem, in_words, may_name_labels, read_label_file
from ..observer import JobObserver, JobStopped
from .decoded import IMAGE, SLICE, VOLUME, Decoded, DirectoryIndex, FileOutcome, Rejected
from .deid import Deidentifier
from .dicom import looks_like_dicom, read_dicom, slice_location
from .guard import guarded, printable, raise_job_fault
from .gzipped import GZIP_MAGIC, gunzip, is_gzipped_file
from .masks import geometry_problem, make_labels, voxel_to_world
from .nifti import looks_like_nifti, read_nifti
from .pairing import (
    IMAGE_ROLE,
    MASK_ROLE,
    channel_groups,
    folder_keys,
    image_keys,
    in_a_root,
    mask_keys,
    pair,
    role_of,
)
from .pool import chunked, ingest_pool, map_in_order, opened_entries
from .raster import read_raster
from .sources import (
    ACCEPTED,
    DOCUMENT_REASON,
    REJECTED,
    SKIPPED,
    TABLE_REASON,
    ArchiveError,
    Entry,
    IngestLimits,
    bids_subject,
    entry_problem,
    folders_of,
    upload_entries,
    wrapping_roots,
)

CACHE_FILE = "cache/images.npy"
LABELS_FROM_FOLDERS = "folders"
LABELS_NONE = "none"
JOURNAL_EVERY_FILES = 200
JOURNAL_EVERY_SECONDS = 2.0
READ_CHUNK = 16  # files per task handed to a pool process
CACHE_CHUNK = 64  # cache rows per task
CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
NAMES_ROLE = "label names"  # a file that names the masks' label values (label_names.py), beside images and masks


@dataclass
class IngestOptions:
    deidentifier: Deidentifier | None
    labels_from: str = LABELS_FROM_FOLDERS
    limits: IngestLimits = field(default_factory=IngestLimits)
    processes: int = 0  # processes sharing the per-file work; 0: one per CPU core, 1: this process only


@dataclass
class FileRecord:
    index: int
    path: str
    status: str
    reason: str = ""
    detail: dict = field(default_factory=dict)


class Journal(Protocol):
    def recorded(self) -> dict[int, FileRecord]: ...

    def record(self, records: list[FileRecord]) -> None:
        """Keeps each file's outcome; recording a file again replaces its outcome (assembling
        samples withdraws files that pass 1 accepted)."""


@dataclass
class SampleSpec:
    kind: str
    label: str
    source_path: str
    files: list[str]
    array: str
    original: str
    modality: str
    patient: str
    study: str
    series: str
    shape: list[int]
    dtype: str
    spacing: list[float]
    meta: dict
    sha256: str
    mask: str = ""
    cache_index: int | None = None
    source: str = ""  # the archive of the upload it came from ('' for loose files)
    pairing_keys: list[str] = field(default_factory=list)  # the names a mask may give it (pairing.py)


@dataclass
class IngestSummary:
    samples: list[SampleSpec]
    notes: dict[str, str]  # report path -> an outcome changed or explained by assembly
    task: str = CLASSIFICATION
    label_names: dict[str, str] = field(default_factory=dict)  # {value as text: name}, from the upload's label files
    channels: int = 0
    height: int = 0
    width: int = 0

    @property
    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples).items()))


class MemoryJournal:
    """A journal that keeps records in memory: tests, benchmarks, and jobs with no database."""

    def __init__(self):
        self.records: dict[int, FileRecord] = {}

    def recorded(self) -> dict[int, FileRecord]:
        return dict(self.records)

    def record(self, records: list[FileRecord]) -> None:
        self.records.update({r.index: r for r in records})


# ---------------------------------------------------------------- pass 1: files


def decode(entry: Entry, data: bytes, options: IngestOptions, as_mask: bool = False) -> Decoded:
    name = entry.path
    if is_gzipped_file(name):
        name = name[:-3]  # read as what it holds
        if data[:2] == GZIP_MAGIC:
            data = gunzip(data, options.limits)
    head = data[:352]
    if looks_like_nifti(name, head):
        return read_nifti(data, name)
    if looks_like_dicom(name, head):
        return read_dicom(data, options.deidentifier)
    return read_raster(data, keep_original=options.deidentifier is None, labels=as_mask)


def place_of(entry: Entry, roots: dict[str, str]) -> str:
    """Where a file lies in the upload, as pairing reads it: its path inside its archive, less a folder
    that wraps everything."""
    return "/".join([*folders_of(entry, roots), entry.label_path.split("/")[-1]])


def label_and_role(entry: Entry, roots: dict[str, str], options: IngestOptions) -> tuple[str, str]:
    """(class label, 'image' or 'mask'). The first folder is the label, unless the file lies in an
    images/ or masks/ folder (those say what a file is, not its class) or in a BIDS subject's folder."""
    place = place_of(entry, roots)
    role = role_of(place)
    folders = place.split("/")[:-1]
    if (role == MASK_ROLE or options.labels_from != LABELS_FROM_FOLDERS or not folders or in_a_root(place)
            or bids_subject(folders[0] + "/")):
        return "", role
    return safe_label(folders[0]), role


def safe_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._- " else "_" for c in label).strip()[:100]


def save_array(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(temporary, path)


def process_entry(entry: Entry, index: int, roots: dict[str, str], dest: Path, options: IngestOptions) -> FileRecord:
    """Check, decode and store one file, under the per-file guard (guard.py): whatever goes wrong
    with this file becomes its outcome, and what it had written is removed; only a fault of the
    job itself (JobFault, JobStopped) gets out."""
    status, reason = entry_problem(entry, options.limits)
    if reason in (TABLE_REASON, DOCUMENT_REASON) and may_name_labels(entry.label_path, entry.size):
        return take_label_file(entry, index, roots, reason)
    if status:
        return FileRecord(index, entry.path, status, reason)
    written: list[Path] = []
    try:
        with guarded("the file could not be ingested"):
            return take_entry(entry, index, roots, dest, options, written)
    except FileOutcome as exc:
        remove(written)
        return FileRecord(index, entry.path, exc.status, printable(str(exc)), outcome_detail(exc, entry))


def take_entry(entry: Entry, index: int, roots: dict[str, str], dest: Path, options: IngestOptions,
               written: list[Path]) -> FileRecord:
    """Files are written under their final names, with no temporary name and rename: they are only
    referenced once the journal holds the record, and a resumed job overwrites whatever a killed
    one left of files it never journalled."""
    with guarded("cannot be read from the upload"):  # zipfile raises many kinds for damaged members
        data = entry.read()
    label, role = label_and_role(entry, roots, options)
    decoded = decode(entry, data, options, as_mask=role == MASK_ROLE)
    patient = decoded.patient or patient_from_folders(entry, options)
    array_path = f"arrays/{index:07d}.npy"
    with guarded("the pixels could not be written"):
        written.append(dest / array_path)
        with open(dest / array_path, "wb") as handle:
            np.lib.format.write_array(handle, decoded.pixels, allow_pickle=False)
    original = ""
    if decoded.original is not None:
        original = f"originals/{index:07d}{decoded.original_suffix}"
        with guarded("the kept copy of the file (its de-identified header) could not be written"):
            written.append(dest / original)
            (dest / original).write_bytes(decoded.original)
    detail = {
        "kind": decoded.kind, "role": role, "label": label, "place": place_of(entry, roots), "source": entry.source,
        "array": array_path, "original": original, "format": decoded.format, "modality": printable(decoded.modality),
        "patient": printable(patient), "study": printable(decoded.study), "series": printable(decoded.series),
        "shape": list(decoded.pixels.shape), "dtype": str(decoded.pixels.dtype), "meta": decoded.meta,
        "sha256": hashlib.sha256(data).hexdigest(), "folder": "/".join(entry.path.split("/")[:-1]),
    }
    with guarded("what was read of the file cannot be stored in the database"):
        json.dumps(detail, allow_nan=False)  # report and samples are JSON there: a NaN would end the whole job
    return FileRecord(index, entry.path, ACCEPTED, "; ".join(decoded.notes), detail)


def take_label_file(entry: Entry, index: int, roots: dict[str, str], skipped_because: str) -> FileRecord:
    """A file that may name the masks' labels: accepted with its names when it does, rejected with what is wrong
    when it tries and fails, skipped as before when it is something else (a README, a table of one row per image)."""
    try:
        with guarded("cannot be read from the upload"):
            data = entry.read()
        with guarded("the label names could not be read"):
            try:
                names = read_label_file(entry.label_path, data)
            except LabelFileProblem as exc:
                raise Rejected(f"names the labels of the masks, but {exc}; not used") from None
    except FileOutcome as exc:
        return FileRecord(index, entry.path, exc.status, printable(str(exc)))
    if names is None:
        return FileRecord(index, entry.path, SKIPPED, skipped_because)
    detail = {"role": NAMES_ROLE, "label_names": {str(value): name for value, name in names.items()},
              "place": place_of(entry, roots), "source": entry.source, "array": "", "original": "",
              "sha256": hashlib.sha256(data).hexdigest()}
    return FileRecord(index, entry.path, ACCEPTED, f"names the labels of the masks: {in_words(names)}", detail)


def outcome_detail(outcome: FileOutcome, entry: Entry) -> dict:
    """A DICOMDIR's record keeps the upload paths of the files it lists, in its order (pass 2 orders by it)."""
    if not isinstance(outcome, DirectoryIndex):
        return {}
    folder = posixpath.dirname(entry.path)
    return {"lists": [posixpath.join(folder, path) if path else "" for path in outcome.listed]}


def patient_from_folders(entry: Entry, options: IngestOptions) -> str:
    """A BIDS subject folder names the patient of files that carry none (pseudonymised like a
    DICOM PatientID, so a table of subject ids still joins)."""
    subject = bids_subject(entry.label_path)
    if subject and options.deidentifier:
        return options.deidentifier.pseudonym_for_value("patient", subject)
    return subject


def withdraw(record: FileRecord, reason: str, dest: Path) -> FileRecord:
    """An accepted file turned away after all (a duplicate, or a later step failed on it): the
    files written for it go, and its record says why."""
    remove([dest / written for written in (record.detail["array"], record.detail["original"]) if written])
    return FileRecord(record.index, record.path, REJECTED, reason)


def remove(paths: list[Path]) -> None:
    """Best effort: what cannot be removed (the name is taken by a folder) must not turn a file's
    outcome into the job's end; a resumed job writes over it, a deleted dataset takes it along."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def read_files(entries: list[Entry], dest: Path, options: IngestOptions, observer: JobObserver,
               journal: Journal, pool=None) -> list[FileRecord]:
    done = journal.recorded()
    seen = {r.detail["sha256"]: r.path for r in done.values() if r.status == ACCEPTED and r.detail["role"] == IMAGE_ROLE}
    total_bytes = sum(entries[i].size for i, r in done.items() if r.status == ACCEPTED and i < len(entries))
    for folder in ("arrays", "originals"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
    roots = wrapping_roots(entries)
    chunks = chunked([i for i in range(len(entries)) if i not in done], READ_CHUNK)
    if pool is None:
        results = ([process_entry(entries[i], i, roots, dest, options) for i in chunk] for chunk in chunks)
    else:
        results = map_in_order(pool, read_chunk, chunks, roots, dest, options, crashed=read_crash_outcome(entries))
    pending: list[FileRecord] = []
    last_flush = time.monotonic()
    total_units = len(entries) * 2
    for record in itertools.chain.from_iterable(results):
        if observer.should_stop():
            raise JobStopped("ingest stopped by the user")
        if record.status == ACCEPTED:
            digest = record.detail["sha256"]
            # Two images with one content are one sample; two equal masks (empty ones, often) belong to two images.
            is_image = record.detail["role"] == IMAGE_ROLE
            if is_image and digest in seen:
                record = withdraw(record, f"duplicate of {seen[digest]} (same content)", dest)
            else:
                if is_image:
                    seen[digest] = record.path
                total_bytes += entries[record.index].size
                if total_bytes > options.limits.max_total_bytes:
                    record = withdraw(record, "the upload exceeds the total size limit; split it", dest)
        pending.append(record)
        if len(pending) >= JOURNAL_EVERY_FILES or time.monotonic() - last_flush > JOURNAL_EVERY_SECONDS:
            journal.record(pending)
            done.update({r.index: r for r in pending})
            pending, last_flush = [], time.monotonic()
            observer.progress(len(done), total_units, f"read {len(done):,} of {len(entries):,} files")
    journal.record(pending)
    done.update({r.index: r for r in pending})
    observer.progress(len(entries), total_units, f"read {len(entries):,} files")
    return [done[i] for i in sorted(done)]


def read_crash_outcome(entries: list[Entry]):
    def outcome(index: int, how: str) -> FileRecord:
        return FileRecord(index, entries[index].path, REJECTED, f"the image decoder crashed on this file ({how})")
    return outcome


def read_chunk(indices: list[int], roots: dict[str, str], dest: Path, options: IngestOptions) -> list[FileRecord]:
    """In a pool process: the entries are the ones that process opened."""
    entries = opened_entries()
    return [process_entry(entries[i], i, roots, dest, options) for i in indices]


# ------------------------------------------------------------ pass 2: samples


def place(record: FileRecord) -> str:
    return record.detail.get("place", record.path)


def spacing_of(meta: dict) -> list[float]:
    return meta.get("voxel_spacing") or meta.get("pixel_spacing") or []


def spec_from(record: FileRecord, kind: str | None = None) -> SampleSpec:
    d = record.detail
    meta = dict(d["meta"])
    return SampleSpec(
        kind=kind or (VOLUME if d["kind"] == VOLUME else IMAGE), label=d["label"], source_path=record.path,
        files=[record.path], array=d["array"], original=d["original"], modality=d["modality"] or d["format"],
        patient=d["patient"], study=d["study"], series=d["series"], shape=d["shape"], dtype=d["dtype"],
        spacing=spacing_of(meta), meta=meta, sha256=d["sha256"], source=d.get("source", ""),
        pairing_keys=image_keys(place(record)),
    )


def dicomdir_order(records: list[FileRecord], notes: dict[str, str]) -> dict[str, int]:
    """Where each file of the upload stands in the DICOMDIRs that list it, by upload path in lower
    case (DICOM media name their files in capitals; copies often are not). What a DICOMDIR lists
    and the upload lacks goes to the DICOMDIR's note."""
    present = {r.path.lower() for r in records}
    order: dict[str, int] = {}
    for record in records:
        listed = record.detail.get("lists") if record.status == SKIPPED else None
        if not listed:
            continue
        for path in listed:
            if path and path.lower() in present:
                order.setdefault(path.lower(), len(order))
        missing = [path or "(unreadable record)" for path in listed if not path or path.lower() not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            notes[record.path] = f"{len(missing):,} of the {len(listed):,} files it lists are not in the upload ({shown})"
    return order


def assemble_series(slices: list[FileRecord], dest: Path, notes: dict[str, str], listed: dict[str, int],
                    revised: list[FileRecord]) -> list[SampleSpec]:
    """Single-frame DICOM files of one series and one geometry become one volume. A series that
    cannot be stacked is rejected, all its files with it: its slices as loose 2D images would be
    samples of another kind than the rest of the series' kin, and a half volume is no better."""
    groups: dict[tuple, list[FileRecord]] = defaultdict(list)
    for record in slices:
        d = record.detail
        orientation = tuple(round(v, 3) for v in d["meta"].get("orientation", []))
        groups[(d["series"] or record.path, tuple(d["shape"]), orientation)].append(record)
    specs = []
    for members in groups.values():
        if len(members) == 1:
            specs.append(spec_from(members[0], IMAGE))
            continue
        try:
            with guarded("the series could not be stacked into a volume"):
                stacks, how, copies = one_slice_per_place(members, dest)
                for stack in stacks:
                    specs.append(stack_series(stack, dest, notes, listed, how))
                    if how or copies:
                        said = [f"the series was split into {len(stacks)} volumes by {how}" if how else "",
                                f"{len(copies)} copies of slices (the same pixels at the same place) were dropped" if copies else ""]
                        notes[stack[0].path] += "; " + "; ".join(filter(None, said))
        except Rejected as exc:
            revised.extend(withdraw(m, str(exc), dest) for m in members)
            continue
        for copy in copies:
            revised.append(withdraw(copy, "a copy of another slice of its series (the same pixels at the same place); "
                                          "the volume keeps one", dest))
    return specs


SAME_PLACE_KEYS = (("echo", "EchoNumbers"), ("temporal_position", "TemporalPositionIndex"), ("acquisition", "AcquisitionNumber"))


def one_slice_per_place(members: list[FileRecord], dest: Path) -> tuple[list[list[FileRecord]], str, list[FileRecord]]:
    """A series whose slices share positions is not one volume (its spacing would be zero): copies (the same pixels
    at the same place, whatever their headers say: a PACS may send one instance twice under new UIDs) are
    dropped, and slices told apart by an echo, a temporal position or an acquisition number become one volume each.
    Returns (stacks, what split them or "", dropped copies); Rejected when nothing tells the slices at one place apart."""
    located = {m.path: slice_location(m.detail["meta"]) for m in members}
    if None in located.values():
        return [members], "", []
    place = {path: round(location, 3) for path, location in located.items()}

    def apart(stack: list[FileRecord]) -> bool:
        return len({place[m.path] for m in stack}) == len(stack)

    if apart(members):
        return [members], "", []
    seen, kept, copies = set(), [], []
    for member in members:
        key = (place[member.path], hashlib.sha256(np.load(dest / member.detail["array"]).tobytes()).hexdigest())
        (copies if key in seen else kept).append(member)
        seen.add(key)
    if apart(kept):
        return [kept], "", copies
    for key, tag in SAME_PLACE_KEYS:
        values = [m.detail["meta"].get(key) for m in kept]
        if None in values or len(set(values)) < 2:
            continue
        stacks = {value: [m for m, v in zip(kept, values) if v == value] for value in sorted(set(values))}
        if all(apart(stack) for stack in stacks.values()):
            return list(stacks.values()), tag, copies
    shared = len(kept) - len({place[m.path] for m in kept})
    raise Rejected(f"{shared} slices of this series share a position with another, and neither EchoNumbers, "
                   "TemporalPositionIndex nor AcquisitionNumber tells them apart, so they cannot be stacked into one volume "
                   "(its slice spacing would be zero); upload each acquisition as its own series")


def stack_series(members: list[FileRecord], dest: Path, notes: dict[str, str], listed: dict[str, int], split_by: str = "") -> SampleSpec:
    locations = [slice_location(m.detail["meta"]) for m in members]
    if all(loc is not None for loc in locations):
        order = sorted(range(len(members)), key=lambda i: locations[i])
        how = "position along the slice normal"
    else:
        # Without positions: InstanceNumber, then the DICOMDIR's order, then the upload's (file names).
        def rank(i: int) -> tuple:
            return members[i].detail["meta"].get("instance", 0), listed.get(members[i].path.lower(), math.inf), i
        order = sorted(range(len(members)), key=rank)
        how = ("InstanceNumber" if any("instance" in m.detail["meta"] for m in members)
               else "the DICOMDIR's order" if any(m.path.lower() in listed for m in members) else "file name")
        locations = [None] * len(members)
    ordered = [members[i] for i in order]
    first = ordered[0]
    array_path = f"arrays/series-{first.index:07d}.npy"
    volume_shape = stack_slices([dest / m.detail["array"] for m in ordered], dest / array_path)
    labels = Counter(m.detail["label"] for m in ordered)
    label = labels.most_common(1)[0][0]
    spec = spec_from(first, VOLUME)
    spec.array, spec.label, spec.shape = array_path, label, list(volume_shape)
    spec.files = [m.path for m in ordered]
    spec.source_path = first.detail["folder"] or first.path
    if split_by:  # one of several volumes of the series: named by what sets it apart
        key = next(key for key, tag in SAME_PLACE_KEYS if tag == split_by)
        spec.source_path += f" ({split_by} {first.detail['meta'][key]:g})"
    spec.pairing_keys = folder_keys(place(first).rpartition("/")[0])
    spec.sha256 = hashlib.sha256("".join(m.detail["sha256"] for m in ordered).encode()).hexdigest()
    ordered_locations = sorted(loc for loc in locations if loc is not None)
    gaps = np.diff(ordered_locations) if len(ordered_locations) > 1 else []
    slice_spacing = float(np.median(gaps)) if len(gaps) else spec.meta.get("slice_thickness", 1.0)
    if not math.isfinite(slice_spacing):  # positions so far out that their differences overflow
        slice_spacing = spec.meta.get("slice_thickness", 1.0)
    pixel = spec.meta.get("pixel_spacing", [1.0, 1.0])
    spec.spacing = [round(slice_spacing, 6), *pixel]
    spec.meta["ordered_by"] = how
    spec.meta["instances"] = [m.detail["meta"].get("instance") for m in ordered]
    for m in ordered:
        notes[m.path] = f"slice {ordered.index(m) + 1} of {len(ordered)} in a series volume (ordered by {how})"
    if len(gaps) and np.any(np.isclose(gaps, 0)):
        notes[first.path] = notes[first.path] + "; two slices share a position"
    if len(labels) > 1:
        notes[first.path] = notes[first.path] + f"; slices had labels {dict(labels)}, the volume took '{label}'"
    return spec


def stack_slices(slices: list[Path], path: Path) -> tuple[int, ...]:
    """Writes the slices, in order, as one volume, a slice at a time: a series of a thousand
    CT slices never sits in memory whole. Plain writes, not a memory map: page faults on a
    fresh map cost twice as much per slice."""
    headers = [npy_header(s) for s in slices]
    dtype = np.result_type(*(dtype for _, dtype in headers))
    shape = (len(slices), *headers[0][0])
    temporary = path.with_name(path.name + ".part")
    try:
        with open(temporary, "wb") as handle:
            write_npy_header(handle, dtype, shape)
            for slice_path in slices:  # read, not mapped: mapped pages would count against this process
                handle.write(memoryview(np.ascontiguousarray(np.load(slice_path), dtype=dtype)))
    except BaseException:
        remove([temporary])
        raise
    os.replace(temporary, path)
    return shape


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(handle)
    return shape, dtype


def write_npy_header(handle, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Writes a .npy header; returns where the data starts."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
    return handle.tell()


def assemble_channels(images: list[FileRecord], dest: Path, notes: dict[str, str],
                      revised: list[FileRecord]) -> tuple[list[SampleSpec], set[int]]:
    """nnU-Net's raw layout: the files `case_0000`, `case_0001` ... of an images folder are the channels of
    one sample. Returns the samples and the records they took. A case whose channels are missing, differ
    in number from the other cases' or do not share one grid in space is rejected with all its files."""
    groups = channel_groups({r.index: place(r) for r in images if r.detail["kind"] != SLICE})
    cases: dict[tuple[str, str], list[tuple[int, FileRecord]]] = defaultdict(list)
    for record in images:
        if record.index in groups:
            folder, case, channel = groups[record.index]
            cases[(folder, case)].append((channel, record))
    usual = {folder: Counter(len(members) for (f, _), members in cases.items() if f == folder).most_common(1)[0][0]
             for folder, _ in cases}
    specs = []
    for (folder, case), members in cases.items():
        members.sort(key=lambda member: member[0])
        try:
            with guarded("the channels of the case could not be put together"):
                specs.append(stack_channels(case, [record for _, record in members], [c for c, _ in members],
                                            usual[folder], dest, notes))
        except Rejected as exc:
            revised.extend(withdraw(record, str(exc), dest) for _, record in members)
    return specs, {record.index for members in cases.values() for _, record in members}


def stack_channels(case: str, members: list[FileRecord], channels: list[int], usual: int, dest: Path,
                   notes: dict[str, str]) -> SampleSpec:
    if channels != list(range(len(channels))):
        raise Rejected(f"case '{case}' has channels {channels}; nnU-Net numbers them _0000, _0001 ... with none missing")
    if len(channels) != usual:
        raise Rejected(f"case '{case}' has {len(channels)} channels and the other cases beside it have {usual}")
    first = members[0]
    spec = spec_from(first)
    spec.pairing_keys = image_keys(place(first), case)
    for channel, member in enumerate(members):
        notes[member.path] = f"channel {channel} of {len(members)} of case '{case}'"
    if len(members) == 1:
        return spec
    shapes = {tuple(m.detail["shape"]) for m in members}
    if len(shapes) > 1 or {m.detail["kind"] for m in members} != {first.detail["kind"]}:
        raise Rejected(f"the channels of case '{case}' differ in shape ({', '.join(map(str, sorted(shapes)))})")
    reference = voxel_to_world(spec.shape, spec.kind, spec.meta, spec.spacing)
    for member in members[1:]:
        problem = geometry_problem(spec.shape, spec.kind, reference, member.detail["shape"], voxel_to_world(
            member.detail["shape"], spec.kind, member.detail["meta"], spacing_of(member.detail["meta"])))
        if problem:
            raise Rejected(f"channel {member.path} of case '{case}' does not lie where channel 0 does: {problem}")
    if spec.kind == IMAGE and (len(members) != 3 or first.detail["dtype"] != "uint8" or len(first.detail["shape"]) != 2):
        raise Rejected(f"case '{case}' has {len(members)} channels of 2D images; 2D samples hold one channel or "
                       "three 8-bit ones (RGB)")
    axis = -1 if spec.kind == IMAGE else 0
    stacked = np.stack([np.load(dest / m.detail["array"]) for m in members], axis=axis)
    spec.array = f"arrays/case-{first.index:07d}.npy"
    save_array(dest / spec.array, stacked)
    spec.shape, spec.dtype = list(stacked.shape), str(stacked.dtype)
    spec.files = [m.path for m in members]
    spec.sha256 = hashlib.sha256("".join(m.detail["sha256"] for m in members).encode()).hexdigest()
    spec.meta["channel_files"] = spec.files
    return spec


def pair_masks(images: list[SampleSpec], masks: list[FileRecord], notes: dict[str, str], dest: Path,
               revised: list[FileRecord]) -> None:
    """Each mask goes to the one image its place names (pairing.py), if it fits that image in space
    and holds labels; every other mask is withdrawn with the reason."""
    by_index = {mask.index: mask for mask in masks}
    sources = {("image", i): s.source for i, s in enumerate(images)} | {("mask", m.index): m.detail.get("source", "") for m in masks}
    pairing = pair(
        images={("image", i): s.pairing_keys for i, s in enumerate(images)},
        masks={("mask", m.index): mask_keys(place(m)) for m in masks},
        image_paths={("image", i): s.source_path for i, s in enumerate(images)},
        mask_paths={("mask", m.index): m.path for m in masks}, sources=sources,
    )
    for (_, index), reason in pairing.refused.items():
        revised.append(withdraw(by_index[index], reason, dest))
    for (_, index), (_, image_index) in sorted(pairing.given.items()):
        mask, image = by_index[index], images[image_index]
        try:
            with guarded("the mask could not be paired with its image"):
                notes[mask.path] = give_mask(mask, image, dest)
            notes[image.files[0]] = "; ".join(filter(None, [notes.get(image.files[0]), f"its mask: {mask.path}"]))
        except Rejected as exc:
            revised.append(withdraw(mask, str(exc), dest))


def give_mask(mask: FileRecord, image: SampleSpec, dest: Path) -> str:
    """Gives the mask to the image when it lies on the image's grid; returns the mask's note."""
    d = mask.detail
    problem = geometry_problem(image.shape, image.kind, voxel_to_world(image.shape, image.kind, image.meta, image.spacing),
                               d["shape"], voxel_to_world(d["shape"], d["kind"], d["meta"], spacing_of(d["meta"])))
    if problem:
        raise Rejected(f"does not fit {image.source_path}, the image its place names: {problem}; not used")
    with guarded("the mask's values could not be made into labels"):
        values, note = store_labels(dest / d["array"], d["format"], image.kind)
    image.mask = d["array"]
    image.meta["mask_values"] = values
    return "; ".join(filter(None, [f"mask of {image.source_path} (labels {', '.join(map(str, values))})", note]))


def assemble(records: list[FileRecord], dest: Path, revised: list[FileRecord]) -> IngestSummary:
    """Samples from the accepted files. A file that a step of assembly fails on is withdrawn: its
    record, now rejected with the reason, is added to `revised` (for the journal)."""
    notes: dict[str, str] = {}
    accepted = [r for r in records if r.status == ACCEPTED]
    images = [r for r in accepted if r.detail["role"] == IMAGE_ROLE]
    masks = [r for r in accepted if r.detail["role"] == MASK_ROLE]
    slices = [r for r in images if r.detail["kind"] == SLICE]
    listed = dicomdir_order(records, notes)
    cases, in_cases = assemble_channels(images, dest, notes, revised)
    singles = [spec_from(r) for r in images if r.detail["kind"] != SLICE and r.index not in in_cases]
    specs = assemble_series(slices, dest, notes, listed, revised) + cases + singles
    specs.sort(key=lambda s: s.source_path)
    pair_masks(specs, masks, notes, dest, revised)
    names = gather_label_names([r for r in accepted if r.detail["role"] == NAMES_ROLE], specs, notes)
    return IngestSummary(samples=specs, notes=notes, task=task_of(specs), label_names=names)


def gather_label_names(files: list[FileRecord], samples: list[SampleSpec], notes: dict[str, str]) -> dict[str, str]:
    """The names the upload's label files give, {value as text: name}; where two files name one value differently,
    the first by path is kept. A value named but in no mask is fine (a label absent from this upload); a value in
    the masks that no file names is said in each file's note, for the user to name on the dataset page."""
    held = sorted({int(v) for s in samples if s.mask for v in s.meta.get("mask_values", [])})
    unnamed = [value for value in held if value and value not in names_of(files)]
    names: dict[int, str] = {}
    named_by: dict[int, str] = {}
    for record in sorted(files, key=lambda r: r.path):
        said = []
        for value, name in ((int(v), n) for v, n in record.detail["label_names"].items()):
            if value in names and names[value] != name:
                said.append(f"label {value} is '{names[value]}' in {named_by[value]}, which is kept")
            names.setdefault(value, name)
            named_by.setdefault(value, record.path)
        if not held:
            said.append("no mask in the upload holds labels, so the names are not used")
        elif unnamed:
            said.append(f"the masks also hold {', '.join(map(str, unnamed))}, which no label file names: name "
                        f"{'it' if len(unnamed) == 1 else 'them'} in the Labels card of the dataset page")
        if said:
            notes[record.path] = "; ".join(said)
    return {str(value): name for value, name in sorted(names.items())} if held else {}


def names_of(files: list[FileRecord]) -> set[int]:
    return {int(value) for record in files for value in record.detail["label_names"]}


def task_of(samples: list[SampleSpec]) -> str:
    return SEGMENTATION if any(s.mask for s in samples) else CLASSIFICATION


def store_labels(path: Path, file_format: str, kind: str) -> tuple[list[int], str]:
    """Rewrites a mask's array as labels (masks.py: values kept, 0/255 pictures as 0/1, colours numbered);
    returns the label values and a note."""
    labels, values, note = make_labels(np.load(path), file_format, kind)
    save_array(path, labels)
    return values, note


# --------------------------------------------------------- the training cache


def build_cache(samples: list[SampleSpec], root: Path, cache_path: Path, observer: JobObserver,
                notes: dict[str, str], progress_offset: int = 0, pool=None,
                failures: dict[str, str] | None = None) -> tuple[int, int, int]:
    """One (N, C, H, W) uint8 array of the 2D images at their most common size; returns (C, H, W).

    Sample arrays are read relative to `root`; volumes are left out (cache_index stays None).
    Rows are filled in chunks, by the pool's processes when there is a pool. An image whose row
    cannot be filled is left out too (cache_index None; the others' rows stay dense, 0..N-1) and
    its reason goes to `failures` by source path; with no `failures` to take it, the build fails.
    """
    flat = [s for s in samples if s.kind == IMAGE]
    if not flat:
        return 0, 0, 0
    height, width = Counter(tuple(s.shape[:2]) for s in flat).most_common(1)[0][0]
    channels = 3 if any(len(s.shape) == 3 for s in flat) else 1
    shape = (channels, height, width)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_path.with_name(cache_path.name + ".part")
    with open(temporary, "wb") as handle:
        data_start = write_npy_header(handle, np.uint8, (len(flat), *shape))
        handle.truncate(data_start + len(flat) * int(np.prod(shape)))
    chunks = chunked([(index, spec.array, spec.meta, spec.source_path) for index, spec in enumerate(flat)], CACHE_CHUNK)
    results = map_in_order(pool, fill_cache_rows, chunks, temporary, data_start, root, shape, crashed=cache_crash_outcome)
    total = progress_offset or len(flat)
    filled = 0
    failed: dict[int, str] = {}
    for chunk, chunk_results in zip(chunks, results):
        if observer.should_stop():
            raise JobStopped("stopped by the user")
        for (index, _, _, source_path), (note, failure) in zip(chunk, chunk_results):
            if failure:
                failed[index] = failure
            elif note:
                notes[source_path] = "; ".join(filter(None, [notes.get(source_path), note]))
        filled = min(filled + CACHE_CHUNK, len(flat))
        observer.progress(total + filled * total // len(flat), total * 2, f"cached {filled:,} of {len(flat):,} images")
    kept = [index for index in range(len(flat)) if index not in failed]
    if failed:
        if failures is None:
            raise Rejected(f"{flat[min(failed)].source_path}: {failed[min(failed)]}")
        failures.update({flat[index].source_path: reason for index, reason in failed.items()})
        compact_cache(temporary, data_start, shape, kept)
    for row, index in enumerate(kept):
        flat[index].cache_index = row
    os.replace(temporary, cache_path)
    return shape


def fill_cache_rows(rows: list[tuple], cache_path: Path, data_start: int, root: Path,
                    shape: tuple[int, int, int]) -> list[tuple[str, str]]:
    """Writes rows (index, array path, meta, source path) into their places in the cache file
    (positioned writes, so pool processes fill their chunks side by side); returns (note, failure)
    for each row, failure saying why its row could not be filled ('' when it was)."""
    row_bytes = int(np.prod(shape))
    results = []
    descriptor = os.open(cache_path, os.O_WRONLY)
    try:
        for index, array, meta, _ in rows:
            try:
                with guarded("the training cache could not be filled from this image"):
                    pixels, note = cache_pixels(np.load(root / array), meta, shape)
                    os.pwrite(descriptor, memoryview(np.ascontiguousarray(pixels)), data_start + index * row_bytes)
                results.append((note, ""))
            except Rejected as exc:
                results.append(("", str(exc)))
    finally:
        os.close(descriptor)
    return results


def cache_crash_outcome(row: tuple, how: str) -> tuple[str, str]:
    return "", f"the training cache could not be filled from this image ({how})"


def compact_cache(path: Path, data_start: int, shape: tuple[int, int, int], kept: list[int]) -> None:
    """Rewrites the cache file with only the rows in `kept`, in order (only when some image could
    not be cached, so a second pass over the file is rare)."""
    row_bytes = int(np.prod(shape))
    compacted = path.with_name(path.name + ".compact")
    with open(path, "rb") as source, open(compacted, "wb") as target:
        write_npy_header(target, np.uint8, (len(kept), *shape))
        for index in kept:
            source.seek(data_start + index * row_bytes)
            target.write(source.read(row_bytes))
    os.replace(compacted, path)


def cache_pixels(pixels: np.ndarray, meta: dict, shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    channels, height, width = shape
    pixels = to_uint8(pixels, meta)
    note = ""
    if pixels.shape[:2] != (height, width):
        old_height, old_width = pixels.shape[:2]
        note = f"shape {old_width}x{old_height} differs from most images ({width}x{height}); resized in the training cache"
        mode = "L" if pixels.ndim == 2 else "RGB"
        pixels = np.asarray(Image.fromarray(pixels, mode).resize((width, height), Image.BILINEAR))
    if pixels.ndim == 2:
        return (pixels[None] if channels == 1 else np.repeat(pixels[None], 3, axis=0)), note
    return pixels.transpose(2, 0, 1), note


def leave_out_uncached(summary: IngestSummary, failures: dict[str, str], records: list[FileRecord],
                       dest: Path) -> list[FileRecord]:
    """Images whose cache row could not be filled leave the samples (their files are withdrawn);
    returns their revised records."""
    if not failures:
        return []
    by_path = {r.path: r for r in records}
    by_array = {r.detail["array"]: r for r in records if r.status == ACCEPTED}
    left_out = [s for s in summary.samples if s.kind == IMAGE and s.source_path in failures]
    for sample in left_out:
        if sample.mask:
            summary.notes[by_array[sample.mask].path] = f"mask of {sample.source_path}, which was left out; not used"
    summary.samples = [s for s in summary.samples if not (s.kind == IMAGE and s.source_path in failures)]
    summary.task = task_of(summary.samples)
    return [withdraw(by_path[s.source_path], failures[s.source_path], dest) for s in left_out]


# ------------------------------------------------------------------ the job


def ingest_upload(upload_dir: Path, dest: Path, options: IngestOptions, observer: JobObserver, journal: Journal) -> IngestSummary:
    """Every file of the upload gets an outcome in the journal; the good ones become the summary's
    samples. Raises only for the job as a whole: ArchiveError (the upload is unusable), JobStopped,
    JobFault (the disk is full, the reader processes cannot run)."""
    dest = Path(dest)
    revised: list[FileRecord] = []
    try:
        with upload_entries(Path(upload_dir), options.limits) as entries:
            count = len(entries)
            with ingest_pool(Path(upload_dir), options.limits, options.processes, entries, READ_CHUNK) as pool:
                records = read_files(entries, dest, options, observer, journal, pool)
                summary = assemble(records, dest, revised)
                failures: dict[str, str] = {}
                summary.channels, summary.height, summary.width = build_cache(
                    summary.samples, dest, dest / CACHE_FILE, observer, summary.notes, progress_offset=count, pool=pool,
                    failures=failures)
                revised += leave_out_uncached(summary, failures, records, dest)
    except OSError as exc:  # outside any one file's steps: writing the volumes or the cache
        raise_job_fault(exc)
        raise
    journal.record(revised)
    for record in revised:
        summary.notes.pop(record.path, None)  # its reason says it all now
    observer.progress(count * 2, count * 2, f"{len(summary.samples):,} samples ready")
    return summary


def discard_slice_arrays(records: list[FileRecord], summary: IngestSummary, dest: Path) -> None:
    """Slices stacked into volumes no longer need their own arrays (call once the samples are stored)."""
    used = {s.array for s in summary.samples} | {s.mask for s in summary.samples if s.mask}
    for record in records:
        array = record.detail.get("array")
        if array and array not in used:
            (dest / array).unlink(missing_ok=True)


__all__ = ["ArchiveError", "CACHE_FILE", "IngestOptions", "IngestSummary", "MemoryJournal", "ingest_upload"]

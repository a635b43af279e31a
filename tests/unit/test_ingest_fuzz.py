"""Damaged files by the thousand through the real ingest: each gets an outcome, none ends the job.

Valid DICOM (explicit and implicit VR, deflated, JPEG, JPEG 2000, multi-frame, nested sequences with
undefined lengths, no preamble, an element written the implicit way inside an explicit file, burned-in
annotation, a DICOMDIR),
NIfTI (.nii, .nii.gz, 2D) and pictures (PNG, JPEG, 16-bit TIFF) are mutated: bytes flipped in the
header and in the pixel data, truncated, spans repeated and deleted, DICOM element lengths and VRs
rewritten, sequence delimiters dropped and item lengths made wrong. Each mutant is made from its
own seeded generator, so one can be made again from its number alone. The mutants go through
`ingest_upload` (a pool of two processes, de-identification on) in uploads of BATCH files, with a
few undamaged files in each.

A larger run by hand: INGEST_FUZZ_MUTANTS=20000 INGEST_FUZZ_SEED=7 pytest tests/unit/test_ingest_fuzz.py -s
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import random
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

from tests.medical import dicom_bytes, nifti_bytes
from workers.engine.ingest import ACCEPTED, QUARANTINED, REJECTED, SKIPPED, IngestOptions, MemoryJournal, ingest_upload
from workers.engine.ingest.decoded import IMAGE
from workers.engine.ingest.deid import Deidentifier
from workers.engine.observer import SilentObserver

MUTANTS = int(os.environ.get("INGEST_FUZZ_MUTANTS", "7500"))
SEED = int(os.environ.get("INGEST_FUZZ_SEED", "20260601"))
BATCH = 150  # mutants per upload
GOOD_PER_BATCH = 6
OUTCOMES = {ACCEPTED, REJECTED, SKIPPED, QUARANTINED}
UNDAMAGED_OUTCOMES = {"burned.dcm": QUARANTINED, "DICOMDIR": SKIPPED}  # the others are accepted
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OW", b"PN",
       b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"UN", b"US", b"UT"]


# ------------------------------------------------------------------ valid files


def written(ds: Dataset, **options) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, **options)
    return buffer.getvalue()


def dataset(pixels: np.ndarray | None = None, **options) -> Dataset:
    return pydicom.dcmread(io.BytesIO(dicom_bytes(pixels, **options)))


def implicit_dicom() -> bytes:
    ds = dataset(patient_id="IMPLICIT")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return written(ds, implicit_vr=True)


def deflated_dicom() -> bytes:
    ds = dataset(patient_id="DEFLATED")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return written(ds, enforce_file_format=True)


def jpeg_dicom() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8)
    ds = dataset(pixels, patient_id="JPEG")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "MONOCHROME2"
    return written(ds, enforce_file_format=True)


def jpeg2000_dicom() -> bytes:
    ds = dataset(np.random.default_rng(2).integers(0, 4000, (40, 40), dtype=np.int16), patient_id="J2K")
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    return written(ds, enforce_file_format=True)


def multiframe_dicom() -> bytes:
    frames = np.random.default_rng(3).integers(0, 4000, (4, 32, 32), dtype=np.uint16)
    ds = dataset(frames[0], patient_id="FRAMES")
    ds.NumberOfFrames = 4
    ds.PixelData = frames.tobytes()
    return written(ds, enforce_file_format=True)


def nested_dicom(implicit: bool = False) -> bytes:
    """Sequences within sequences, of undefined length with undefined-length items, one of them kept
    by the de-identification profile (AnatomicRegionSequence) and one it removes (ReferencedImageSequence)."""
    ds = dataset(patient_id="NESTED")
    modifier = Dataset()
    modifier.CodeValue, modifier.CodingSchemeDesignator, modifier.CodeMeaning = "G-A101", "SRT", "Left"
    modifier.is_undefined_length_sequence_item = True
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-D3000", "SRT", "Chest"
    region.AnatomicRegionModifierSequence = Sequence([modifier])
    region.is_undefined_length_sequence_item = True
    ds.AnatomicRegionSequence = Sequence([region])
    ds["AnatomicRegionSequence"].is_undefined_length = True
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = ds.SOPClassUID, "1.2.826.0.1.3680043.8.498.1"
    ds.ReferencedImageSequence = Sequence([reference])
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return written(ds, implicit_vr=implicit)


def headless_dicom() -> bytes:
    """No preamble, no 'DICM', no file meta: pydicom reads it only with force=True."""
    ds = dataset(patient_id="HEADLESS")
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def implicit_element_in_explicit_dicom() -> bytes:
    """An explicit-VR file with one element written the implicit way (no VR, 4-byte length), as some
    writers do; the profile replaces it, so the header writer must write it again: pydicom alone
    raised TypeError ('encoding without a string argument') there."""
    data = dicom_bytes(patient_id="MIXED", extra={"AccessionNumber": "ZQACCESX"})
    explicit = struct.pack("<HH2sH", 0x0008, 0x0050, b"SH", 8) + b"ZQACCESX"
    implicit = struct.pack("<HHI", 0x0008, 0x0050, 8) + b"ZQACCESX"
    assert data.count(explicit) == 1
    return data.replace(explicit, implicit)


def dicomdir() -> bytes:
    """A DICOMDIR (patient, study, series and image records in nested sequences) as pydicom's FileSet writes it."""
    file_set = FileSet()
    ds = dataset(patient_id="INDEXED")
    ds.StudyTime, ds.StudyID, ds.SeriesNumber = "101010", "1", 1
    file_set.add(ds)
    with tempfile.TemporaryDirectory() as folder:
        file_set.write(folder)
        return (Path(folder) / "DICOMDIR").read_bytes()


def picture(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    explicit = dicom_bytes(rng.integers(0, 4000, (64, 64), dtype=np.int16), patient_id="EXPLICIT")
    volume = rng.integers(0, 1000, (12, 10, 6), dtype=np.int16)
    return {
        "explicit.dcm": explicit,
        "implicit.dcm": implicit_dicom(),
        "deflated.dcm": deflated_dicom(),
        "jpeg.dcm": jpeg_dicom(),
        "jpeg2000.dcm": jpeg2000_dicom(),
        "multiframe.dcm": multiframe_dicom(),
        "nested.dcm": nested_dicom(),
        "nested_implicit.dcm": nested_dicom(implicit=True),
        "IM000001": headless_dicom(),
        "mixed_vr.dcm": implicit_element_in_explicit_dicom(),
        "burned.dcm": dicom_bytes(np.full((16, 16), 5, np.int16), patient_id="BURNED", burned_in="YES"),
        "DICOMDIR": dicomdir(),
        "explicit.dcm.gz": gzip.compress(dicom_bytes(np.full((16, 16), 7, np.int16), patient_id="GZIP")),
        "volume.nii": nifti_bytes(volume),
        "volume.nii.gz": nifti_bytes(volume + 1, compressed=True),
        "flat.nii": nifti_bytes(rng.normal(0, 1, (20, 16, 1)).astype(np.float32)),
        "grey.png": picture(rng.integers(0, 255, (40, 40), dtype=np.uint8), "PNG"),
        "colour.png": picture(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), "PNG"),
        "photo.jpg": picture(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), "JPEG", quality=90),
        "wide.tif": picture(rng.integers(0, 65535, (40, 40), dtype=np.uint16), "TIFF"),
    }


# ------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Field:
    """A place in a DICOM file that a structural mutation rewrites."""
    kind: str    # "length", "vr", "item_length", "delimiter"
    offset: int
    size: int


def dicom_fields(data: bytes, implicit: bool) -> list[Field]:
    """Element lengths and VRs, item lengths and delimiters of a little-endian DICOM file, nested
    sequences included (file meta is always explicit VR)."""
    fields: list[Field] = []

    def walk(pos: int, end: int, opaque_items: bool = False) -> int:
        """Walks a data set (or an undefined-length value) to `end` or its delimiter; returns where it stopped."""
        while pos + 8 <= end:
            group, element = struct.unpack_from("<HH", data, pos)
            if group == 0xFFFE:
                if element in (0xE00D, 0xE0DD):
                    fields.append(Field("delimiter", pos, 8))
                    return pos + 8
                length = struct.unpack_from("<I", data, pos + 4)[0]
                fields.append(Field("item_length", pos + 4, 4))
                if opaque_items:  # fragments of encapsulated pixel data
                    pos += 8 + length
                elif length == 0xFFFFFFFF:
                    pos = walk(pos + 8, end)
                else:
                    walk(pos + 8, pos + 8 + length)
                    pos += 8 + length
                continue
            if implicit and group != 0x0002:
                length, header, vr = struct.unpack_from("<I", data, pos + 4)[0], 8, implicit_vr(group << 16 | element)
                fields.append(Field("length", pos + 4, 4))
            else:
                vr = data[pos + 4:pos + 6]
                fields.append(Field("vr", pos + 4, 2))
                if vr in LONG_VRS:
                    length, header = struct.unpack_from("<I", data, pos + 8)[0], 12
                    fields.append(Field("length", pos + 8, 4))
                else:
                    length, header = struct.unpack_from("<H", data, pos + 6)[0], 8
                    fields.append(Field("length", pos + 6, 2))
            value = pos + header
            if length == 0xFFFFFFFF:
                pos = walk(value, end, opaque_items=(group, element) == (0x7FE0, 0x0010))
            else:
                if vr == b"SQ":
                    walk(value, value + length)
                pos = value + length
        return pos

    walk(132 if data[128:132] == b"DICM" else 0, len(data))
    return fields


def implicit_vr(tag: int) -> bytes:
    try:
        return dictionary_VR(tag).encode()[:2]
    except KeyError:
        return b"UN"


@dataclass
class Seed:
    name: str
    data: bytes
    header_end: int      # where the pixel (or compressed) data starts: flips before it hit the header
    fields: list[Field]


def seed_of(name: str, data: bytes) -> Seed:
    fields: list[Field] = []
    if name.endswith(".dcm") or name.startswith("IM") or name == "DICOMDIR":
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        if not (syntax and syntax.is_deflated):
            fields = dicom_fields(data, implicit=syntax is None or syntax.is_implicit_VR)
    marks = {".dcm": b"\xe0\x7f\x10\x00", ".png": b"IDAT", ".jpg": b"\xff\xda"}
    mark = next((m for suffix, m in marks.items() if name.endswith(suffix)), None)
    header_end = data.find(mark) if mark and mark in data else (352 if name.endswith(".nii") else len(data) // 8)
    return Seed(name, data, max(header_end, 16), fields)


def mutation_kinds(seed: Seed) -> list[str]:
    kinds = ["flip_header", "flip_pixels", "truncate", "repeat_span", "delete_span"]
    present = {f.kind for f in seed.fields}
    if "length" in present:
        kinds.append("rewrite_length")
    if "vr" in present:
        kinds.append("rewrite_vr")
    if present & {"item_length", "delimiter"}:
        kinds.append("break_sequence")
    return kinds


def mutate(seed: Seed, kind: str, rng: random.Random) -> bytes:
    data = bytearray(seed.data)
    if kind in ("flip_header", "flip_pixels"):
        low, high = (0, seed.header_end) if kind == "flip_header" else (seed.header_end, len(data))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(low, high)] ^= rng.randint(1, 255)
    elif kind == "truncate":
        del data[rng.randrange(1, len(data)):]
    elif kind in ("repeat_span", "delete_span"):
        start = rng.randrange(len(data))
        end = min(len(data), start + rng.choice([1, 2, 4, 8, rng.randint(1, 512)]))
        data[start:end] = data[start:end] * 2 if kind == "repeat_span" else b""
    elif kind == "rewrite_length":
        field = rng.choice([f for f in seed.fields if f.kind == "length"])
        data[field.offset:field.offset + field.size] = wrong_length(data, field, rng)
    elif kind == "rewrite_vr":
        field = rng.choice([f for f in seed.fields if f.kind == "vr"])
        data[field.offset:field.offset + 2] = rng.choice([rng.choice(VRS), bytes(rng.randrange(256) for _ in range(2)), b"  "])
    elif kind == "break_sequence":
        field = rng.choice([f for f in seed.fields if f.kind in ("item_length", "delimiter")])
        if field.kind == "delimiter":  # a missing delimiter, or one with a wrong tag
            data[field.offset:field.offset + 8] = b"" if rng.random() < 0.7 else struct.pack("<HHI", 0xFFFE, 0xE000, 0)
        else:
            data[field.offset:field.offset + 4] = wrong_length(data, field, rng)
    return bytes(data)


def wrong_length(data: bytearray, field: Field, rng: random.Random) -> bytes:
    old = int.from_bytes(data[field.offset:field.offset + field.size], "little")
    largest = 2 ** (8 * field.size) - 1
    choices = [0, largest, old + 1, max(0, old - 1), old + 2, max(0, old - 2), old + rng.randint(3, 64), old * 2 + 8,
               rng.randint(0, min(largest, len(data) * 2))]
    return min(rng.choice(choices), largest).to_bytes(field.size, "little")


def mutant(seeds: list[Seed], number: int) -> tuple[str, str, bytes]:
    """Mutant `number`: (seed name, mutation kind, bytes), from a generator of its own."""
    rng = random.Random(f"{SEED}:{number}")
    seed = rng.choice(seeds)
    kind = rng.choice(mutation_kinds(seed))
    data = mutate(seed, kind, rng)
    while data == seed.data:  # an undamaged copy would be a duplicate of the good file
        data = mutate(seed, "flip_pixels", rng)
    return seed.name, kind, data


# ------------------------------------------------------------------------ test


def storable(value) -> bool:
    """What the worker stores as JSON in the database: no NaN (JSON has none), no NUL (PostgreSQL refuses it)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return "\\u0000" not in text


def check_batch(dest: Path, summary, journal: MemoryJournal, names: dict[str, tuple[str, str]], good: list[str]) -> list[str]:
    problems = []
    records = {r.path: r for r in journal.records.values()}
    missing = set(names) - set(records)
    problems += [f"{path}: no outcome" for path in sorted(missing)]
    for path, record in records.items():
        if record.status not in OUTCOMES:
            problems.append(f"{path}: outcome {record.status!r}")
        if record.status != ACCEPTED and not record.reason.strip():
            problems.append(f"{path}: {record.status} with no reason")
        if not storable([record.reason, record.detail]):
            problems.append(f"{path}: its record cannot be stored: {record.reason!r} {record.detail!r}")
    in_samples = Counter(f for s in summary.samples for f in s.files)
    for path in good:
        expected = UNDAMAGED_OUTCOMES.get(names[path][0], ACCEPTED)
        if has_twin(path, names, records):
            continue
        if records[path].status != expected or in_samples[path] != (expected == ACCEPTED):
            problems.append(f"{path} (undamaged): {records[path].status}, {records[path].reason}, in {in_samples[path]} samples")
    for sample in summary.samples:
        if not storable(dataclasses.asdict(sample)):
            problems.append(f"{sample.source_path}: its sample cannot be stored: {dataclasses.asdict(sample)!r}")
        if not (dest / sample.array).exists() or sample.mask and not (dest / sample.mask).exists():
            problems.append(f"{sample.source_path}: its array is missing")
        if any(records[f].status != ACCEPTED for f in sample.files):
            problems.append(f"{sample.source_path}: a sample made of files that were not accepted")
    cached = sorted(s.cache_index for s in summary.samples if s.kind == IMAGE)
    if cached != list(range(len(cached))):
        problems.append(f"cache rows are not dense: {cached}")
    if cached and np.load(dest / "cache/images.npy", mmap_mode="r").shape[0] != len(cached):
        problems.append("the cache holds another number of rows than there are images")
    return problems


SAME_PLACE = ("share a position with another", "a copy of another slice of its series")


def has_twin(path: str, names: dict[str, tuple[str, str]], records: dict) -> bool:
    """An undamaged DICOM slice whose damaged copy still decodes lies in the same series at the same place: the
    two are one slice twice (dropped as a copy when their pixels agree) or two slices nothing tells apart (refused,
    rather than stacked into a volume of zero spacing). Either outcome is right for the undamaged one too."""
    twins = any(seed == names[path][0] and kind != "none" for seed, kind in names.values())
    return twins and records[path].status == REJECTED and any(phrase in records[path].reason for phrase in SAME_PLACE)


def test_damaged_files_each_get_an_outcome_and_never_end_the_job(tmp_path):
    seeds = [seed_of(name, data) for name, data in valid_files().items()]
    deidentifier = Deidentifier(b"f" * 32)
    outcomes: Counter = Counter()
    problems: list[str] = []
    started = time.monotonic()
    for batch, first in enumerate(range(0, MUTANTS, BATCH)):
        upload = tmp_path / f"upload-{batch}"
        names: dict[str, tuple[str, str]] = {}
        for number in range(first, min(first + BATCH, MUTANTS)):
            seed_name, kind, data = mutant(seeds, number)
            path = f"{kind}/{number:06d}-{seed_name}"
            names[path] = (seed_name, kind)
            (upload / path).parent.mkdir(parents=True, exist_ok=True)
            (upload / path).write_bytes(data)
        good = []
        for k in range(GOOD_PER_BATCH):
            seed = seeds[(batch * GOOD_PER_BATCH + k) % len(seeds)]
            path = f"undamaged/{seed.name}"
            (upload / path).parent.mkdir(parents=True, exist_ok=True)
            (upload / path).write_bytes(seed.data)
            names[path], good = (seed.name, "none"), good + [path]
        journal = MemoryJournal()
        dest = tmp_path / f"dataset-{batch}"
        options = IngestOptions(deidentifier=deidentifier, labels_from="folders", processes=2)
        try:
            summary = ingest_upload(upload, dest, options, SilentObserver(), journal)
        except Exception as exc:  # the one thing this test exists to catch
            problems.append(f"batch {batch} (mutants {first}..): the job ended: {type(exc).__name__}: {exc}")
            continue
        problems += [f"batch {batch}: {p}" for p in check_batch(dest, summary, journal, names, good)]
        for record in journal.records.values():
            outcomes[names[record.path][1], record.status] += 1
    took = time.monotonic() - started
    kinds = sorted({kind for kind, _ in outcomes})
    print(f"\n{MUTANTS} mutants (seed {SEED}) in {took:.1f} s")
    for kind in kinds:
        print(f"  {kind:15s}", "  ".join(f"{status} {outcomes[kind, status]:5d}" for status in sorted(OUTCOMES)))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:50])
    assert sum(n for (kind, _), n in outcomes.items() if kind != "none") == MUTANTS

"""Bring a zip of images, one folder per class, into a dataset folder.

Two passes keep memory flat whatever the upload's size: the first checks each
archive entry, decodes it and stores the original and a thumbnail; the second
reads the stored originals back into one memory-mappable array (the training
cache). Every entry ends with an outcome and a reason a person can act on.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
import stat
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .observer import JobObserver, JobStopped

ACCEPTED = "accepted"
REJECTED = "rejected"
SKIPPED = "skipped"

IMAGE_FORMATS = {"PNG", "JPEG", "BMP", "TIFF", "PPM"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
THUMBNAIL_SIZE = 128
CACHE_FILE = "cache/images.npy"


class ArchiveError(ValueError):
    """The upload as a whole cannot be ingested; the message says why and what to do."""


@dataclass(frozen=True)
class IngestLimits:
    max_entries: int = 200_000
    max_entry_bytes: int = 512 * 1024**2
    max_total_bytes: int = 16 * 1024**3
    # Real images compress at most ~50:1; far beyond that is a decompression bomb.
    max_compression_ratio: int = 200


@dataclass
class FileOutcome:
    path: str
    status: str
    reason: str = ""
    label: str = ""
    original: str = ""
    thumbnail: str = ""
    width: int = 0
    height: int = 0
    channels: int = 0
    sha256: str = ""
    cache_index: int = -1


@dataclass
class IngestResult:
    outcomes: list[FileOutcome]
    height: int = 0
    width: int = 0
    channels: int = 0

    @property
    def accepted(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == ACCEPTED]

    @property
    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(o.label for o in self.accepted).items()))


@dataclass
class ArchiveInspection:
    """A quick look at an archive before accepting it for ingest."""

    entries: int = 0
    images_ok: int = 0
    inspected_all: bool = True
    labels: Counter = field(default_factory=Counter)
    problems: list[FileOutcome] = field(default_factory=list)


def open_archive(path: str | Path) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        raise ArchiveError(
            "This file is not a zip archive. Upload a .zip that holds one folder per class "
            "with the images inside."
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"The zip archive cannot be read ({exc}). Create it again and re-upload.")


def file_entries(archive: zipfile.ZipFile, limits: IngestLimits) -> list[zipfile.ZipInfo]:
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if not entries:
        raise ArchiveError(
            "The zip archive is empty. Put the images in one folder per class, zip the folders "
            "and upload again."
        )
    if len(entries) > limits.max_entries:
        raise ArchiveError(
            f"The zip archive holds {len(entries):,} files; the limit is {limits.max_entries:,}. "
            "Split it into smaller archives."
        )
    return entries


def label_root(entries: list[zipfile.ZipInfo]) -> str:
    """The folder that wraps the class folders, when the whole archive sits in one."""
    parts = [info.filename.replace("\\", "/").split("/") for info in entries]
    firsts = {p[0] for p in parts}
    if len(firsts) == 1 and all(len(p) >= 3 for p in parts):
        return parts[0][0]
    return ""


def entry_problem(info: zipfile.ZipInfo, root: str, limits: IngestLimits) -> tuple[str, str, str]:
    """(status, reason, label) for an entry before its bytes are read."""
    name = info.filename.replace("\\", "/")
    parts = name.split("/")
    base = parts[-1]
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return REJECTED, "absolute path inside the archive; paths must be relative", ""
    if ".." in parts:
        return REJECTED, "path leaves the archive ('..'); such entries are never unpacked", ""
    if stat.S_ISLNK(info.external_attr >> 16):
        return REJECTED, "symbolic link; only regular image files are taken", ""
    if "__MACOSX" in parts or base.lower() in SYSTEM_FILES or base.startswith("._"):
        return SKIPPED, "operating-system file, not an image", ""
    if base.lower().endswith(ARCHIVE_SUFFIXES):
        return REJECTED, "archive inside the archive; upload it separately", ""
    if info.file_size > limits.max_entry_bytes:
        return REJECTED, f"file is larger than {limits.max_entry_bytes // 1024**2} MB", ""
    if info.compress_size and info.file_size > 1024**2:
        if info.file_size / info.compress_size > limits.max_compression_ratio:
            return REJECTED, "compression ratio too high (possible zip bomb)", ""
    folders = parts[:-1]
    if root and folders and folders[0] == root:
        folders = folders[1:]
    if not folders:
        return REJECTED, "not inside a class folder; put each image in a folder named after its class", ""
    if info.file_size == 0:
        return REJECTED, "empty file (0 bytes)", folders[0]
    return ACCEPTED, "", folders[0]


SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def claimed_format(data: bytes) -> str:
    return next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), "")


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to uint8 (H, W) grayscale or (H, W, 3) colour."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in IMAGE_FORMATS:
                raise ValueError(f"{img.format} images are not supported; use PNG, JPEG, BMP, TIFF or PGM/PPM")
            img.load()
            return to_uint8_array(img)
    except UnidentifiedImageError:
        if claimed_format(data):
            raise ValueError(f"corrupt or truncated image (starts like a {claimed_format(data)} file but cannot be decoded)")
        raise ValueError("not a recognised image file (PNG, JPEG, BMP, TIFF, PGM/PPM)")
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"corrupt or truncated image ({exc})")


def to_uint8_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return ((array - low) * scale).round().astype(np.uint8)
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode == "P" and img.palette and img.palette.mode == "L":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def safe_basename(name: str) -> str:
    base = posixpath.basename(name.replace("\\", "/"))
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)
    return cleaned.lstrip(".")[:100] or "image"


def safe_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._- " else "_" for c in label).strip()[:100]


def inspect_archive(path: str | Path, limits: IngestLimits = IngestLimits(), time_budget_s: float = 3.0) -> ArchiveInspection:
    """Check the archive's structure and decode as many entries as the time budget allows.

    Raises ArchiveError when the archive as a whole is unusable.
    """
    inspection = ArchiveInspection()
    deadline = time.monotonic() + time_budget_s
    with open_archive(path) as archive:
        entries = file_entries(archive, limits)
        root = label_root(entries)
        inspection.entries = len(entries)
        for info in entries:
            status, reason, label = entry_problem(info, root, limits)
            if status != ACCEPTED:
                if status == REJECTED:
                    inspection.problems.append(FileOutcome(info.filename, status, reason))
                continue
            inspection.labels[safe_label(label)] += 1
            if time.monotonic() > deadline:
                inspection.inspected_all = False
                continue
            try:
                decode_image(archive.read(info))
                inspection.images_ok += 1
            except (ValueError, zipfile.BadZipFile, OSError) as exc:
                inspection.problems.append(FileOutcome(info.filename, REJECTED, str(exc)))
    return inspection


def ingest_archive(
    path: str | Path,
    dest_dir: str | Path,
    observer: JobObserver,
    limits: IngestLimits = IngestLimits(),
) -> IngestResult:
    """Store every good image of the archive under dest_dir and build the cache."""
    dest_dir = Path(dest_dir)
    with open_archive(path) as archive:
        entries = file_entries(archive, limits)
        outcomes = store_entries(archive, entries, dest_dir, observer, limits)
    result = IngestResult(outcomes)
    if result.accepted:
        build_cache(result, dest_dir, observer)
    return result


def store_entries(archive, entries, dest_dir: Path, observer: JobObserver, limits: IngestLimits) -> list[FileOutcome]:
    root = label_root(entries)
    seen_hashes: dict[str, str] = {}
    outcomes = []
    total_bytes = 0
    # The cache pass re-reads accepted files: count it in the progress total.
    total_units = len(entries) * 2
    for number, info in enumerate(entries):
        if observer.should_stop():
            raise JobStopped("ingest stopped by the user")
        status, reason, label = entry_problem(info, root, limits)
        outcome = FileOutcome(info.filename, status, reason, safe_label(label))
        if status == ACCEPTED:
            total_bytes += info.file_size
            if total_bytes > limits.max_total_bytes:
                outcome.status, outcome.reason = REJECTED, "archive exceeds the total size limit; split it"
            else:
                store_one(archive, info, number, outcome, dest_dir, seen_hashes)
        outcomes.append(outcome)
        observer.progress(number + 1, total_units, f"checked {number + 1} of {len(entries)} files")
    return outcomes


def store_one(archive, info, number: int, outcome: FileOutcome, dest_dir: Path, seen_hashes: dict[str, str]) -> None:
    try:
        data = archive.read(info)
    except (zipfile.BadZipFile, OSError, NotImplementedError) as exc:
        outcome.status, outcome.reason = REJECTED, f"cannot be read from the archive ({exc})"
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest in seen_hashes:
        outcome.status, outcome.reason = REJECTED, f"duplicate of {seen_hashes[digest]} (same content)"
        return
    try:
        pixels = decode_image(data)
    except ValueError as exc:
        outcome.status, outcome.reason = REJECTED, str(exc)
        return
    seen_hashes[digest] = info.filename
    relative = Path("originals") / outcome.label / f"{number:06d}_{safe_basename(info.filename)}"
    thumb = Path("thumbnails") / f"{number:06d}.png"
    (dest_dir / relative).parent.mkdir(parents=True, exist_ok=True)
    (dest_dir / relative).write_bytes(data)
    write_thumbnail(pixels, dest_dir / thumb)
    outcome.original, outcome.thumbnail, outcome.sha256 = str(relative), str(thumb), digest
    outcome.height, outcome.width = pixels.shape[:2]
    outcome.channels = 1 if pixels.ndim == 2 else 3


def write_thumbnail(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    image.save(path, format="PNG")


def build_cache(result: IngestResult, dest_dir: Path, observer: JobObserver) -> None:
    """One (N, C, H, W) uint8 array at the dataset's most common image size."""
    accepted = result.accepted
    (result.height, result.width), _ = Counter((o.height, o.width) for o in accepted).most_common(1)[0]
    result.channels = 3 if any(o.channels == 3 for o in accepted) else 1
    cache_path = dest_dir / CACHE_FILE
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = np.lib.format.open_memmap(
        cache_path, mode="w+", dtype=np.uint8,
        shape=(len(accepted), result.channels, result.height, result.width),
    )
    offset = len(result.outcomes)
    for index, outcome in enumerate(accepted):
        if observer.should_stop():
            raise JobStopped("ingest stopped by the user")
        cache[index] = cache_pixels(dest_dir / outcome.original, outcome, result)
        outcome.cache_index = index
        done = offset + (index + 1) * offset // len(accepted)
        observer.progress(done, offset * 2, f"cached {index + 1} of {len(accepted)} images")
    cache.flush()
    del cache


def cache_pixels(path: Path, outcome: FileOutcome, result: IngestResult) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        pixels = to_uint8_array(img)
    if pixels.shape[:2] != (result.height, result.width):
        outcome.reason = f"resized from {outcome.width}x{outcome.height} to {result.width}x{result.height}"
        mode = "L" if pixels.ndim == 2 else "RGB"
        pixels = np.asarray(
            Image.fromarray(pixels, mode).resize((result.width, result.height), Image.BILINEAR)
        )
    if pixels.ndim == 2:
        pixels = pixels[None] if result.channels == 1 else np.repeat(pixels[None], 3, axis=0)
    else:
        pixels = pixels.transpose(2, 0, 1)
    return pixels

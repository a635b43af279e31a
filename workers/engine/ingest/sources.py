"""The files of an upload: loose files in the upload folder and the members of zip archives.

Every file becomes an Entry with the checks that need no decoding (paths that
leave the archive, links, nested archives, sizes, compression ratios) done by
`entry_problem`, so nothing unsafe is ever read, let alone written.
"""
from __future__ import annotations

import contextlib
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".bz2", ".xz", ".7z", ".rar")
TABLE_SUFFIXES = (".csv", ".xlsx", ".xls", ".tsv")
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
# Files that come with datasets to describe them (MSD's and nnU-Net's dataset.json, READMEs, licences).
DOCUMENT_SUFFIXES = (".json", ".txt", ".md", ".html", ".rst")

# Why a table or a document is skipped (unless it names the masks' labels: job.py reads those).
TABLE_REASON = "table, not an image: attach it on the dataset page ('Labels from a table')"
DOCUMENT_REASON = "a document that describes the data, not an image"

ACCEPTED = "accepted"
REJECTED = "rejected"
SKIPPED = "skipped"
QUARANTINED = "quarantined"


class ArchiveError(ValueError):
    """The upload as a whole cannot be ingested; the message says why and what to do."""


@dataclass(frozen=True)
class IngestLimits:
    max_entries: int = 200_000
    max_entry_bytes: int = 1024**3
    max_total_bytes: int = 64 * 1024**3
    # Real images compress at most ~50:1 (blank masks more); far beyond that is a decompression bomb.
    max_compression_ratio: int = 200


@dataclass
class Entry:
    path: str              # shown in the report: relative, '/'-separated
    label_path: str        # the path labels and masks are read from (inside its own archive)
    size: int
    compressed_size: int
    is_link: bool
    read: Callable[[], bytes]
    source: str = ""       # the zip it came from ("" for loose files): labels are read per source
    archive: zipfile.ZipFile | None = field(default=None, repr=False)  # the open zip that read() reads from


def zip_entries(archive: zipfile.ZipFile, prefix: str) -> list[Entry]:
    entries = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename.replace("\\", "/")
        entries.append(Entry(
            path=prefix + name, label_path=name, size=info.file_size, compressed_size=info.compress_size,
            is_link=stat.S_ISLNK(info.external_attr >> 16),
            read=lambda info=info: archive.read(info), source=prefix or "zip", archive=archive,
        ))
    return entries


def open_zip(path: Path) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path.name} is not a zip archive (or it is damaged). Upload a .zip, or the image files themselves.")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"The zip archive {path.name} cannot be read ({exc}). Create it again and re-upload.")


@contextlib.contextmanager
def upload_entries(upload_dir: Path, limits: IngestLimits = IngestLimits()):
    """Yield the upload's entries in a stable order (the order a resumed ingest relies on)."""
    files = sorted(p for p in Path(upload_dir).rglob("*") if p.is_file() or p.is_symlink())
    entries: list[Entry] = []
    with contextlib.ExitStack() as stack:
        single_zip = len(files) == 1 and files[0].name.lower().endswith(".zip")
        for file in files:
            relative = file.relative_to(upload_dir).as_posix()
            if file.name.lower().endswith(".zip") and not file.is_symlink():
                archive = stack.enter_context(open_zip(file))
                entries.extend(zip_entries(archive, "" if single_zip else relative + "/"))
            else:
                entries.append(Entry(
                    path=relative, label_path=relative, size=file.lstat().st_size, compressed_size=0,
                    is_link=file.is_symlink(), read=lambda file=file: file.read_bytes(),
                ))
        if not entries:
            raise ArchiveError("The upload holds no files. Choose image files, a folder or a zip archive with images inside.")
        if len(entries) > limits.max_entries:
            raise ArchiveError(f"The upload holds {len(entries):,} files; the limit is {limits.max_entries:,}. Split it into smaller uploads.")
        yield entries


def reopen_archives(entries: list[Entry]) -> None:
    """In a forked process: read the zips through handles of its own. A handle inherited from the
    parent shares its file offset with every other process forked from it, while each process's
    buffered reader believes it knows where that offset is."""
    for archive in {id(e.archive): e.archive for e in entries if e.archive is not None}.values():
        archive.fp = open(archive.filename, "rb")


def wrapping_roots(entries: list[Entry]) -> dict[str, str]:
    """Per source, the folder that wraps everything when all of it sits in one (it is not a label)."""
    by_source: dict[str, list[list[str]]] = {}
    for entry in entries:
        by_source.setdefault(entry.source, []).append(entry.label_path.split("/"))
    roots = {}
    for source, parts in by_source.items():
        firsts = {p[0] for p in parts}
        roots[source] = parts[0][0] if len(firsts) == 1 and all(len(p) >= 3 for p in parts) else ""
    return roots


def folders_of(entry: Entry, roots: dict[str, str]) -> list[str]:
    folders = entry.label_path.split("/")[:-1]
    root = roots.get(entry.source, "")
    if root and folders and folders[0] == root:
        folders = folders[1:]
    return folders


def entry_problem(entry: Entry, limits: IngestLimits) -> tuple[str, str]:
    """(status, reason) for an entry before its bytes are read; ("", "") when it may be read."""
    name = entry.label_path
    parts = name.split("/")
    base = parts[-1].lower()
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return REJECTED, "absolute path inside the archive; paths must be relative"
    if ".." in parts:
        return REJECTED, "path leaves the archive ('..'); such entries are never unpacked"
    if entry.is_link:
        return REJECTED, "symbolic link; only regular files are taken"
    if "__MACOSX" in parts or base in SYSTEM_FILES or base.startswith("._"):
        return SKIPPED, "operating-system file, not an image"
    if base.endswith(ARCHIVE_SUFFIXES) and not base.endswith(".nii.gz"):
        return REJECTED, "archive inside an archive; upload it separately"
    if base.endswith(TABLE_SUFFIXES):
        return SKIPPED, TABLE_REASON
    if base.endswith(DOCUMENT_SUFFIXES) or base in ("readme", "license", "licence", "changes"):
        return SKIPPED, DOCUMENT_REASON
    if base.endswith((".hdr", ".img")):
        return REJECTED, "Analyze .hdr/.img pairs are not supported; convert them to NIfTI (.nii.gz)"
    if entry.size > limits.max_entry_bytes:
        return REJECTED, f"file is larger than {limits.max_entry_bytes // 1024**2:,} MB"
    if entry.compressed_size and entry.size > 1024**2 and entry.size / entry.compressed_size > limits.max_compression_ratio:
        return REJECTED, f"compression ratio {entry.size // entry.compressed_size}:1 is too high (possible zip bomb)"
    if entry.size == 0:
        return REJECTED, "empty file (0 bytes)"
    return "", ""


def bids_subject(path: str) -> str:
    """The BIDS subject a file lies under ('sub-07/anat/sub-07_T1w.nii.gz' -> 'sub-07'), or ''.
    NIfTI and pictures carry no patient; BIDS folders are the common way to say whose they are."""
    for part in path.split("/")[:-1]:
        if part.startswith("sub-") and len(part) > 4 and part[4:].isalnum():
            return part
    return ""

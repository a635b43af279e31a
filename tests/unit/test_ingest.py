"""The engine's archive ingest: good files come in, every bad one gets a reason."""
import errno
import faulthandler
import io
import os
import signal
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import demo_entries, make_zip, png_bytes
from tests.medical import series
from workers.engine.ingest import (
    ACCEPTED,
    CACHE_FILE,
    REJECTED,
    SKIPPED,
    ArchiveError,
    IngestLimits,
    IngestOptions,
    MemoryJournal,
    ingest_upload,
    inspect_upload,
    job,
    pool,
)
from workers.engine.ingest.sources import upload_entries
from workers.engine.observer import JobFault, JobStopped, SilentObserver


class Result:
    """An ingest's summary and every file's outcome, as a test wants to look at them."""

    def __init__(self, summary, journal):
        self.summary, self.outcomes = summary, [journal.records[i] for i in sorted(journal.records)]
        self.class_counts = summary.class_counts
        self.channels, self.height, self.width = summary.channels, summary.height, summary.width


def write(tmp_path, data: bytes, name="upload.zip"):
    folder = tmp_path / "upload"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder


def run(upload, dest, limits=IngestLimits(), observer=None, journal=None, labels_from="folders", processes=0):
    journal = journal or MemoryJournal()
    options = IngestOptions(deidentifier=None, labels_from=labels_from, limits=limits, processes=processes)
    return Result(ingest_upload(upload, dest, options, observer or SilentObserver(), journal), journal)


def ingest(tmp_path, entries, limits=IngestLimits()):
    return run(write(tmp_path, make_zip(entries)), tmp_path / "dataset", limits)


def outcome_of(result, path):
    return next(o for o in result.outcomes if o.path == path)


def test_good_archive_becomes_samples_and_cache(tmp_path):
    entries = demo_entries(per_class=5)
    result = ingest(tmp_path, entries)
    assert result.class_counts == {"lesion": 5, "normal": 5}
    assert (result.channels, result.height, result.width) == (1, 64, 64)
    cache = np.load(tmp_path / "dataset" / CACHE_FILE, mmap_mode="r")
    assert cache.shape == (10, 1, 64, 64)
    for sample in result.summary.samples:
        original = np.asarray(Image.open(io.BytesIO(entries[sample.source_path.removeprefix("demo/")])))
        assert np.array_equal(cache[sample.cache_index, 0], original)
        assert np.array_equal(np.load(tmp_path / "dataset" / sample.array), original)
    assert all(o.status == ACCEPTED for o in result.outcomes), "every file is in the report, good ones too"


def test_a_wrapping_folder_is_not_taken_as_the_label(tmp_path):
    entries = {f"study/{name}": data for name, data in demo_entries(per_class=2).items()}
    assert ingest(tmp_path, entries).class_counts == {"lesion": 2, "normal": 2}


def test_corrupt_and_truncated_pngs_are_reported_and_good_files_still_come_in(tmp_path):
    entries = demo_entries(per_class=3)
    good = entries["lesion/lesion_000.png"]
    entries["lesion/truncated.png"] = good[: len(good) // 2]
    entries["normal/garbage.png"] = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10
    result = ingest(tmp_path, entries)
    assert result.class_counts == {"lesion": 3, "normal": 3}
    for path in ("lesion/truncated.png", "normal/garbage.png"):
        outcome = outcome_of(result, path)
        assert outcome.status == REJECTED
        assert "corrupt or truncated" in outcome.reason or "not a recognised image" in outcome.reason


@pytest.mark.parametrize("name, reason", [
    ("../escape.png", "leaves the archive"),
    ("lesion/../../escape.png", "leaves the archive"),
    ("/etc/escape.png", "absolute path"),
])
def test_unsafe_paths_are_never_written(tmp_path, name, reason):
    entries = demo_entries(per_class=2)
    entries[name] = entries["lesion/lesion_000.png"][:-1] + b"\x00"
    result = ingest(tmp_path, entries)
    outcome = outcome_of(result, name)
    assert outcome.status == REJECTED and reason in outcome.reason
    written = {p.name for p in tmp_path.rglob("*")}
    assert "escape.png" not in written and not any("escape" in w for w in written)
    assert result.class_counts == {"lesion": 2, "normal": 2}


def test_symbolic_links_nested_archives_and_loose_files_are_rejected(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in demo_entries(per_class=2).items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("lesion/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("normal/inner.zip", make_zip({"a/b.png": b"x"}))
        archive.writestr("loose.png", demo_entries(per_class=1)["normal/normal_000.png"])
        archive.writestr("__MACOSX/lesion/._x.png", b"junk")
        archive.writestr("normal/empty.png", b"")
    result = run(write(tmp_path, buffer.getvalue()), tmp_path / "d")
    reasons = {o.path: (o.status, o.reason) for o in result.outcomes}
    assert reasons["lesion/link.png"][0] == REJECTED and "symbolic link" in reasons["lesion/link.png"][1]
    assert "archive inside an archive" in reasons["normal/inner.zip"][1]
    # A file outside any class folder comes in unlabelled (a table can label it later).
    assert reasons["loose.png"][0] == ACCEPTED
    assert reasons["__MACOSX/lesion/._x.png"][0] == SKIPPED
    assert "empty file" in reasons["normal/empty.png"][1]
    assert result.class_counts == {"": 1, "lesion": 2, "normal": 2}


def test_duplicates_by_content_are_reported(tmp_path):
    entries = demo_entries(per_class=2)
    entries["normal/copy.png"] = entries["normal/normal_000.png"]
    outcome = outcome_of(ingest(tmp_path, entries), "normal/copy.png")
    assert outcome.status == REJECTED and "duplicate of normal/normal_000.png" in outcome.reason


def test_zip_bomb_by_ratio_is_rejected(tmp_path):
    entries = demo_entries(per_class=2)
    entries["lesion/bomb.png"] = b"\x00" * (8 * 1024**2)
    outcome = outcome_of(ingest(tmp_path, entries), "lesion/bomb.png")
    assert outcome.status == REJECTED and "zip bomb" in outcome.reason


def test_size_and_count_limits(tmp_path):
    entries = demo_entries(per_class=3)
    limits = IngestLimits(max_entry_bytes=100)
    assert all(o.status == REJECTED and "larger than" in o.reason for o in ingest(tmp_path, entries, limits).outcomes)
    with pytest.raises(ArchiveError, match="limit is 2"):
        ingest(tmp_path, entries, IngestLimits(max_entries=2))


def test_not_a_zip_and_empty_zip_are_refused_as_a_whole(tmp_path):
    with pytest.raises(ArchiveError, match="not a zip archive"):
        inspect_upload(write(tmp_path / "a", b"just some text"), "folders")
    with pytest.raises(ArchiveError, match="holds no files"):
        inspect_upload(write(tmp_path / "b", make_zip({})), "folders")


def test_inspection_counts_good_images_and_lists_problems(tmp_path):
    entries = demo_entries(per_class=2)
    entries["normal/bad.png"] = b"nonsense"
    inspection = inspect_upload(write(tmp_path, make_zip(entries)), "folders")
    assert inspection.inspected_all and inspection.images_ok == 4
    assert [p.path for p in inspection.problems] == ["normal/bad.png"]


def test_colour_16_bit_and_odd_sizes_are_normalised_in_the_cache(tmp_path):
    rng = np.random.default_rng(1)
    entries = demo_entries(per_class=2)
    entries["lesion/colour.png"] = png_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    sixteen = io.BytesIO()
    Image.fromarray(rng.integers(0, 65535, (32, 32), dtype=np.uint16)).save(sixteen, format="PNG")
    entries["normal/sixteen.png"] = sixteen.getvalue()
    result = ingest(tmp_path, entries)
    assert result.channels == 3 and (result.height, result.width) == (64, 64)
    assert "shape 32x32 differs from most images (64x64)" in result.summary.notes["normal/sixteen.png"]
    assert outcome_of(result, "normal/sixteen.png").status == ACCEPTED
    assert np.load(tmp_path / "dataset" / CACHE_FILE).shape == (6, 3, 64, 64)
    sixteen_sample = next(s for s in result.summary.samples if s.source_path == "normal/sixteen.png")
    assert sixteen_sample.dtype == "uint16", "the stored pixels keep their 16 bits; only the cache is 8-bit"


def test_stop_request_aborts_the_ingest(tmp_path):
    class StopAtOnce(SilentObserver):
        def should_stop(self):
            return True

    with pytest.raises(JobStopped):
        run(write(tmp_path, make_zip(demo_entries(2))), tmp_path / "d", observer=StopAtOnce())


def test_a_resumed_ingest_reads_only_what_is_left_and_ends_the_same(tmp_path):
    upload = write(tmp_path, make_zip(demo_entries(per_class=30)))
    whole = run(upload, tmp_path / "whole")

    class DiesAfter(SilentObserver):
        """Raises part-way, as a killed worker would stop, after the journal has some batches."""

        def __init__(self, calls):
            self.calls = calls

        def should_stop(self):
            self.calls -= 1
            if self.calls < 0:
                raise KeyboardInterrupt
            return False

    journal = MemoryJournal()
    job.JOURNAL_EVERY_FILES = 10
    try:
        with pytest.raises(KeyboardInterrupt):
            run(upload, tmp_path / "resumed", observer=DiesAfter(35), journal=journal)
        done_before = len(journal.records)
        assert 0 < done_before < 60
        read = []
        original = job.process_entry
        job.process_entry = lambda entry, *args: read.append(entry.path) or original(entry, *args)
        resumed = run(upload, tmp_path / "resumed", journal=journal)
    finally:
        job.JOURNAL_EVERY_FILES = 200
        job.process_entry = original
    assert len(read) == 60 - done_before, "journalled files are not read again"
    assert [s.source_path for s in resumed.summary.samples] == [s.source_path for s in whole.summary.samples]
    assert resumed.class_counts == whole.class_counts == {"lesion": 30, "normal": 30}
    assert np.array_equal(np.load(tmp_path / "resumed" / CACHE_FILE), np.load(tmp_path / "whole" / CACHE_FILE))
    assert not list((tmp_path / "resumed").rglob("*.part")), "no half-written file under any name"


def test_many_loose_files_and_a_zip_in_one_upload(tmp_path):
    upload = tmp_path / "upload"
    entries = demo_entries(per_class=2)
    for name, data in entries.items():
        (upload / "scans" / name).parent.mkdir(parents=True, exist_ok=True)
        (upload / "scans" / name).write_bytes(data)
    (upload / "more.zip").write_bytes(make_zip({f"lesion/extra_{k}.png": png_bytes(np.full((64, 64), k * 9, np.uint8)) for k in range(3)}))
    result = run(upload, tmp_path / "d")
    assert result.class_counts == {"lesion": 5, "normal": 2}
    assert {o.path for o in result.outcomes} >= {"more.zip/lesion/extra_0.png", "scans/lesion/lesion_000.png"}


def read_chunk_noting_the_process(indices, *args):
    """Stands in for job.read_chunk in pool processes (they are forked after the patch)."""
    records = ORIGINAL_READ_CHUNK(indices, *args)
    for record in records:
        record.reason = f"{record.reason}|pid={os.getpid()}"
    return records


ORIGINAL_READ_CHUNK = job.read_chunk


def test_a_pool_of_processes_reads_an_upload_exactly_as_one_process_does(tmp_path, monkeypatch):
    upload = tmp_path / "upload"
    entries = demo_entries(per_class=40)
    entries["lesion/copy_of_first.png"] = entries["lesion/lesion_000.png"]  # a duplicate in a later chunk
    entries["normal/broken.png"] = b"\x89PNG\r\n\x1a\n broken"
    (upload / "part2.zip").parent.mkdir(parents=True)
    (upload / "part2.zip").write_bytes(make_zip(dict(list(entries.items())[40:])))
    for name, data in list(entries.items())[:40]:
        (upload / "loose" / name).parent.mkdir(parents=True, exist_ok=True)
        (upload / "loose" / name).write_bytes(data)
    alone = run(upload, tmp_path / "alone", processes=1)
    monkeypatch.setattr(job, "read_chunk", read_chunk_noting_the_process)
    pooled = run(upload, tmp_path / "pooled", processes=2)
    readers = {o.reason.rsplit("pid=", 1)[1] for o in pooled.outcomes if "pid=" in o.reason}
    assert len(readers) == 2 and str(os.getpid()) not in readers, "two pool processes did the reading"
    for a, b in zip(alone.outcomes, pooled.outcomes, strict=True):
        assert (a.index, a.path, a.status, a.reason) == (b.index, b.path, b.status, b.reason.split("|pid=", 1)[0])
    assert "duplicate of loose/lesion/lesion_000.png" in outcome_of(pooled, "part2.zip/lesion/copy_of_first.png").reason
    assert [s.source_path for s in pooled.summary.samples] == [s.source_path for s in alone.summary.samples]
    assert np.array_equal(np.load(tmp_path / "pooled" / CACHE_FILE), np.load(tmp_path / "alone" / CACHE_FILE))
    duplicate_index = outcome_of(pooled, "part2.zip/lesion/copy_of_first.png").index
    assert not (tmp_path / "pooled" / f"arrays/{duplicate_index:07d}.npy").exists(), "a duplicate's array is removed"


# ----------------------------------------------------------- the per-file guard


def crash_or_raise_on(names: dict[str, BaseException | str], original):
    """Stands in for job.decode: files named in `names` raise what is given, or die ('SIGSEGV');
    a pool forked after the patch inherits it."""
    def decode(entry, data, options, **how):
        what = names.get(entry.path.rsplit("/", 1)[-1])
        if what == "SIGSEGV":
            segfault()
        if what is not None:
            raise what
        return original(entry, data, options, **how)
    return decode


def upload_of(tmp_path, per_class=40, extra=()):
    entries = demo_entries(per_class=per_class)
    for name in extra:
        entries[f"normal/{name}"] = png_bytes(np.full((64, 64), 3 + len(entries) % 250, np.uint8))
    return write(tmp_path, make_zip(entries)), entries


@pytest.mark.parametrize("processes", [1, 2])
def test_whatever_one_file_raises_is_its_outcome_and_the_others_come_in(tmp_path, monkeypatch, processes):
    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 16)
    upload, entries = upload_of(tmp_path, per_class=20, extra=["type_error.png", "memory_error.png", "os_error.png"])
    monkeypatch.setattr(job, "decode", crash_or_raise_on({
        "type_error.png": TypeError("encoding without a string argument"), "memory_error.png": MemoryError(),
        "os_error.png": PermissionError(13, "Permission denied")}, job.decode))
    result = run(upload, tmp_path / "d", processes=processes)
    assert outcome_of(result, "normal/type_error.png").status == REJECTED
    assert outcome_of(result, "normal/type_error.png").reason == \
        "the file could not be ingested (TypeError: encoding without a string argument)"
    assert outcome_of(result, "normal/memory_error.png").reason == "the file could not be ingested (MemoryError)"
    assert "(PermissionError: [Errno 13] Permission denied)" in outcome_of(result, "normal/os_error.png").reason
    assert result.class_counts == {"lesion": 20, "normal": 20}
    assert not list((tmp_path / "d" / "arrays").glob(f"{outcome_of(result, 'normal/type_error.png').index:07d}*"))


@pytest.mark.parametrize("processes", [1, 2])
def test_a_full_disk_ends_the_job_with_a_fault_that_says_what_to_do(tmp_path, monkeypatch, processes):
    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 16)
    upload, _ = upload_of(tmp_path, per_class=20)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(JobFault, match="The disk holding the datasets is full; free space and upload again."):
        run(upload, tmp_path / "d", processes=processes)


def test_an_interrupt_is_never_taken_for_a_file_fault(tmp_path, monkeypatch):
    upload, _ = upload_of(tmp_path, per_class=2, extra=["interrupt.png"])
    monkeypatch.setattr(job, "decode", crash_or_raise_on({"interrupt.png": KeyboardInterrupt()}, job.decode))
    with pytest.raises(KeyboardInterrupt):
        run(upload, tmp_path / "d", processes=1)


def test_a_file_that_kills_its_reader_process_is_rejected_and_the_job_goes_on(tmp_path, monkeypatch):
    """A segfault in a C decoder breaks the pool: the files in flight are read again one at a time,
    each in a process of its own; the one that kills it is rejected, a new pool reads the rest."""
    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 16)
    upload, _ = upload_of(tmp_path, per_class=40, extra=["crash_early.png"])
    (upload / "late").mkdir()
    (upload / "late" / "crash_late.png").write_bytes(png_bytes(np.full((64, 64), 200, np.uint8)))
    monkeypatch.setattr(job, "decode", crash_or_raise_on({"crash_early.png": "SIGSEGV", "crash_late.png": "SIGSEGV"}, job.decode))
    result = run(upload, tmp_path / "d", processes=2)
    for path in ("upload.zip/normal/crash_early.png", "late/crash_late.png"):
        outcome = outcome_of(result, path)
        assert (outcome.status, outcome.reason) == (REJECTED, "the image decoder crashed on this file (the process died: signal 11)")
    assert result.class_counts == {"lesion": 40, "normal": 40}
    assert sum(o.status == ACCEPTED for o in result.outcomes) == 80


def segfault():
    faulthandler.disable()  # the crash is the test's own: no traceback dump
    os.kill(os.getpid(), signal.SIGSEGV)


def cache_pixels_failing_on_value(value):
    original = job.cache_pixels

    def cache_pixels(pixels, meta, shape):
        if pixels.flat[0] == value:
            segfault()
        if pixels.flat[0] == value + 1:
            raise ValueError("cannot cast")
        return original(pixels, meta, shape)
    return cache_pixels


@pytest.mark.parametrize("processes", [1, 2])
def test_an_image_whose_cache_row_fails_is_left_out_and_the_rows_stay_dense(tmp_path, monkeypatch, processes):
    monkeypatch.setattr(pool, "PARALLEL_MIN_FILES", 16)
    entries = demo_entries(per_class=20)
    entries["lesion/cannot_cache.png"] = png_bytes(np.full((64, 64), 251, np.uint8))
    if processes > 1:  # a crash is only survivable in a pool process
        entries["lesion/crashes_cache.png"] = png_bytes(np.full((64, 64), 250, np.uint8))
    monkeypatch.setattr(job, "cache_pixels", cache_pixels_failing_on_value(250))
    result = run(write(tmp_path, make_zip(entries)), tmp_path / "d", processes=processes)
    left_out = outcome_of(result, "lesion/cannot_cache.png")
    assert (left_out.status, left_out.reason) == (REJECTED, "the training cache could not be filled from this image (ValueError: cannot cast)")
    if processes > 1:
        assert outcome_of(result, "lesion/crashes_cache.png").reason == \
            "the training cache could not be filled from this image (the process died: signal 11)"
    assert result.class_counts == {"lesion": 20, "normal": 20}
    assert sorted(s.cache_index for s in result.summary.samples) == list(range(40))
    cache = np.load(tmp_path / "d" / CACHE_FILE)
    assert cache.shape == (40, 1, 64, 64)
    for sample in result.summary.samples:
        assert np.array_equal(cache[sample.cache_index, 0], np.load(tmp_path / "d" / sample.array)), "each row is its own image"
    assert not (tmp_path / "d" / f"arrays/{left_out.index:07d}.npy").exists()


def test_a_series_that_cannot_be_stacked_is_rejected_whole_and_other_series_come_in(tmp_path, monkeypatch):
    files = {f"a/{name}": data for name, data in series(3, patient_id="A").items()}
    files.update({f"b/{name}": data for name, data in series(4, patient_id="B").items()})
    original = job.stack_slices

    def stack_slices(slices, path):
        if len(slices) == 4:
            raise OSError(errno.EIO, "Input/output error")
        return original(slices, path)

    monkeypatch.setattr(job, "stack_slices", stack_slices)
    result = run(write_files(tmp_path, files), tmp_path / "d", labels_from="none")
    assert [len(s.files) for s in result.summary.samples] == [3]
    for k in range(4):
        outcome = outcome_of(result, f"b/slice_{k:03d}.dcm")
        assert (outcome.status, outcome.reason) == (
            REJECTED, "the series could not be stacked into a volume (OSError: [Errno 5] Input/output error)")
    assert not list((tmp_path / "d").rglob("*.part"))


def test_a_mask_that_cannot_be_made_into_labels_is_rejected_and_its_image_stays(tmp_path, monkeypatch):
    image = np.zeros((16, 16), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    files = {"images/a.png": png_bytes(image), "masks/a.png": png_bytes(mask),
             "images/b.png": png_bytes(image + 1), "masks/b.png": png_bytes(mask // 255)}
    original = job.store_labels

    def store_labels(path, *how):
        if np.load(path).max() == 255:
            raise TypeError("no loop matching the specified signature")
        return original(path, *how)

    monkeypatch.setattr(job, "store_labels", store_labels)
    result = run(write_files(tmp_path, files), tmp_path / "d")
    samples = {s.source_path: s for s in result.summary.samples}
    assert samples["images/a.png"].mask == "" and samples["images/b.png"].mask
    assert outcome_of(result, "masks/a.png").reason == \
        "the mask's values could not be made into labels (TypeError: no loop matching the specified signature)"
    assert result.summary.task == "segmentation"


def test_reader_processes_that_keep_dying_for_no_file_end_the_job(tmp_path):
    """Every pool process dies at its first item, yet each item read alone comes through: the cause
    is not a file (the machine kills them), and after a few tries the job ends with JobFault."""
    upload, _ = upload_of(tmp_path, per_class=8)
    with upload_entries(upload) as entries:
        readers = pool.ReaderPool(upload, IngestLimits(), 2, entries)
        try:
            with pytest.raises(JobFault, match="kept dying"):
                list(readers.map(die_in_pool_processes, [[i] for i in range(16)], (), crashed=lambda item, how: how))
        finally:
            readers.close()


def die_in_pool_processes(chunk):
    if "stack" in pool._opened:  # set only in pool processes, not in single-use ones
        os.kill(os.getpid(), signal.SIGKILL)
    return chunk


def write_files(tmp_path, files: dict[str, bytes]):
    upload = tmp_path / "upload"
    for name, data in files.items():
        (upload / name).parent.mkdir(parents=True, exist_ok=True)
        (upload / name).write_bytes(data)
    return upload

"""The engine's archive ingest: good files come in, every bad one gets a reason."""
import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import demo_entries, make_zip, png_bytes
from workers.engine.ingest import (
    ACCEPTED,
    CACHE_FILE,
    REJECTED,
    SKIPPED,
    ArchiveError,
    IngestLimits,
    ingest_archive,
    inspect_archive,
)
from workers.engine.observer import JobStopped, SilentObserver


def write(tmp_path, data: bytes, name="upload.zip"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def ingest(tmp_path, entries, limits=IngestLimits()):
    return ingest_archive(write(tmp_path, make_zip(entries)), tmp_path / "dataset", SilentObserver(), limits)


def outcome_of(result, path):
    return next(o for o in result.outcomes if o.path == path)


def test_good_archive_becomes_samples_and_cache(tmp_path):
    result = ingest(tmp_path, demo_entries(per_class=5))
    assert result.class_counts == {"lesion": 5, "normal": 5}
    assert (result.channels, result.height, result.width) == (1, 64, 64)
    cache = np.load(tmp_path / "dataset" / CACHE_FILE, mmap_mode="r")
    assert cache.shape == (10, 1, 64, 64)
    first = result.accepted[0]
    original = np.asarray(Image.open(tmp_path / "dataset" / first.original))
    assert np.array_equal(cache[first.cache_index, 0], original)
    assert (tmp_path / "dataset" / first.thumbnail).exists()


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
    result = ingest_archive(write(tmp_path, buffer.getvalue()), tmp_path / "d", SilentObserver())
    reasons = {o.path: (o.status, o.reason) for o in result.outcomes}
    assert reasons["lesion/link.png"][0] == REJECTED and "symbolic link" in reasons["lesion/link.png"][1]
    assert "archive inside the archive" in reasons["normal/inner.zip"][1]
    assert "class folder" in reasons["loose.png"][1]
    assert reasons["__MACOSX/lesion/._x.png"][0] == SKIPPED
    assert "empty file" in reasons["normal/empty.png"][1]
    assert result.class_counts == {"lesion": 2, "normal": 2}


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
        inspect_archive(write(tmp_path, b"just some text"))
    with pytest.raises(ArchiveError, match="empty"):
        inspect_archive(write(tmp_path, make_zip({})))


def test_inspection_counts_good_images_and_lists_problems(tmp_path):
    entries = demo_entries(per_class=2)
    entries["normal/bad.png"] = b"nonsense"
    inspection = inspect_archive(write(tmp_path, make_zip(entries)))
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
    assert "resized from 32x32" in outcome_of(result, "normal/sixteen.png").reason
    assert outcome_of(result, "normal/sixteen.png").status == ACCEPTED
    assert np.load(tmp_path / "dataset" / CACHE_FILE).shape == (6, 3, 64, 64)


def test_stop_request_aborts_the_ingest(tmp_path):
    class StopAtOnce(SilentObserver):
        def should_stop(self):
            return True

    with pytest.raises(JobStopped):
        ingest_archive(write(tmp_path, make_zip(demo_entries(2))), tmp_path / "d", StopAtOnce())

"""Ingest rate of folders of DICOM files against a bare pydicom loop over the same files.

Prints JSON. Target (issue 4): the full ingest (checks, decode, de-identification, de-identified
copy and pixels written, journal, series assembly, training cache) runs at least half as fast as
`pydicom.dcmread(f).pixel_array` alone over the same files.

Two folders: many tiny 2D images (128x128, each its own series: per-file overhead at its worst)
and CT series of 512x512 slices (the usual "folder of small DICOM files"). Bare loop and ingest
alternate for several rounds in this one process, and the median of the per-round ratios is
reported: this machine's speed drifts by 2x within a minute, so a single pair says little (and
every timing starts after a sync, so none pays for the write-back of the one before). The
ingest uses one process per core, as the worker does; `single_process_ratio` shows the same
ingest held to one process.

Usage: python bench/dicom_ingest.py [tiny_files] [rounds]   (BENCH_SMOKE=1: 20 tiny files, a CT series of 8 slices, 1 round)
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, size  # noqa: E402
from tests.medical import dicom_bytes  # noqa: E402
from workers.engine.ingest import IngestOptions, MemoryJournal, ingest_upload  # noqa: E402
from workers.engine.ingest.deid import Deidentifier  # noqa: E402
from workers.engine.observer import SilentObserver  # noqa: E402

TINY_FILES = int(sys.argv[1]) if len(sys.argv) > 1 else size(1000, 20)
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else size(3, 1)
CT_SERIES, CT_SLICES = size((3, 100), (1, 8))


def write_tiny(folder: Path, rng) -> None:
    for k in range(TINY_FILES):  # like small CR/DX exports
        pixels = rng.integers(0, 4000, (128, 128), dtype=np.int16)
        (folder / f"case_{k:05d}.dcm").write_bytes(dicom_bytes(pixels, patient_id=f"MRN-{k % 50}", position=(0, 0, k)))


def write_ct(folder: Path, rng) -> None:
    from pydicom.uid import generate_uid
    for s in range(CT_SERIES):
        series, study = generate_uid(), generate_uid()
        for k in range(CT_SLICES):  # file names in random order: the ingest orders by position
            pixels = rng.integers(-1000, 2000, (512, 512), dtype=np.int16)
            name = f"IM{rng.integers(1e9):010d}.dcm"
            (folder / f"series{s}" / name).write_bytes(dicom_bytes(
                pixels, patient_id=f"MRN-{s}", series_uid=series, study_uid=study, position=(0, 0, k * 2.5), instance=k + 1))


def bare_loop(files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        pydicom.dcmread(f).pixel_array
    return time.perf_counter() - start


def ingest(upload: Path, dest: Path, processes: int) -> tuple[float, int]:
    options = IngestOptions(deidentifier=Deidentifier(b"b" * 32), labels_from="none", processes=processes)
    start = time.perf_counter()
    summary = ingest_upload(upload, dest, options, SilentObserver(), MemoryJournal())
    return time.perf_counter() - start, len(summary.samples)


def measure(name: str, upload: Path, work: Path, processes: int = 0) -> dict:
    files = sorted(p for p in upload.rglob("*.dcm"))
    ratios, bare_times, ingest_times = [], [], []
    for round_ in range(ROUNDS):
        os.sync()  # each timing starts with no write-back pending from the one before
        bare = bare_loop(files)
        os.sync()
        took, samples = ingest(upload, work / f"{name}-{processes}-{round_}", processes)
        ratios.append(bare / took)
        bare_times.append(bare)
        ingest_times.append(took)
    return {
        "files": len(files), "samples": samples, "rounds": ROUNDS,
        "bare_loop_files_per_s": round(len(files) / statistics.median(bare_times), 1),
        "ingest_files_per_s": round(len(files) / statistics.median(ingest_times), 1),
        "ratios": [round(r, 3) for r in ratios], "ingest_rate_ratio": round(statistics.median(ratios), 3),
    }


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny, ct = root / "tiny" / "scans", root / "ct" / "scans"
        tiny.mkdir(parents=True)
        for s in range(CT_SERIES):
            (ct / f"series{s}").mkdir(parents=True)
        write_tiny(tiny, rng)
        write_ct(ct, rng)
        results = {
            "tiny_images": measure("tiny", tiny.parent, root),
            "ct_series": measure("ct", ct.parent, root),
        }
        results["tiny_images"]["single_process_ratio"] = measure("tiny", tiny.parent, root, processes=1)["ingest_rate_ratio"]
    results["target_ratio"] = 0.5
    results["meets_target"] = all(results[case]["ingest_rate_ratio"] >= 0.5 for case in ("tiny_images", "ct_series"))
    report("dicom_ingest", results)


if __name__ == "__main__":
    main()

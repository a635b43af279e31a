"""Ingest rate of a folder of small DICOM files against a bare pydicom loop over the same files.

Prints JSON. Target (issue 4): ingest_rate_ratio >= 0.5, i.e. the full ingest (checks, decode,
de-identification, de-identified original + pixels written, journal, assembly, cache) runs at least
half as fast as `pydicom.dcmread(f).pixel_array` alone. Both are timed in this one process.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.medical import dicom_bytes  # noqa: E402
from workers.engine.ingest import IngestOptions, MemoryJournal, ingest_upload  # noqa: E402
from workers.engine.ingest.deid import Deidentifier  # noqa: E402
from workers.engine.observer import SilentObserver  # noqa: E402

FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / "upload" / "scans"
        upload.mkdir(parents=True)
        for k in range(FILES):  # 2D images of their own series, 128x128 16-bit, like small CR/DX exports
            pixels = rng.integers(0, 4000, (128, 128), dtype=np.int16)
            (upload / f"case_{k:05d}.dcm").write_bytes(dicom_bytes(pixels, patient_id=f"MRN-{k % 50}", position=(0, 0, k)))
        files = sorted(upload.iterdir())
        start = time.perf_counter()
        for f in files:
            pydicom.dcmread(f).pixel_array
        bare = time.perf_counter() - start
        options = IngestOptions(deidentifier=Deidentifier(b"b" * 32), labels_from="none")
        start = time.perf_counter()
        summary = ingest_upload(upload.parent, Path(tmp) / "dataset", options, SilentObserver(), MemoryJournal())
        ingest = time.perf_counter() - start
    print(json.dumps({
        "files": FILES, "samples": len(summary.samples),
        "bare_loop_files_per_s": round(FILES / bare, 1), "ingest_files_per_s": round(FILES / ingest, 1),
        "ingest_rate_ratio": round(bare / ingest, 3), "target_ratio": 0.5,
    }))


if __name__ == "__main__":
    main()

"""Memory while a 2 GB upload comes in through the API and is ingested; prints JSON.

Target (issue 4): peak memory grows by less than 500 MB while a 2 GB upload is ingested, and
the upload itself is streamed to disk (memory stays flat).

The upload is a zip of CT series (512x512 16-bit slices, stored uncompressed as PACS exports
are), sent to POST /api/datasets/ through Django's WSGI handler with a request body read from
disk in 64 KB pieces, as a web server hands it over. The ingest is the worker's own job
(workers.ingest.INGEST) on that dataset, its pool of reader processes included. Each phase
runs in a fresh process against a throw-away SQLite database and storage folder. Its growth is
the peak resident memory (VmHWM, reset once Django is set up and a first small request or
decode has loaded what it imports) minus the resident memory at that point. For the ingest, the
pool processes' peaks above the worker's baseline are added, and a cruder upper bound counts
their whole resident size (most of it pages shared with the worker they were forked from).

Usage: python bench/upload_memory.py [gigabytes]   (default 2; BENCH_SMOKE=1: 0.01)
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import report, size  # noqa: E402

SLICES_PER_SERIES = 500
BOUNDARY = "----bench-upload-boundary"
TARGET_MB = 500


# ----------------------------------------------------------------- the driver


def make_upload(path: Path, gigabytes: float) -> int:
    """A zip of CT series, written a slice at a time; returns the number of slices."""
    from pydicom.uid import generate_uid

    from tests.medical import dicom_bytes

    slice_bytes = len(dicom_bytes(np.zeros((512, 512), np.int16)))
    count = int(gigabytes * 1024**3 // slice_bytes)
    rng = np.random.default_rng(0)
    base = rng.integers(-1000, 1500, (512, 512), dtype=np.int16)  # varied pixels, cheap to make
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for k in range(count):
            series, slice_ = divmod(k, SLICES_PER_SERIES)
            if slice_ == 0:
                series_uid, study_uid = generate_uid(), generate_uid()
            pixels = np.roll(base, k, axis=0)
            archive.writestr(f"scans/series{series:02d}/IM{slice_:05d}.dcm", dicom_bytes(
                pixels, patient_id=f"MRN-{series}", series_uid=series_uid, study_uid=study_uid,
                position=(0, 0, slice_ * 1.25), instance=slice_ + 1))
    return count


def run_phase(phase: str, argument: str, env: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--phase", phase, argument], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{phase} phase failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(gigabytes: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-upload-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None) as tmp:
        folder = Path(tmp)
        upload = folder / "ct-export.zip"
        start = time.perf_counter()
        slices = make_upload(upload, gigabytes)
        made = time.perf_counter() - start
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}", "TOOLKIT_VAR_DIR": str(folder / "var"),
               "TOOLKIT_STORAGE_DIR": str(folder / "storage"), "DJANGO_SETTINGS_MODULE": "webapp.settings"}
        env.pop("REDIS_URL", None)  # the job is run here, not by a worker: the queue only has to accept it
        uploaded = run_phase("upload", str(upload), env)
        ingested = run_phase("ingest", str(uploaded.pop("dataset_id")), env)
    report("upload_memory", {
        "upload_bytes": upload_size_hint(gigabytes), "slices": slices, "seconds_to_make_upload": round(made, 1),
        "upload": uploaded, "ingest": ingested, "target_growth_mb": TARGET_MB,
        "meets_target": uploaded["peak_growth_mb"] < TARGET_MB and ingested["peak_growth_mb"] < TARGET_MB,
    })


def upload_size_hint(gigabytes: float) -> int:
    return int(gigabytes * 1024**3)


# ---------------------------------------------------------------- the phases


def rss_mb(field: str, pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> float:
    """Resets VmHWM to the current resident size (Linux 4.0+) and returns that size."""
    Path("/proc/self/clear_refs").write_text("5")
    return rss_mb("VmRSS")


class MultipartBody:
    """A multipart/form-data request body streamed from disk, read as a WSGI server would."""

    def __init__(self, fields: dict[str, str], file_field: str, path: Path):
        head = "".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n" for k, v in fields.items())
        head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{path.name}\"\r\n"
                 "Content-Type: application/zip\r\n\r\n")
        self.parts = [head.encode(), path, f"\r\n--{BOUNDARY}--\r\n".encode()]
        self.length = len(self.parts[0]) + path.stat().st_size + len(self.parts[2])
        self.handle = None
        self.index = 0

    def read(self, size: int = -1) -> bytes:
        size = 64 * 1024 if size is None or size < 0 else min(size, 64 * 1024)
        while self.index < len(self.parts):
            part = self.parts[self.index]
            if isinstance(part, Path):
                self.handle = self.handle or open(part, "rb")
                chunk = self.handle.read(size)
                if chunk:
                    return chunk
                self.handle.close()
                self.index += 1
                continue
            chunk, rest = part[:size], part[size:]
            self.parts[self.index] = rest
            if not rest:
                self.index += 1
            if chunk:
                return chunk
        return b""

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def setup_django():
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def upload_phase(path: str) -> dict:
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.handlers.wsgi import WSGIHandler
    from rest_framework.authtoken.models import Token

    from backend.projects.models import Project

    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    project = Project.objects.create(owner=user, name="Bench")
    token = Token.objects.create(user=user)
    handler = WSGIHandler()
    # A first, small upload: the server's imports (views, decoders) load once, not per upload.
    small = Path(path).with_name("warm-up.zip")
    make_upload(small, 0.002)
    post_upload(handler, MultipartBody({"project": str(project.pk), "name": "warm-up"}, "files", small), token.key)
    body = MultipartBody({"project": str(project.pk), "name": "CT export"}, "files", Path(path))
    baseline = reset_peak()
    start = time.perf_counter()
    content = post_upload(handler, body, token.key)
    took = time.perf_counter() - start
    return {"dataset_id": json.loads(content)["id"], "seconds": round(took, 1), "baseline_mb": round(baseline, 1),
            "peak_growth_mb": round(rss_mb("VmHWM") - baseline, 1),
            "megabytes_per_s": round(body.length / 1024**2 / took, 1)}


def post_upload(handler, body: MultipartBody, token: str) -> bytes:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/datasets/", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "wsgi.url_scheme": "http", "wsgi.input": body, "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(body.length),
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}", "HTTP_AUTHORIZATION": f"Token {token}",
        "HTTP_HOST": "localhost",
    }
    statuses = []
    content = b"".join(handler(environ, lambda status, headers: statuses.append(status)))
    if not statuses[0].startswith("202"):
        raise SystemExit(f"upload refused: {statuses[0]} {content[:500]!r}")
    return content


def ingest_phase(dataset_id: str) -> dict:
    setup_django()
    import threading

    from backend.datasets.models import Dataset
    from tests.medical import dicom_bytes
    from workers.engine.ingest.deid import Deidentifier
    from workers.engine.ingest.dicom import read_dicom
    from workers.ingest import INGEST

    read_dicom(dicom_bytes(np.zeros((8, 8), np.int16)), Deidentifier(b"w" * 32))  # decoders load once, not per ingest
    pool_peaks: dict[str, float] = {}
    done = threading.Event()

    def watch_pool():
        # The pool's processes are this process's children; sample their peaks until the job ends.
        while not done.wait(0.2):
            for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
                try:
                    pool_peaks[child] = max(pool_peaks.get(child, 0.0), rss_mb("VmHWM", child))
                except (FileNotFoundError, ProcessLookupError):
                    pass

    baseline = reset_peak()
    watcher = threading.Thread(target=watch_pool, daemon=True)
    watcher.start()
    start = time.perf_counter()
    INGEST.run(int(dataset_id), "bench")
    took = time.perf_counter() - start
    done.set()
    watcher.join()
    dataset = Dataset.objects.get(pk=dataset_id)
    if dataset.status != "ready":
        raise SystemExit(f"ingest ended {dataset.status}: {dataset.message}")
    worker_growth = rss_mb("VmHWM") - baseline
    pool_growth = sum(max(peak - baseline, 0.0) for peak in pool_peaks.values())
    return {"samples": dataset.sample_count, "seconds": round(took, 1), "baseline_mb": round(baseline, 1),
            "worker_growth_mb": round(worker_growth, 1), "pool_processes": len(pool_peaks),
            "pool_peak_rss_mb": [round(v, 1) for v in pool_peaks.values()],
            "peak_growth_mb": round(worker_growth + pool_growth, 1),
            "growth_counting_pool_processes_whole_mb": round(worker_growth + sum(pool_peaks.values()), 1)}


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--phase":
        phase = {"upload": upload_phase, "ingest": ingest_phase}[sys.argv[2]]
        print(json.dumps(phase(sys.argv[3])))
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else size(2.0, 0.01))

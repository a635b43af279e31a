"""A real worker ingests uploads where files fail at every step: the good files come in, each bad one
is rejected with its reason, and the dataset is ready.

The worker is another process, so the faults are made with files (and, for the steps no file can
make fail any more, with obstacles in the dataset's folder), never with patches.
"""
import gzip
import io
import struct
import zipfile

import nibabel as nib
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.datasets.models import Dataset, IngestReportEntry
from tests.conftest import demo_entries, png_bytes, start_worker, wait_for
from tests.medical import dicom_bytes, series

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
FINISHED = ["ready", "failed", "stopped"]


def zip_with_a_damaged_member(entries: dict[str, bytes], damaged: str) -> bytes:
    """A zip whose member `damaged` no longer matches its CRC-32 (stored, with one byte changed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if name == damaged else zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    member = entries[damaged]
    at = data.index(member) + len(member) // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def with_patient_id_of_vr_ul() -> bytes:
    """PatientID stored with the VR UL: it cannot be read, so no pseudonym consistent with the
    patient's other files can be given, and the file cannot be de-identified."""
    good = dicom_bytes(patient_id="BADVR1")
    explicit = struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 6) + b"BADVR1"
    return good.replace(explicit, struct.pack("<HH2sH", 0x0010, 0x0020, b"UL", 6) + b"BADVR1")


def with_an_element_written_the_implicit_way() -> bytes:
    """The file of the original failure: pydicom reads AccessionNumber with no VR and cannot write it back."""
    data = dicom_bytes(patient_id="MIXED", extra={"AccessionNumber": "ZQACCESX"})
    explicit = struct.pack("<HH2sH", 0x0008, 0x0050, b"SH", 8) + b"ZQACCESX"
    return data.replace(explicit, struct.pack("<HHI", 0x0008, 0x0050, 8) + b"ZQACCESX")


def without_file_meta() -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(patient_id="HEADLESS")))
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def rgb_nifti(red: int) -> bytes:
    """A 2D NIfTI of RGB24 voxels (colour maps are stored so): they decode to a structured array,
    which the training cache cannot cast and a mask cannot be made of."""
    voxels = np.zeros((64, 64, 1), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    voxels["R"] = red
    return nib.Nifti1Image(voxels, np.eye(4)).to_bytes()


def post(api, project, name: str, data: bytes) -> int:
    response = api.post("/api/datasets/", {"project": project.pk, "name": "Robust", "files": [SimpleUploadedFile(name, data)]},
                        format="multipart")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def outcomes_of(dataset_id: int) -> dict[str, tuple[str, str]]:
    return {e.path: (e.status, e.reason) for e in IngestReportEntry.objects.filter(dataset_id=dataset_id)}


def test_files_that_fail_at_each_step_are_rejected_with_their_reasons_and_the_rest_comes_in(api, project, celery_worker_process):
    good = {**demo_entries(per_class=6),
            **{f"lesion/series/{name}": data for name, data in series(3).items()},
            "normal/plain.dcm": dicom_bytes(patient_id="GOOD"),
            "normal/IM000001": without_file_meta(),
            "normal/packed.dcm.gz": gzip.compress(dicom_bytes(patient_id="PACKED")),
            "normal/mixed_vr.dcm": with_an_element_written_the_implicit_way(),
            "images/case.png": png_bytes(np.zeros((64, 64), np.uint8))}
    bad = {
        "normal/damaged_in_zip.png": ("cannot be read from the upload (BadZipFile: Bad CRC-32", png_bytes(np.full((64, 64), 9, np.uint8))),
        "lesion/truncated.dcm": ("corrupt or truncated DICOM pixel data (", dicom_bytes(patient_id="CUT")[:-700]),
        "lesion/patient_id_ul.dcm": ("the file could not be de-identified: its PatientID cannot be read", with_patient_id_of_vr_ul()),
        "lesion/colour.nii": ("the training cache could not be filled from this image (TypeError: Cannot cast", rgb_nifti(9)),
        "masks/case.nii": ("the mask's values could not be made into labels (", rgb_nifti(1)),
        "normal/bomb.dcm.gz": ("compression ratio over 200:1 is too high (possible gzip bomb)", gzip.compress(bytes(8 * 1024**2))),
        "normal/broken.dcm.gz": ("corrupt gzip file (", gzip.compress(dicom_bytes(patient_id="BROKEN"))[:-30]),
    }
    entries = {**good, **{name: data for name, (_, data) in bad.items()}}
    dataset_id = post(api, project, "mixed.zip", zip_with_a_damaged_member(entries, "normal/damaged_in_zip.png"))
    dataset = wait_for(lambda: Dataset.objects.filter(pk=dataset_id, status__in=FINISHED).first(), 180, "the ingest to finish")
    assert dataset.status == "ready", dataset.message + celery_worker_process.log_path.read_text()[-3000:]

    outcomes = outcomes_of(dataset_id)
    assert set(outcomes) == set(entries), "every file has an outcome"
    for name in good:
        assert outcomes[name][0] == "accepted", (name, outcomes[name])
    for name, (reason, _) in bad.items():
        assert outcomes[name][0] == "rejected" and outcomes[name][1].startswith(reason), (name, outcomes[name])
    rejected = api.get(f"/api/datasets/{dataset_id}/report/?status=rejected").json()
    assert rejected["count"] == len(bad) and {r["path"] for r in rejected["results"]} == set(bad)
    samples = dataset.samples.all()
    assert samples.count() == len(good) - 2, "the series' three slices are one volume"
    assert sorted(samples.exclude(cache_index=None).values_list("cache_index", flat=True)) == list(range(dataset.samples.filter(kind="image").count()))
    assert np.load(dataset.cache_path, mmap_mode="r").shape[0] == samples.filter(kind="image").count()
    assert f"{len(bad)} files not taken" in dataset.message


def test_steps_that_no_file_can_make_fail_still_fail_one_file_at_a_time(api, project, tmp_path):
    """Writing the pixels, the kept copy, a series volume and a binarised mask fail here because the
    name they write to is taken by a folder: the worker meets a real OSError, and only the file (or
    series) it was writing is rejected."""
    entries = {**demo_entries(per_class=4),
               **{f"lesion/a/{name}": data for name, data in series(3, patient_id="A").items()},
               **{f"lesion/b/{name}": data for name, data in series(3, patient_id="B").items()},
               "normal/plain.dcm": dicom_bytes(patient_id="P"),
               "images/case.png": png_bytes(np.zeros((64, 64), np.uint8)),
               "masks/case.png": png_bytes(np.full((64, 64), 255, np.uint8))}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    order = list(entries)  # one zip: the upload's order is the zip's
    dataset_id = post(api, project, "obstacles.zip", buffer.getvalue())
    folder = Dataset.objects.get(pk=dataset_id).storage_dir
    obstacles = {
        "lesion/lesion_001.png": f"arrays/{order.index('lesion/lesion_001.png'):07d}.npy",
        "normal/plain.dcm": f"originals/{order.index('normal/plain.dcm'):07d}.dcm",
        "lesion/b/slice_000.dcm": f"arrays/series-{order.index('lesion/b/slice_000.dcm'):07d}.npy.part",
        "masks/case.png": f"arrays/{order.index('masks/case.png'):07d}.npy.part",
    }
    for path in obstacles.values():
        (folder / path).mkdir(parents=True)
    worker = start_worker(tmp_path / "worker.log")
    try:
        dataset = wait_for(lambda: Dataset.objects.filter(pk=dataset_id, status__in=FINISHED).first(), 180, "the ingest to finish")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert dataset.status == "ready", dataset.message + (tmp_path / "worker.log").read_text()[-3000:]
    outcomes = outcomes_of(dataset_id)
    expected = {
        "lesion/lesion_001.png": "the pixels could not be written (IsADirectoryError: [Errno 21] Is a directory)",
        "normal/plain.dcm": "the kept copy of the file (its de-identified header) could not be written "
                            "(IsADirectoryError: [Errno 21] Is a directory)",
        "masks/case.png": "the mask's values could not be made into labels (IsADirectoryError: [Errno 21] Is a directory)",
        **{f"lesion/b/slice_{k:03d}.dcm": "the series could not be stacked into a volume (IsADirectoryError: [Errno 21] Is a directory)"
           for k in range(3)},
    }
    for name, reason in expected.items():
        assert outcomes[name] == ("rejected", reason), (name, outcomes[name])
    for name in set(entries) - set(expected):
        assert outcomes[name][0] == "accepted", (name, outcomes[name])
    assert dataset.samples.filter(kind="volume").count() == 1, "series A came in"
    assert dataset.samples.get(source_path="images/case.png").mask == ""

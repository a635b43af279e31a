"""Explaining an uploaded file (issue 22) through the API with a real worker: the file is checked before any job (a
400 with the field `file` saying what is wrong and what to do, nothing kept), then explained like a sample. An
uploaded copy of a test sample's file gets the very probabilities the run's evaluation stored for that sample (it
reached the model as the sample did), and its heat map lies over the upload's own picture. An imported model converted
to PyTorch explains with a heat map; a prediction-only one gives its prediction and says why there is no map."""
import io
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from pydicom.data import get_testdata_file

from backend.runs.models import Evaluation, Explanation, SamplePrediction, TrainingRun
from backend.zoo.models import ImportedModel
from tests.conftest import demo_entries, wait_for
from tests.integration.test_evaluation import finished
from tests.integration.test_volume_training import partition_of, ready_dataset
from tests.model_files import custom_onnx, if_onnx
from tests.real_data import mni_brain, nifti

pytestmark = pytest.mark.django_db(transaction=True)


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_uploaded_copy_of_a_test_sample_is_explained_as_the_sample_was_evaluated(api, project, celery_worker_process):
    entries = demo_entries(per_class=15)
    dataset = ready_dataset(api, project, entries, "Demo")
    response = api.post("/api/runs/", {"partition": partition_of(api, dataset), "model": {"architecture": "small_cnn"},
                                       "epochs": 2}, format="json")
    run = finished(TrainingRun, response.json()["id"])
    assert run.status == "succeeded", run.message
    evaluation = finished(Evaluation, Evaluation.objects.get(run=run).pk)
    prediction = SamplePrediction.objects.filter(evaluation=evaluation).select_related("sample").first()
    data = entries[prediction.sample.source_path]

    checked = api.post("/api/explanations/check/", {"run": run.pk, "file": upload("mine.png", data)}, format="multipart")
    assert checked.status_code == 200, checked.content
    assert checked.json()["kind"] == "image" and checked.json()["channels"] == 1 and "8 bits" in checked.json()["fits"]
    assert Explanation.objects.count() == 0, "a check queues nothing"

    started = time.monotonic()
    response = api.post("/api/explanations/", {"run": run.pk, "file": upload("mine.png", data)}, format="multipart")
    assert response.status_code == 202, response.content
    explanation = finished(Explanation, response.json()["id"])
    took = time.monotonic() - started
    assert explanation.status == "done", explanation.message + celery_worker_process.log_path.read_text()[-3000:]
    body = api.get(f"/api/explanations/{explanation.pk}/").json()
    print(f"an uploaded 64x64 PNG explained in {took:.1f} s (POST to done)")
    assert body["sample"] is None and body["dataset"] is None and body["upload"]["name"] == "mine.png"
    assert body["upload"]["planes"] == {"axial": 1} and body["project"] == project.pk
    results = body["results"]
    assert results["predicted"] == prediction.predicted
    assert max(abs(a - b) for a, b in zip(results["probabilities"], prediction.probabilities)) < 1e-5, \
        "the upload reached the model as the same file's sample did"
    assert results["heat_map_shape"] == [1, 64, 64] and results["layer"] == "network.block3"
    picture = api.get(body["image_url"])
    overlay = api.get(body["heat_map_url"])
    assert picture.status_code == overlay.status_code == 200 and picture["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(picture.content)).size == Image.open(io.BytesIO(overlay.content)).size == (64, 64)
    assert (explanation.project.storage_dir / explanation.upload["array"]).is_file(), "kept beside the run's files"
    again = api.post("/api/explanations/", {"run": run.pk, "file": upload("again.png", data)}, format="multipart")
    assert again.status_code == 202 and again.json()["id"] == explanation.pk, "the same file by the same model: one job"
    assert [e["id"] for e in api.get(f"/api/explanations/?run={run.pk}").json()["results"]] == [explanation.pk]
    sample_view = api.get(f"/api/explanations/{explanation.pk}/image/?axis=coronal")
    assert sample_view.status_code == 400 and sample_view.json()["field"] == "axis"

    refusals = {
        "colour.png": (png(np.full((64, 64, 3), 90, np.uint8)), "3 channels (colour)"),
        "notes.txt": (b"not an image", "could not be read"),
        "brain.nii.gz": (nifti(*mni_brain(step=6)[::2]), "takes 2D images"),
        "ultrasound.dcm": (open(get_testdata_file("examples_ybr_color.dcm"), "rb").read(), "takes 2D images"),
        "tiny.png": (png(np.zeros((4, 4), np.uint8)), "at least 8"),
    }
    for name, (content, words) in refusals.items():
        for address in ("/api/explanations/check/", "/api/explanations/"):
            refused = api.post(address, {"run": run.pk, "file": upload(name, content)}, format="multipart")
            assert refused.status_code == 400 and refused.json()["field"] == "file", (name, refused.content)
            assert words in refused.json()["message"], (name, refused.json()["message"])
    missing = api.post("/api/explanations/", {"run": run.pk}, format="multipart")
    assert missing.status_code == 400 and missing.json()["field"] == "file"
    both = api.post("/api/explanations/", {"run": run.pk, "imported_model": 1, "file": upload("x.png", data)}, format="multipart")
    assert both.status_code in (400, 404), both.content
    assert Explanation.objects.count() == 1, "nothing queued by a refusal"
    assert not list((project.storage_dir / "incoming").glob("model-*")), "nothing of a refused file is kept"


def imported(api, project, name: str, path) -> ImportedModel:
    response = api.post("/api/imported-models/", {"project": project.pk, "file": upload(name, path.read_bytes())},
                        format="multipart")
    assert response.status_code == 202, response.content
    return wait_for(lambda: ImportedModel.objects.filter(pk=response.json()["id"], status__in=ImportedModel.finished_statuses()).first(),
                    180, "the import to finish")


def test_imported_models_explain_an_upload_with_a_heat_map_or_their_prediction_alone(api, project, celery_worker_process, tmp_path):
    _, path = custom_onnx(tmp_path / "custom.onnx", channels=1, classes=3, size=24)
    converted = imported(api, project, "custom.onnx", path)
    assert converted.mode == "converted", converted.reason
    ct = open(get_testdata_file("CT_small.dcm"), "rb").read()
    response = api.post("/api/explanations/", {"imported_model": converted.pk, "file": upload("CT_small.dcm", ct)},
                        format="multipart")
    assert response.status_code == 202, response.content
    explanation = finished(Explanation, response.json()["id"])
    assert explanation.status == "done", explanation.message + celery_worker_process.log_path.read_text()[-3000:]
    body = api.get(f"/api/explanations/{explanation.pk}/").json()
    assert body["imported_model"] == converted.pk and body["run"] is None and body["upload"]["modality"] == "CT"
    results = body["results"]
    assert len(results["probabilities"]) == 3 and abs(sum(results["probabilities"]) - 1) < 1e-4
    assert results["input_shape"] == [1, 24, 24] and results["layer"] and results["heat_map_shape"] == [1, 128, 128]
    assert body["heat_map_url"] and api.get(body["heat_map_url"]).status_code == 200
    listed = api.get(f"/api/explanations/?imported_model={converted.pk}").json()["results"]
    assert [e["id"] for e in listed] == [explanation.pk]
    volume = api.post("/api/explanations/", {"imported_model": converted.pk, "file": upload("t1.nii.gz", nifti(*mni_brain(step=6)[::2]))},
                      format="multipart")
    assert volume.status_code == 400 and volume.json()["field"] == "file" and "takes 2D images" in volume.json()["message"]

    only = imported(api, project, "branchy.onnx", if_onnx(tmp_path / "branchy.onnx", channels=1, classes=2, size=16))
    assert only.mode == "prediction_only", only.reason
    response = api.post("/api/explanations/", {"imported_model": only.pk, "file": upload("ct.dcm", ct)}, format="multipart")
    explanation = finished(Explanation, response.json()["id"])
    assert explanation.status == "done", explanation.message
    body = api.get(f"/api/explanations/{explanation.pk}/").json()
    assert body["heat_map_url"] is None and body["results"]["heat_map_shape"] is None
    assert "prediction only" in body["results"]["note"] and "no heat map" in body["message"]
    assert len(body["results"]["probabilities"]) == 2

"""Explaining a sample as a job (issue 22, R1): a real worker runs a run's kept model on one sample; its probabilities
are the ones the run's test evaluation stored for that sample (the same input, the same model), and its Grad-CAM heat
map lies on the sample viewer's grid, drawn plane by plane as a transparent PNG the size of the viewer's plane. Asking
again answers the same explanation; a sample that cannot go through the model is refused with the field. A volume
larger than the patch is explained by sliding windows, its map stitched onto the grid each viewer plane is drawn on."""
import io

import numpy as np
import pytest
from PIL import Image

from backend.runs.models import Evaluation, Explanation, SamplePrediction, TrainingRun
from tests.conftest import demo_entries
from tests.factories import volumes_with_masks
from tests.integration.test_evaluation import finished
from tests.integration.test_volume_training import partition_of, ready_dataset, volume_zip_entries

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_explains_a_test_sample_with_the_probabilities_its_evaluation_stored(api, project, celery_worker_process):
    dataset = ready_dataset(api, project, demo_entries(per_class=15), "Demo")
    response = api.post("/api/runs/", {"partition": partition_of(api, dataset), "model": {"architecture": "small_cnn"},
                                       "epochs": 2}, format="json")
    run = finished(TrainingRun, response.json()["id"])
    assert run.status == "succeeded", run.message
    evaluation = finished(Evaluation, Evaluation.objects.get(run=run).pk)
    assert evaluation.status == "done", evaluation.message
    prediction = SamplePrediction.objects.filter(evaluation=evaluation).select_related("sample").first()
    sample = prediction.sample

    response = api.post("/api/explanations/", {"run": run.pk, "sample": sample.pk}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["heat_map_url"] is None, "no heat map before the worker made it"
    explanation = finished(Explanation, response.json()["id"])
    assert explanation.status == "done", explanation.message + celery_worker_process.log_path.read_text()[-3000:]
    body = api.get(f"/api/explanations/{explanation.pk}/").json()
    results = body["results"]
    assert results["classes"] == ["lesion", "normal"] and results["predicted"] == prediction.predicted
    assert max(abs(a - b) for a, b in zip(results["probabilities"], prediction.probabilities)) < 1e-5, \
        "the model saw the sample as the evaluation fed it"
    assert results["explained_class"] == results["predicted"] and results["layer"] == "network.block3"
    assert results["heat_map_shape"] == [1, sample.height, sample.width] and results["windows"] == 1
    heat_map = np.load(explanation.heat_map_path)
    assert heat_map.shape == (1, 64, 64) and 0 <= heat_map.min() and heat_map.max() == pytest.approx(1, abs=1e-3)
    assert f"Predicted {prediction.predicted}" in body["message"]

    overlay = api.get(body["heat_map_url"])
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    plane = api.get(f"/api/samples/{sample.pk}/slice/")
    drawn, shown = Image.open(io.BytesIO(overlay.content)), Image.open(io.BytesIO(plane.content))
    assert drawn.mode == "RGBA" and drawn.size == shown.size, "the overlay lies exactly over the viewer's plane"
    alpha = np.asarray(drawn)[..., 3]
    assert alpha.max() == 255 and alpha.min() < 255, "opaque where the model looked, see-through elsewhere"
    assert api.get(f"{body['heat_map_url']}?axis=coronal").json()["field"] == "axis"

    again = api.post("/api/explanations/", {"run": run.pk, "sample": sample.pk}, format="json")
    assert again.status_code == 202 and again.json()["id"] == explanation.pk, "the same explanation, not a second job"
    assert [e["id"] for e in api.get(f"/api/explanations/?run={run.pk}").json()["results"]] == [explanation.pk]
    assert api.get(f"/api/explanations/?sample={sample.pk + 100000}").json()["results"] == []

    volumes = volumes_with_masks(project)
    refused = api.post("/api/explanations/", {"run": run.pk, "sample": volumes.samples.first().pk}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "sample" and "is a volume" in refused.json()["message"]
    missing = api.post("/api/explanations/", {"run": run.pk, "sample": 10 ** 9}, format="json")
    assert missing.status_code == 404 and missing.json()["field"] == "sample"
    assert Explanation.objects.count() == 1, "nothing queued by a refusal"


def test_a_volume_is_explained_window_by_window_onto_the_grid_of_the_three_plane_viewer(api, project, celery_worker_process, tmp_path):
    dataset = ready_dataset(api, project, volume_zip_entries(tmp_path, per_class=5), "CT volumes")
    # A patch smaller than the volumes (16x24x24 voxels at the plan's spacing, their own): read by 3 x 2 x 2 windows.
    response = api.post("/api/runs/", {"partition": partition_of(api, dataset), "model": {"architecture": "small_cnn_3d"},
                                       "epochs": 1, "batch_size": 2, "data": {"plan": {"patch_size": [8, 16, 16]}}},
                        format="json")
    assert response.status_code == 202, response.content
    run = finished(TrainingRun, response.json()["id"])
    assert run.status == "succeeded", run.message + celery_worker_process.log_path.read_text()[-3000:]
    evaluation = finished(Evaluation, Evaluation.objects.get(run=run).pk)
    assert evaluation.status == "done", evaluation.message
    prediction = SamplePrediction.objects.filter(evaluation=evaluation).select_related("sample").first()
    sample = prediction.sample

    response = api.post("/api/explanations/", {"run": run.pk, "sample": sample.pk}, format="json")
    explanation = finished(Explanation, response.json()["id"])
    assert explanation.status == "done", explanation.message + celery_worker_process.log_path.read_text()[-3000:]
    results = explanation.results
    assert max(abs(a - b) for a, b in zip(results["probabilities"], prediction.probabilities)) < 1e-5, \
        "the windows' logits averaged, as the evaluation predicted the volume"
    assert results["windows"] == 12 and results["input_shape"] == [1, 16, 24, 24] and results["layer"] == "network.block3"
    assert results["heat_map_shape"] == [sample.depth, sample.height, sample.width] == [16, 24, 24]
    heat_map = np.load(explanation.heat_map_path)
    assert heat_map.max() == pytest.approx(1, abs=1e-3) and (heat_map > 0).mean() > 0.5, "the stitched map covers the volume"
    for axis in ("axial", "coronal", "sagittal"):
        overlay = api.get(f"/api/explanations/{explanation.pk}/heat-map/?axis={axis}&index=5")
        plane = api.get(f"/api/samples/{sample.pk}/slice/?axis={axis}&index=5")
        assert overlay.status_code == 200 and overlay["X-Plane-Count"] == plane["X-Plane-Count"], axis
        assert Image.open(io.BytesIO(overlay.content)).size == Image.open(io.BytesIO(plane.content)).size, axis


@pytest.mark.parametrize("body", ["null", "[1, 2]", '"sample"'])
def test_a_request_that_is_no_object_is_a_400_not_a_500(api, body):
    """Found by the schema's fuzzing: a JSON body of null made the upload check read `in None`."""
    response = api.post("/api/explanations/", data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert not Explanation.objects.exists()

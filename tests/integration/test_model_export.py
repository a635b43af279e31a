"""The worker's export step on a real run, trained in this process (tests/integration/test_worker.py does it with a
real worker process): ONNX and safetensors beside the weights with the same metadata, the preprocessing pipelines
of a derived dataset in it, the parity check in the results and the log; both downloads through the API, and what
runs from before the safetensors file answer."""
import io
import json

import onnx
import pytest
import torch
from safetensors.torch import load

from backend.datasets.models import Dataset
from backend.datasets.services import create_partition
from backend.pipelines.services import create_pipeline
from backend.runs.models import TrainingRun
from tests.factories import ready_dataset, training_spec, with_training_cache
from workers.engine.export import METADATA_KEYS, PARITY_IMAGES
from workers.training import RunReporter, train_and_store

pytestmark = pytest.mark.django_db


def twice_derived_dataset(user, project) -> Dataset:
    """Upload -> "Scale" (min_max) -> "Crop" (center_crop): the trained dataset is the second pipeline's output."""
    upload = ready_dataset(project, name="Upload")
    scale = create_pipeline(user, project, "Scale", "preprocessing", [{"op": "min_max"}])
    crop = create_pipeline(user, project, "Crop", "preprocessing", [{"op": "center_crop"}])
    scaled = Dataset.objects.create(project=project, name="Scaled", status=Dataset.Status.READY, derived_from=upload,
                                    pipeline_version=scale.latest)
    cropped = with_training_cache(ready_dataset(project, name="Cropped", per_class=12))
    Dataset.objects.filter(pk=cropped.pk).update(derived_from=scaled, pipeline_version=crop.latest)
    return Dataset.objects.get(pk=cropped.pk)


def a_run(user, project, **fields) -> TrainingRun:
    partition = create_partition(user, ready_dataset(project, name="Old"), "", 70, 15, 15, 1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="old", spec=training_spec(epochs=1), **fields)
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    return run


def downloaded(api, url: str) -> bytes:
    response = api.get(url)
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment"), response
    return b"".join(response.streaming_content)


def test_a_trained_run_exports_both_files_with_the_same_metadata_and_checks_the_onnx_file(api, user, project):
    dataset = twice_derived_dataset(user, project)
    partition = create_partition(user, dataset, "", 60, 20, 20, 3)
    run = TrainingRun.objects.create(project=project, partition=partition, name="Cropped lesions", status="running",
                                     spec=training_spec(epochs=2, batch_size=8), provenance={"code_version": "abc1234"})
    train_and_store(TrainingRun.objects.select_related("partition__dataset__project").get(pk=run.pk), RunReporter(run, interval=0))
    run.refresh_from_db()
    assert run.status == "succeeded", run.message

    validation = sum(partition.counts["validation"].values())
    check = run.results["onnx"]
    assert check["passed"] and check["same_predictions"] and check["subset"] == "validation"
    assert check["images"] == min(validation, PARITY_IMAGES) > 0 and 0 <= check["max_abs_difference"] <= check["tolerance"] == 1e-4
    assert "onnx_max_abs_difference" not in run.results
    assert run.log_lines.filter(text__contains=f"agrees with PyTorch on {check['images']} validation images").exists()

    body = api.get(f"/api/runs/{run.pk}/").json()
    assert body["model_url"] == f"/api/runs/{run.pk}/model.onnx/" and body["weights_url"] == f"/api/runs/{run.pk}/model.safetensors/"
    props = {p.key: p.value for p in onnx.load_from_string(downloaded(api, body["model_url"])).metadata_props}
    assert tuple(props) == METADATA_KEYS
    assert json.loads(props["classes"]) == ["lesion", "normal"] and json.loads(props["input_shape"]) == [1, 64, 64]
    assert json.loads(props["training_spec"]) == run.spec
    assert (props["run_id"], props["run_name"], props["toolkit_version"]) == (str(run.pk), "Cropped lesions", "abc1234")
    pipelines = json.loads(props["preprocessing"])["pipelines"]
    assert [(p["name"], p["version"], [s["op"] for s in p["steps"]]) for p in pipelines] == [("Scale", 1, ["min_max"]),
                                                                                              ("Crop", 1, ["center_crop"])]

    weights = downloaded(api, body["weights_url"])
    header_length = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8:8 + header_length])
    assert header["__metadata__"] == {"format": "pt", **props}
    tensors = load(weights)
    kept = torch.load(run.weights_path, weights_only=True)
    assert tensors.keys() == kept.keys() and all(torch.equal(tensors[k], v) for k, v in kept.items())


def test_a_missing_file_answers_404_with_the_reason_and_an_unfinished_run_409(api, user, project):
    old = a_run(user, project, status="succeeded", results={"onnx_max_abs_difference": 3e-7})
    old.onnx_path.write_bytes(b"onnx")
    body = api.get(f"/api/runs/{old.pk}/").json()
    assert body["model_url"] and body["weights_url"] is None
    assert body["results"]["onnx_max_abs_difference"] == 3e-7, "old runs keep their check"
    response = api.get(f"/api/runs/{old.pk}/model.safetensors/")
    assert response.status_code == 404 and response.json()["code"] == "file_missing"
    assert "trained before the toolkit wrote one" in response.json()["message"]

    running = a_run(user, project, status="running")
    response = api.get(f"/api/runs/{running.pk}/model.safetensors/")
    assert response.status_code == 409 and response.json()["code"] == "not_ready"
    assert api.get(f"/api/runs/{running.pk}/").json()["weights_url"] is None

    failed = a_run(user, project, status="failed")
    response = api.get(f"/api/runs/{failed.pk}/model.onnx/")
    assert response.status_code == 404 and "ended before its model was kept" in response.json()["message"]
    assert "ended before its model was kept" in api.get(f"/api/runs/{failed.pk}/model.safetensors/").json()["message"]
    too_large = a_run(user, project, status="succeeded", results={"onnx": {"error": "the weights take 2.1 GiB.", "passed": False}})
    assert api.get(f"/api/runs/{too_large.pk}/model.onnx/").json()["message"] == "This run has no ONNX file: the weights take 2.1 GiB."

    old.safetensors_path.write_bytes(io.BytesIO(b"weights").getvalue())
    assert downloaded(api, f"/api/runs/{old.pk}/model.safetensors/") == b"weights"
    audit = api.get(f"/api/projects/{project.pk}/audit/").json()["results"]
    assert any(e["action"] == "download" and e["object_name"].endswith(".safetensors") for e in audit), audit

"""Every API endpoint, called as anonymous, as an outsider, as a viewer and as an owner.

Outsiders get 404 for anything inside a project (names do not leak), viewers read but get
403 on changes, anonymous callers get 401. A new endpoint without an entry here fails
test_every_endpoint_has_an_entry.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import EndpointEnumerator
from rest_framework.test import APIClient

from backend.datasets.models import Dataset
from backend.datasets.services import create_partition
from backend.experiments.models import Comparison, GroupMember, RunGroup
from backend.pipelines.models import Aggregation
from backend.pipelines.services import create_pipeline
from backend.projects.models import Project, ProjectMember, Role
from backend.runs.models import Evaluation, Explanation, MetricPoint, RateSearch, SegmentationCase, TrainingRun
from backend.runs.segmentations import mask_dir
from backend.zoo.models import ImportedModel
from tests.conftest import demo_entries, make_zip, png_bytes
from tests.factories import ready_dataset, training_spec, volumes_with_masks
from tests.model_files import if_onnx

ROLES = ("anonymous", "outsider", "viewer", "owner")
PASSWORD = "matrix-password-1"


@dataclass
class Case:
    expect: tuple[int, int, int, int]  # in the order of ROLES
    ids: Callable = lambda world: {}
    data: Callable = lambda world: None
    multipart: bool = False
    notes: str = field(default="")


def project_id(w):
    return {"pk": w["project"]}


def dataset_id(w):
    return {"pk": w["dataset"]}


def run_id(w):
    return {"pk": w["run"]}


def table_upload():
    table = b"file,diagnosis\nlesion/0.png,benign\nnormal/0.png,healthy\n"
    return {"table": SimpleUploadedFile("labels.csv", table), "column": "file", "image_key": "path", "label_column": "diagnosis"}


OPEN = (200, 200, 200, 200)
LIST = (401, 200, 200, 200)
READ = (401, 404, 200, 200)

MATRIX = {
    ("GET", "/api/architectures/"): Case(LIST),
    ("GET", "/api/architectures/{name}/summary/"): Case(LIST, ids=lambda w: {"name": "small_cnn"},
                                                        notes="the registry's networks, for anyone logged in"),
    ("GET", "/api/resources/"): Case(LIST),
    ("POST", "/api/auth/token/"): Case(OPEN, data=lambda w: {"username": "owner", "password": PASSWORD}),
    ("GET", "/api/schema/"): Case(OPEN, notes="the schema describes the API, not anyone's data"),
    ("GET", "/api/docs/"): Case(OPEN),
    ("GET", "/api/projects/"): Case(LIST),
    ("POST", "/api/projects/"): Case((401, 201, 201, 201), data=lambda w: {"name": "Another"}),
    ("GET", "/api/projects/{pk}/"): Case(READ, ids=project_id),
    ("PUT", "/api/projects/{pk}/"): Case((401, 404, 403, 200), ids=project_id, data=lambda w: {"name": "Renamed"}),
    ("PATCH", "/api/projects/{pk}/"): Case((401, 404, 403, 200), ids=project_id, data=lambda w: {"description": "x"}),
    ("DELETE", "/api/projects/{pk}/"): Case((401, 404, 403, 204), ids=project_id),
    ("GET", "/api/projects/{pk}/members/"): Case(READ, ids=project_id),
    ("GET", "/api/projects/{pk}/audit/"): Case((401, 404, 403, 200), ids=project_id),
    ("POST", "/api/projects/{pk}/members/"): Case(
        (401, 404, 403, 201), ids=project_id, data=lambda w: {"username": "newcomer", "role": "viewer"}),
    ("DELETE", "/api/projects/{pk}/members/{member_id}/"): Case(
        (401, 404, 403, 204), ids=lambda w: {"pk": w["project"], "member_id": w["member"]}),
    ("GET", "/api/datasets/"): Case(LIST),
    ("POST", "/api/datasets/"): Case((401, 400, 403, 202), multipart=True, data=lambda w: {
        "project": w["project"], "files": [SimpleUploadedFile("a.zip", make_zip(demo_entries(per_class=2)))]}),
    ("GET", "/api/datasets/{pk}/"): Case(READ, ids=dataset_id),
    ("DELETE", "/api/datasets/{pk}/"): Case((401, 404, 403, 204), ids=lambda w: {"pk": w["unused_dataset"]}),
    ("PATCH", "/api/datasets/{pk}/"): Case((401, 404, 403, 200), ids=lambda w: {"pk": w["segmented_dataset"]},
                                           data=lambda w: {"label_names": {"1": "lesion"}}),
    ("GET", "/api/datasets/{pk}/deletion/"): Case(READ, ids=dataset_id),
    ("GET", "/api/datasets/{pk}/report/"): Case(READ, ids=dataset_id),
    ("GET", "/api/datasets/{pk}/plan/"): Case(READ, ids=dataset_id),
    ("GET", "/api/datasets/{pk}/samples/"): Case(READ, ids=dataset_id),
    ("POST", "/api/datasets/{pk}/stop/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["ingesting_dataset"]}),
    ("POST", "/api/datasets/merge/"): Case((401, 400, 403, 202), data=lambda w: {"datasets": [w["dataset"], w["unused_dataset"]]}),
    ("POST", "/api/datasets/{pk}/table/preview/"): Case((401, 404, 403, 200), ids=lambda w: {"pk": w["unused_dataset"]},
                                                         multipart=True, data=lambda w: table_upload()),
    ("POST", "/api/datasets/{pk}/table/apply/"): Case((401, 404, 403, 200), ids=lambda w: {"pk": w["unused_dataset"]},
                                                       multipart=True, data=lambda w: table_upload()),
    ("GET", "/api/samples/{pk}/"): Case(READ, ids=lambda w: {"pk": w["sample"]}),
    ("GET", "/api/samples/{pk}/thumbnail/"): Case(READ, ids=lambda w: {"pk": w["sample"]}),
    ("GET", "/api/samples/{pk}/slice/"): Case(READ, ids=lambda w: {"pk": w["sample"]}),
    ("GET", "/api/samples/{pk}/tags/"): Case(READ, ids=lambda w: {"pk": w["sample"]}),
    ("GET", "/api/partitions/"): Case(LIST),
    ("POST", "/api/partitions/"): Case((401, 400, 403, 201), data=lambda w: {"dataset": w["dataset"]}),
    ("GET", "/api/partitions/{pk}/"): Case(READ, ids=lambda w: {"pk": w["partition"]}),
    ("GET", "/api/partitions/{pk}/deletion/"): Case(READ, ids=lambda w: {"pk": w["partition"]}),
    ("DELETE", "/api/partitions/{pk}/"): Case((401, 404, 403, 409), ids=lambda w: {"pk": w["partition"]},
                                              notes="runs used it: refused without with_runs"),
    ("POST", "/api/partitions/kfold/"): Case((401, 400, 403, 201), data=lambda w: {"dataset": w["dataset"], "folds": 2}),
    ("POST", "/api/partitions/preview/"): Case((401, 400, 403, 200), data=lambda w: {"dataset": w["dataset"]}),
    ("GET", "/api/runs/"): Case(LIST),
    ("POST", "/api/runs/"): Case((401, 400, 403, 202), data=lambda w: {"partition": w["partition"], "epochs": 1}),
    ("GET", "/api/runs/{pk}/"): Case(READ, ids=run_id),
    ("DELETE", "/api/runs/{pk}/"): Case((401, 404, 403, 204), ids=run_id),
    ("GET", "/api/runs/{pk}/deletion/"): Case(READ, ids=run_id),
    ("GET", "/api/runs/{pk}/metrics/"): Case(READ, ids=run_id),
    ("GET", "/api/runs/{pk}/export/"): Case(READ, ids=run_id),
    ("GET", "/api/runs/{pk}/report/"): Case(READ, ids=run_id),
    ("GET", "/api/runs/{pk}/events/"): Case(READ, ids=run_id, notes="a stream: the run is finished, so it ends"),
    ("GET", "/api/runs/{pk}/model.onnx/"): Case(READ, ids=run_id),
    ("GET", "/api/runs/{pk}/model.safetensors/"): Case(READ, ids=run_id),
    ("POST", "/api/runs/{pk}/visibility/"): Case((401, 404, 403, 200), ids=run_id, data=lambda w: {"public": True}),
    ("POST", "/api/runs/{pk}/stop/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["queued_run"]}),
    # The owner's answer is a 400: a finished run has nothing to resume (the order of checks is what is tested).
    ("POST", "/api/runs/{pk}/resume/"): Case((401, 404, 403, 400), ids=run_id),
    ("GET", "/api/runs/starting-points/"): Case(LIST, notes="each caller sees only the runs they may read"),
    ("POST", "/api/runs/schedule/"): Case((401, 400, 200, 200), data=lambda w: {"partition": w["partition"], "epochs": 2}),
    ("GET", "/api/evaluations/"): Case(LIST),
    # The owner's answer is a 400: this run's kept model file is not there (the order of checks is what is tested).
    ("POST", "/api/evaluations/"): Case((401, 404, 403, 400), data=lambda w: {"run": w["run"]}),
    ("GET", "/api/evaluations/{pk}/"): Case(READ, ids=lambda w: {"pk": w["evaluation"]}),
    ("GET", "/api/evaluations/{pk}/predictions/"): Case(READ, ids=lambda w: {"pk": w["evaluation"]}),
    ("GET", "/api/evaluations/{pk}/export/"): Case(READ, ids=lambda w: {"pk": w["evaluation"]}),
    ("GET", "/api/evaluations/{pk}/cases/"): Case(READ, ids=lambda w: {"pk": w["evaluation"]}),
    ("GET", "/api/evaluations/{pk}/cases/{sample}/mask/"): Case(READ, ids=lambda w: {"pk": w["evaluation"], "sample": w["sample"]}),
    ("POST", "/api/evaluations/{pk}/stop/"): Case((401, 404, 403, 409), ids=lambda w: {"pk": w["evaluation"]},
                                                  notes="the evaluation has ended: nothing to stop"),
    ("GET", "/api/evaluations/class-mapping/"): Case(READ, data=lambda w: {"run": w["kept_run"], "dataset": w["unused_dataset"]},
                                                     notes="reading both class lists changes nothing: viewers may look"),
    ("GET", "/api/explanations/"): Case(LIST),
    # The owner's answer is a 400: this run's kept model file is not there (the order of checks is what is tested).
    ("POST", "/api/explanations/"): Case((401, 404, 403, 400), data=lambda w: {"run": w["run"], "sample": w["sample"]}),
    ("GET", "/api/explanations/{pk}/"): Case(READ, ids=lambda w: {"pk": w["explanation"]}),
    ("GET", "/api/explanations/{pk}/heat-map/"): Case(READ, ids=lambda w: {"pk": w["explanation"]}),
    ("POST", "/api/explanations/check/"): Case((401, 404, 403, 200), multipart=True, data=lambda w: {
        "imported_model": w["imported_model"], "file": SimpleUploadedFile("slice.png", png_bytes(np.zeros((32, 32), np.uint8)))},
        notes="reading a file against a model changes nothing but is the step before a job: owners only"),
    ("GET", "/api/explanations/{pk}/image/"): Case(READ, ids=lambda w: {"pk": w["uploaded_explanation"]}),
    ("GET", "/api/explanations/{pk}/mask/"): Case(READ, ids=lambda w: {"pk": w["masked_explanation"]}),
    ("GET", "/api/explanations/{pk}/download/"): Case(READ, ids=lambda w: {"pk": w["masked_explanation"]},
                                                      notes="a mask is read like its explanation"),
    ("GET", "/api/groups/"): Case(LIST),
    ("POST", "/api/groups/"): Case((401, 400, 403, 202), data=lambda w: {"partition": w["partition"], "seeds": 2,
                                                                        "spec": {"epochs": 1}}),
    ("GET", "/api/groups/{pk}/"): Case(READ, ids=lambda w: {"pk": w["group"]}),
    ("GET", "/api/groups/{pk}/export/"): Case(READ, ids=lambda w: {"pk": w["group"]}),
    ("POST", "/api/groups/{pk}/stop/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["group"]}),
    ("DELETE", "/api/groups/{pk}/"): Case((401, 404, 403, 204), ids=lambda w: {"pk": w["group"]}),
    ("GET", "/api/groups/{pk}/deletion/"): Case(READ, ids=lambda w: {"pk": w["group"]}),
    ("GET", "/api/comparisons/"): Case(LIST),
    ("POST", "/api/comparisons/"): Case((401, 400, 403, 201), data=lambda w: {"runs": [w["run"]], "groups": [w["group"]]}),
    ("GET", "/api/comparisons/{pk}/"): Case(READ, ids=lambda w: {"pk": w["comparison"]}),
    ("GET", "/api/comparisons/{pk}/export/"): Case(READ, ids=lambda w: {"pk": w["comparison"]}),
    ("DELETE", "/api/comparisons/{pk}/"): Case((401, 404, 403, 204), ids=lambda w: {"pk": w["comparison"]}),
    ("GET", "/api/comparisons/{pk}/deletion/"): Case(READ, ids=lambda w: {"pk": w["comparison"]}),
    ("GET", "/api/comparisons/preview/"): Case((401, 400, 200, 200), data=lambda w: {"runs": str(w["run"]), "groups": str(w["group"])},
                                               notes="a preview saves nothing: viewers may look"),
    # The members' answer is a 400: the run has no stored predictions to pair (the order of checks is what is tested).
    ("GET", "/api/comparisons/{pk}/paired/"): Case((401, 404, 400, 400), ids=lambda w: {"pk": w["comparison"]},
                                                   data=lambda w: {"a": w["run"], "b": w["queued_run"]}),
    ("POST", "/api/rate-searches/"): Case((401, 400, 403, 202), data=lambda w: {"partition": w["partition"], "epochs": 1}),
    ("GET", "/api/rate-searches/{pk}/"): Case(READ, ids=lambda w: {"pk": w["rate_search"]}),
    ("POST", "/api/rate-searches/{pk}/stop/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["rate_search"]}),
    ("GET", "/api/training/"): Case(LIST),
    ("GET", "/api/operations/"): Case(LIST),
    ("GET", "/api/pipelines/"): Case(LIST),
    ("POST", "/api/pipelines/"): Case((401, 400, 403, 201), data=lambda w: {"project": w["project"], "name": "Flips", "steps": [{"op": "flip"}]}),
    ("GET", "/api/pipelines/{pk}/"): Case(READ, ids=lambda w: {"pk": w["pipeline"]}),
    ("PUT", "/api/pipelines/{pk}/"): Case((401, 404, 403, 200), ids=lambda w: {"pk": w["pipeline"]},
                                          data=lambda w: {"name": "Renamed", "steps": [{"op": "invert"}]}),
    ("PATCH", "/api/pipelines/{pk}/"): Case((401, 404, 403, 200), ids=lambda w: {"pk": w["pipeline"]},
                                            data=lambda w: {"steps": [{"op": "salt"}]}),
    ("DELETE", "/api/pipelines/{pk}/"): Case((401, 404, 403, 204), ids=lambda w: {"pk": w["pipeline"]}),
    ("GET", "/api/pipelines/{pk}/deletion/"): Case(READ, ids=lambda w: {"pk": w["pipeline"]}),
    ("POST", "/api/pipelines/{pk}/run/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["preprocessing"]},
                                              data=lambda w: {"dataset": w["dataset"]}),
    ("POST", "/api/pipelines/preview/"): Case((401, 400, 200, 200), data=lambda w: {"dataset": w["dataset"], "steps": [{"op": "invert"}]},
                                              notes="a preview changes nothing: viewers may look"),
    ("GET", "/api/measures/"): Case(LIST),
    ("GET", "/api/aggregations/"): Case(LIST),
    ("POST", "/api/aggregations/"): Case((401, 400, 403, 202), data=lambda w: {"pipeline": w["aggregation_pipeline"], "dataset": w["dataset"]}),
    ("GET", "/api/aggregations/{pk}/"): Case(READ, ids=lambda w: {"pk": w["aggregation"]}),
    ("DELETE", "/api/aggregations/{pk}/"): Case((401, 404, 403, 204), ids=lambda w: {"pk": w["aggregation"]}),
    ("GET", "/api/aggregations/{pk}/deletion/"): Case(READ, ids=lambda w: {"pk": w["aggregation"]}),
    ("POST", "/api/aggregations/{pk}/stop/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["aggregation"]}),
    ("GET", "/api/aggregations/{pk}/rows/"): Case(READ, ids=lambda w: {"pk": w["aggregation"]}),
    ("GET", "/api/aggregations/{pk}/export/"): Case(READ, ids=lambda w: {"pk": w["aggregation"]}),
    ("GET", "/api/imported-models/"): Case(LIST),
    ("POST", "/api/imported-models/"): Case((401, 400, 403, 202), multipart=True, data=lambda w: {
        "project": w["project"], "file": SimpleUploadedFile("branchy.onnx", w["onnx_bytes"])}),
    ("GET", "/api/imported-models/{pk}/"): Case(READ, ids=lambda w: {"pk": w["imported_model"]}),
    ("DELETE", "/api/imported-models/{pk}/"): Case((401, 404, 403, 204), ids=lambda w: {"pk": w["imported_model"]}),
    ("GET", "/api/imported-models/{pk}/deletion/"): Case(READ, ids=lambda w: {"pk": w["imported_model"]}),
    ("POST", "/api/imported-models/{pk}/stop/"): Case((401, 404, 403, 202), ids=lambda w: {"pk": w["importing_model"]}),
    ("POST", "/api/imported-models/{pk}/predict/"): Case(
        READ, ids=lambda w: {"pk": w["imported_model"]}, multipart=True,
        data=lambda w: {"image": SimpleUploadedFile("x.png", png_bytes(np.zeros((16, 16), np.uint8)))},
        notes="a prediction changes nothing: viewers may predict"),
}


def test_every_endpoint_has_an_entry():
    endpoints = {(method, path) for path, _, method, _ in EndpointEnumerator().get_api_endpoints()}
    assert endpoints - set(MATRIX) == set(), "add these endpoints to the access matrix"
    assert set(MATRIX) - endpoints == set(), "these matrix entries no longer exist"


@pytest.fixture
def world(django_user_model, tmp_path):
    users = {name: django_user_model.objects.create_user(name, password=PASSWORD) for name in ("owner", "viewer", "outsider", "newcomer")}
    project = Project.objects.create(owner=users["owner"], name="Shared")
    ProjectMember.objects.create(project=project, user=users["viewer"], role=Role.VIEWER)
    member = ProjectMember.objects.create(project=project, user=users["newcomer"], role=Role.VIEWER)
    dataset = ready_dataset(project)
    sample = dataset.samples.first()
    partition = create_partition(users["owner"], dataset, "", 70, 15, 15, 1)
    run = TrainingRun.objects.create(project=project, partition=partition, name="done", spec=training_spec(epochs=1), status="succeeded")
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    run.onnx_path.write_bytes(b"onnx")
    run.safetensors_path.write_bytes(b"safetensors")
    MetricPoint.objects.create(run=run, epoch=1, subset="train", name="loss", value=0.5)
    kept = TrainingRun.objects.create(project=project, partition=partition, name="kept", spec=training_spec(epochs=1), status="succeeded")
    kept.storage_dir.mkdir(parents=True, exist_ok=True)
    kept.weights_path.write_bytes(b"weights")  # its kept model: what may be evaluated on another dataset
    queued = TrainingRun.objects.create(project=project, partition=partition, name="queued", spec=training_spec(epochs=1))
    search = RateSearch.objects.create(partition=partition, spec=training_spec())
    evaluation = Evaluation.objects.create(run=run, status=Evaluation.Status.DONE)
    np.save(project.storage_dir / "case.npy", np.zeros((64, 64), np.uint8))  # a segmentation case's predicted map
    SegmentationCase.objects.create(evaluation=evaluation, sample=sample, dice={"lesion": 1.0}, iou={"lesion": 1.0}, hd95={"lesion": 0.0},
                                    nsd={"lesion": 1.0}, predicted_volume={"lesion": 0.0}, reference_volume={"lesion": 0.0},
                                    empty={"lesion": "both"}, mean_dice=1.0, tolerance_mm=1.0, mask="case.npy")
    explanation = Explanation.objects.create(run=run, sample=sample, status=Explanation.Status.DONE,
                                             results={"heat_map_shape": [1, 64, 64]})
    explanation.heat_map_path.parent.mkdir(parents=True)
    np.save(explanation.heat_map_path, np.zeros((1, 64, 64), np.float16))
    masked = Explanation.objects.create(run=run, sample=sample, status=Explanation.Status.DONE, results={
        "label_map_shape": [1, 64, 64], "classes": ["background", "lesion"], "label_values": [0, 1], "files": {"png": "mask.png"}})
    mask_dir(masked).mkdir(parents=True)
    np.save(mask_dir(masked) / "labels.npy", np.zeros((1, 64, 64), np.uint8))
    (mask_dir(masked) / "mask.png").write_bytes(png_bytes(np.zeros((64, 64), np.uint8)))
    group = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SEEDS, name="Seeds", seeds=1)
    GroupMember.objects.create(group=group, run=run, seed=0)
    comparison = Comparison.objects.create(project=project, name="Run against its group", metric="loss")
    comparison.runs.set([run, queued])
    comparison.groups.set([group])
    unused = ready_dataset(project)
    ingesting = Dataset.objects.create(project=project, name="Busy", status=Dataset.Status.INGESTING)
    segmented = volumes_with_masks(project)
    Dataset.objects.filter(pk=segmented.pk).update(mask_values=[0, 1])
    pipeline = create_pipeline(users["owner"], project, "Augment", "augmentation", [{"op": "flip"}])
    preprocessing = create_pipeline(users["owner"], project, "Prepare", "preprocessing", [{"op": "min_max"}])
    measuring = create_pipeline(users["owner"], project, "Measure", "aggregation", [], ["mean"])
    aggregation = Aggregation.objects.create(dataset=dataset, pipeline_version=measuring.latest, name="Means", measures=["mean"],
                                             status=Aggregation.Status.READY)
    branchy = if_onnx(tmp_path / "branchy.onnx")
    imported = ImportedModel.objects.create(project=project, name="Branchy", kind="onnx", mode="prediction_only", status="ready",
                                            channels=1, inputs=[{"name": "image", "type": "float32", "shape": ["batch", 1, 16, 16]}])
    imported.storage_dir.mkdir(parents=True)
    imported.onnx_path.write_bytes(branchy.read_bytes())
    importing = ImportedModel.objects.create(project=project, name="Importing", kind="onnx", status="queued")
    uploaded = Explanation.objects.create(imported_model=imported, status=Explanation.Status.DONE, upload={
        "name": "slice.png", "format": "PNG", "modality": "PNG", "kind": "image", "shape": [32, 32], "channels": 1, "depth": 1,
        "height": 32, "width": 32, "spacing": [], "meta": {}, "array": "uploaded.npy", "original": ""})
    np.save(project.storage_dir / "uploaded.npy", np.zeros((32, 32), np.uint8))
    return {
        "uploaded_explanation": uploaded.pk, "masked_explanation": masked.pk,
        "imported_model": imported.pk, "importing_model": importing.pk, "onnx_bytes": branchy.read_bytes(),
        "users": users, "project": project.pk, "member": member.pk, "dataset": dataset.pk, "sample": sample.pk,
        "partition": partition.pk, "run": run.pk, "queued_run": queued.pk, "rate_search": search.pk, "evaluation": evaluation.pk, "unused_dataset": unused.pk,
        "explanation": explanation.pk, "group": group.pk, "comparison": comparison.pk, "kept_run": kept.pk,
        "ingesting_dataset": ingesting.pk, "segmented_dataset": segmented.pk, "pipeline": pipeline.pk,
        "preprocessing": preprocessing.pk, "aggregation_pipeline": measuring.pk, "aggregation": aggregation.pk,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", sorted(MATRIX))
def test_access(world, method, path):
    case = MATRIX[(method, path)]
    url = path.format(**case.ids(world))
    for role, expected in zip(ROLES, case.expect):
        client = APIClient()
        if role != "anonymous":
            client.force_authenticate(world["users"][role])
        data = case.data(world)
        response = client.generic(method, url) if data is None and method in ("GET", "DELETE") else (
            getattr(client, method.lower())(url, data, format="multipart" if case.multipart else "json"))
        assert response.status_code == expected, f"{role} {method} {url}: {response.status_code} {getattr(response, 'data', '')}"
        if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
            assert {"code", "message", "field"} <= set(response.json()), response.json()


@pytest.mark.django_db
def test_audit_log_records_reads_downloads_changes_and_deletions(world):
    from backend.audit.models import AuditEvent

    viewer, owner = APIClient(), APIClient()
    viewer.force_authenticate(world["users"]["viewer"])
    owner.force_authenticate(world["users"]["owner"])
    for _ in range(3):  # polling: one read event per user and object
        viewer.get(f"/api/datasets/{world['dataset']}/")
    viewer.get(f"/api/runs/{world['run']}/model.onnx/")
    owner.delete(f"/api/datasets/{world['unused_dataset']}/")
    owner.post("/api/projects/{}/members/".format(world["project"]), {"username": "outsider", "role": "viewer"}, format="json")
    log = owner.get(f"/api/projects/{world['project']}/audit/").json()["results"]
    seen = [(e["username"], e["action"], e["object_type"]) for e in log]
    assert ("viewer", "read", "dataset") in seen and seen.count(("viewer", "read", "dataset")) == 1
    assert ("viewer", "download", "run") in seen
    assert ("owner", "delete", "dataset") in seen
    assert ("owner", "share", "project") in seen
    assert AuditEvent.objects.filter(object_id=world["unused_dataset"], action="delete").exists()
    assert viewer.get(f"/api/projects/{world['project']}/audit/").status_code == 403


@pytest.mark.django_db
def test_a_public_run_is_readable_by_everyone_and_changeable_by_its_owners_only(world):
    owner, outsider = APIClient(), APIClient()
    owner.force_authenticate(world["users"]["owner"])
    outsider.force_authenticate(world["users"]["outsider"])
    run = f"/api/runs/{world['run']}/"
    assert outsider.get(run).status_code == 404
    assert owner.post(run + "visibility/", {"public": True}, format="json").json()["public"] is True
    assert outsider.get(run).status_code == 200
    assert outsider.get(run + "model.onnx/").status_code == 200
    assert outsider.get(run + "model.safetensors/").status_code == 200
    assert [r["id"] for r in outsider.get("/api/runs/").json()["results"]] == [world["run"]]
    assert outsider.delete(run).status_code == 404
    assert outsider.post(run + "visibility/", {"public": False}, format="json").status_code == 404
    assert outsider.get(f"/api/projects/{world['project']}/").status_code == 404, "the project stays private"
    owner.post(run + "visibility/", {"public": False}, format="json")
    assert outsider.get(run).status_code == 404

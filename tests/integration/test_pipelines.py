"""Pipelines over the API: the operation schema, versions frozen once used, refusals per step, previews."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from backend.datasets.models import Dataset
from backend.pipelines.models import Pipeline
from tests.conftest import wait_for
from tests.factories import ready_dataset
from workers.engine.pipelines import OPERATIONS

pytestmark = pytest.mark.django_db


def create(api, project, steps, name="Augment", kind="augmentation"):
    return api.post("/api/pipelines/", {"project": project.pk, "name": name, "kind": kind, "steps": steps}, format="json")


def picture(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_the_operation_schema_lists_every_operation_with_its_parameters(api):
    operations = {op["name"]: op for op in api.get("/api/operations/").json()}
    assert set(operations) == set(OPERATIONS)
    rotate = operations["rotate"]
    assert rotate["random"] and rotate["dims"] == [2, 3] and rotate["category"] == "augmentation"
    degrees = next(p for p in rotate["params"] if p["name"] == "degrees")
    assert degrees == {"name": "degrees", "label": "Angle (degrees)", "kind": "range", "default": [-15.0, 15.0], "help": degrees["help"], "minimum": -180.0, "maximum": 180.0}
    assert operations["window"]["category"] == "preprocessing" and not operations["window"]["random"]


def test_a_version_is_edited_in_place_until_used_then_edits_make_a_new_one(api, project):
    response = create(api, project, [{"op": "flip"}, {"op": "rotate", "params": {"degrees": [-5, 5]}}])
    assert response.status_code == 201, response.content
    body = response.json()
    assert [v["number"] for v in body["versions"]] == [1]
    assert body["versions"][0]["steps"][0] == {"op": "flip", "params": {"axis": "left-right", "probability": 0.5}}, "defaults written out"
    url = f"/api/pipelines/{body['id']}/"
    assert api.patch(url, {"steps": [{"op": "invert"}]}, format="json").json()["versions"][0]["steps"][0]["op"] == "invert"
    pipeline = Pipeline.objects.get(pk=body["id"])
    from backend.datasets.services import create_partition
    from backend.runs.services import launch_run

    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    run = launch_run(project, partition, {"epochs": 1, "data": {"augmentation": pipeline.pk}}, project.owner)  # uses version 1
    versions = api.patch(url, {"steps": [{"op": "salt"}]}, format="json").json()["versions"]
    assert [(v["number"], v["steps"][0]["op"], v["used"]) for v in versions] == [(1, "invert", True), (2, "salt", False)]
    assert api.patch(url, {"steps": [{"op": "salt"}]}, format="json").json()["versions"][-1]["number"] == 2, "no change, no version"
    response = api.delete(url)
    assert response.status_code == 409 and f"1 training run(s) used this pipeline (run {run.pk}" in response.json()["message"]
    unused = create(api, project, [{"op": "flip"}], name="Other").json()
    assert api.delete(f"/api/pipelines/{unused['id']}/").status_code == 204


def test_bad_steps_are_refused_with_every_problem_named_by_step_and_field(api, project):
    response = create(api, project, [{"op": "flip", "params": {"axis": "diagonal"}}, {"op": "sharpen"},
                                     {"op": "average_blur", "params": {"size": 4}}])
    assert response.status_code == 400
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["steps[0].axis", "steps[1].op", "steps[2].size"]
    assert body["message"].startswith("Step 1: Flip: Axis must be one of")
    assert "GET /api/operations/" in body["errors"][1]["message"]
    response = create(api, project, [{"op": "window"}, {"op": "rotate"}], name="Prep", kind="preprocessing")
    assert response.status_code == 400 and "cannot hold random operations (Rotate)" in response.json()["message"]
    create(api, project, [{"op": "flip"}], name="Same")
    response = create(api, project, [{"op": "flip"}], name="Same")
    assert response.status_code == 400 and response.json()["field"] == "name"


def test_a_preview_shows_real_samples_before_and_after_and_a_new_seed_draws_again(api, project):
    dataset = ready_dataset(project, per_class=10)
    response = api.post("/api/pipelines/preview/", {"dataset": dataset.pk, "steps": [{"op": "invert", "params": {"probability": 1}}]},
                        format="json")
    assert response.status_code == 200, response.content
    items = response.json()
    assert len(items) == 8 and {i["label"] for i in items} == {"lesion", "normal"}, "spread over the dataset"
    for item in items:
        before, after = picture(item["before"]), picture(item["after"])
        assert item["error"] == "" and item["shape"] == [1, 64, 64]
        assert np.corrcoef(before.ravel().astype(float), after.ravel().astype(float))[0, 1] < -0.99, "inverted"
    noisy = [{"op": "additive_gaussian_noise", "params": {"std": 20}}]
    first = api.post("/api/pipelines/preview/", {"dataset": dataset.pk, "steps": noisy, "seed": 1}, format="json").json()
    again = api.post("/api/pipelines/preview/", {"dataset": dataset.pk, "steps": noisy, "seed": 1}, format="json").json()
    other = api.post("/api/pipelines/preview/", {"dataset": dataset.pk, "steps": noisy, "seed": 2}, format="json").json()
    assert first[0]["after"] == again[0]["after"] != other[0]["after"]


def test_a_step_that_cannot_run_on_a_sample_says_why_in_the_preview(api, project):
    dataset = ready_dataset(project, per_class=2)  # PNG samples: no voxel spacing
    response = api.post("/api/pipelines/preview/", {"dataset": dataset.pk, "steps": [{"op": "resample"}]}, format="json")
    assert response.status_code == 200
    assert all("needs the sample's voxel spacing" in item["error"] and item["after"] == "" for item in response.json())
    response = api.post("/api/pipelines/preview/", {"dataset": dataset.pk, "steps": [{"op": "nope"}]}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "steps[0].op"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_preprocessing_pipeline_run_on_a_worker_makes_a_derived_dataset(api, project, celery_worker_process):
    dataset = ready_dataset(project, per_class=6)
    steps = [{"op": "min_max"}, {"op": "resize", "params": {"height": 32, "width": 32}}]
    pipeline = create(api, project, steps, name="Small", kind="preprocessing").json()
    response = api.post(f"/api/pipelines/{pipeline['id']}/run/", {"dataset": dataset.pk}, format="json")
    assert response.status_code == 202, response.content
    derived_id = response.json()["id"]
    derived = wait_for(lambda: Dataset.objects.filter(pk=derived_id, status__in=["ready", "failed"]).first(), 120, "the derived dataset")
    assert derived.status == "ready", derived.message
    body = api.get(f"/api/datasets/{derived_id}/").json()
    assert body["derived_from"] == dataset.pk and body["pipeline"] == {"id": pipeline["id"], "name": "Small", "version": 1}
    assert derived.sample_count == 12 and derived.class_counts == dataset.class_counts
    sample = derived.samples.order_by("id").first()
    source = dataset.samples.order_by("id").first()
    stored = np.load(sample.project_dir / sample.array)
    # Min-max to 0..1, then resized (interpolation averages the extremes a little).
    assert stored.shape == (32, 32) and stored.dtype == np.float32 and 0 <= stored.min() < stored.max() <= 1
    assert (sample.label, sample.patient, sample.meta["derived_from_sample"]) == (source.label, source.patient, source.pk)
    assert np.load(derived.cache_path).shape == (12, 1, 32, 32)
    assert derived.report.filter(status="accepted").count() == 12
    # The version it used is frozen: editing the pipeline makes version 2.
    versions = api.patch(f"/api/pipelines/{pipeline['id']}/", {"steps": [{"op": "min_max"}]}, format="json").json()["versions"]
    assert [(v["number"], v["used"]) for v in versions] == [(1, True), (2, False)]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_samples_a_pipeline_cannot_take_are_reported_and_the_rest_come_in(api, project, celery_worker_process):
    dataset = ready_dataset(project, per_class=3)  # PNG: no voxel spacing, so resampling cannot run
    pipeline = create(api, project, [{"op": "resample"}], name="Iso", kind="preprocessing").json()
    derived_id = api.post(f"/api/pipelines/{pipeline['id']}/run/", {"dataset": dataset.pk}, format="json").json()["id"]
    derived = wait_for(lambda: Dataset.objects.filter(pk=derived_id, status__in=["ready", "failed"]).first(), 120, "the job")
    assert derived.status == "failed" and "could not process any sample" in derived.message
    assert derived.report.filter(status="rejected", reason__contains="voxel spacing").count() == 6


def test_running_needs_a_preprocessing_pipeline_and_a_ready_dataset_of_the_project(api, project, user):
    dataset = ready_dataset(project, per_class=2)
    augment = create(api, project, [{"op": "flip"}]).json()
    response = api.post(f"/api/pipelines/{augment['id']}/run/", {"dataset": dataset.pk}, format="json")
    assert response.status_code == 400 and "augmentation pipeline is applied while a model trains" in response.json()["message"]
    prepare = create(api, project, [{"op": "min_max"}], name="Prep", kind="preprocessing").json()
    busy = Dataset.objects.create(project=project, name="Busy", status=Dataset.Status.INGESTING)
    response = api.post(f"/api/pipelines/{prepare['id']}/run/", {"dataset": busy.pk}, format="json")
    assert response.status_code == 400 and "not ready" in response.json()["message"]

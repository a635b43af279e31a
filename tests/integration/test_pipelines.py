"""Pipelines over the API: the operation schema, versions frozen once used, refusals per step, previews."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from backend.pipelines.models import Pipeline
from backend.pipelines.services import mark_used
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
    assert degrees == {"name": "degrees", "kind": "range", "default": [-15.0, 15.0], "help": degrees["help"], "minimum": -180.0, "maximum": 180.0}
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
    mark_used(pipeline.latest)
    versions = api.patch(url, {"steps": [{"op": "salt"}]}, format="json").json()["versions"]
    assert [(v["number"], v["steps"][0]["op"], v["used"]) for v in versions] == [(1, "invert", True), (2, "salt", False)]
    assert api.patch(url, {"steps": [{"op": "salt"}]}, format="json").json()["versions"][-1]["number"] == 2, "no change, no version"
    response = api.delete(url)
    assert response.status_code == 409 and "used this pipeline" in response.json()["message"]
    unused = create(api, project, [{"op": "flip"}], name="Other").json()
    assert api.delete(f"/api/pipelines/{unused['id']}/").status_code == 204


def test_bad_steps_are_refused_with_every_problem_named_by_step_and_field(api, project):
    response = create(api, project, [{"op": "flip", "params": {"axis": "diagonal"}}, {"op": "sharpen"},
                                     {"op": "average_blur", "params": {"size": 4}}])
    assert response.status_code == 400
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["steps[0].axis", "steps[1].op", "steps[2].size"]
    assert body["message"].startswith("Step 1: Flip: axis must be one of")
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

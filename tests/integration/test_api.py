"""The REST API on the configured database: bad input gets a 400 with a reason, never a 500."""
import math

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.datasets.models import Dataset
from backend.datasets.services import create_partition
from tests.conftest import demo_entries, make_zip
from tests.factories import ready_dataset, shapes_with_masks
from workers.engine.training.spec import resolve_spec

pytestmark = pytest.mark.django_db


def upload(api, project, data: bytes, name="set.zip"):
    return api.post("/api/datasets/", {"project": project.pk, "name": "Set", "files": [SimpleUploadedFile(name, data)]}, format="multipart")


def assert_error(response, status, field, *words):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"code", "message", "field", "errors"}
    assert body["field"] == field
    for word in words:
        assert word in body["message"], body["message"]


def test_anonymous_requests_are_refused(client):
    assert client.get("/api/projects/").status_code in (401, 403)


def test_create_project_and_list_it(api):
    response = api.post("/api/projects/", {"name": "Chest X-ray"}, format="json")
    assert response.status_code == 201
    assert [p["name"] for p in api.get("/api/projects/").json()["results"]] == ["Chest X-ray"]
    assert_error(api.post("/api/projects/", {"name": ""}, format="json"), 400, "name", "name")


def test_good_upload_is_accepted_and_queued(api, project):
    response = upload(api, project, make_zip(demo_entries(per_class=3)))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["warnings"] == []
    dataset = Dataset.objects.get(pk=body["id"])
    assert (dataset.upload_dir / "set.zip").exists()
    assert str(dataset.upload_dir).startswith(str(project.storage_dir))


def test_not_a_zip_and_not_an_image_are_refused(api, project):
    assert_error(upload(api, project, b"%PDF-1.4 not a zip", "scan.zip"), 400, "files", "not a zip archive")
    assert_error(upload(api, project, b"%PDF-1.4 not an image", "scan.pdf"), 400, "files", "scan.pdf: unknown format")
    assert not Dataset.objects.exists()


def test_empty_zip_is_refused(api, project):
    assert_error(upload(api, project, make_zip({})), 400, "files", "holds no files")


def test_zip_of_only_bad_files_is_refused_with_each_reason(api, project):
    response = upload(api, project, make_zip({"lesion/broken.png": b"\x89PNG broken", "../../evil.png": b"x"}))
    assert_error(response, 400, "files", "lesion/broken.png", "../../evil.png", "leaves the archive")
    assert not Dataset.objects.exists()
    assert not list(project.storage_dir.glob("incoming/*")), "the rejected upload must not stay on disk"


def test_partly_bad_zip_is_accepted_with_warnings(api, project):
    entries = demo_entries(per_class=3)
    entries["../escape.png"] = entries["lesion/lesion_000.png"]
    entries["normal/corrupt.png"] = b"\x89PNG\r\n\x1a\nbroken"
    response = upload(api, project, make_zip(entries))
    assert response.status_code == 202
    warned = {w["path"]: w["reason"] for w in response.json()["warnings"]}
    assert "leaves the archive" in warned["../escape.png"]
    assert "normal/corrupt.png" in warned


def test_single_class_upload_warns(api, project):
    entries = {k: v for k, v in demo_entries(per_class=3).items() if k.startswith("normal/")}
    response = upload(api, project, make_zip(entries))
    assert response.status_code == 202
    assert any("Only one class" in w["reason"] for w in response.json()["warnings"])


def test_upload_without_file_or_into_a_foreign_project(api, project, outsider):
    assert_error(api.post("/api/datasets/", {"project": project.pk}, format="multipart"), 400, "files", "Choose files")
    from backend.projects.models import Project

    foreign = Project.objects.create(owner=outsider, name="Theirs")
    assert_error(upload(api, foreign, make_zip(demo_entries(2))), 400, "project", "No project with id")


def test_partition_percentages_must_add_to_100(api, project):
    dataset = ready_dataset(project)
    bad = {"dataset": dataset.pk, "train_percent": 70, "validation_percent": 15, "test_percent": 10, "seed": 1}
    assert_error(api.post("/api/partitions/", bad, format="json"), 400, "test_percent", "add up to 95", "100")
    good = api.post("/api/partitions/", {**bad, "test_percent": 15}, format="json")
    assert good.status_code == 201
    counts = good.json()["counts"]
    # The factory's patients have two images each: 70% of a class's 10 images is 7, and whole patients
    # give 6 (the nearest the greedy split reaches without splitting anyone).
    assert counts["train"] == {"lesion": 6, "normal": 6}
    for label in ("lesion", "normal"):
        assert counts["train"][label] + counts["validation"].get(label, 0) + counts["test"].get(label, 0) == 10
    from backend.datasets.models import PartitionMember
    subsets_of = {}
    for patient, subset in PartitionMember.objects.filter(partition_id=good.json()["id"]).values_list("sample__patient", "subset"):
        subsets_of.setdefault(patient, set()).add(subset)
    assert all(len(found) == 1 for found in subsets_of.values()), "no patient in two subsets"


def test_partition_of_an_unready_dataset_is_refused(api, project):
    dataset = Dataset.objects.create(project=project, name="Busy")
    assert_error(api.post("/api/partitions/", {"dataset": dataset.pk}, format="json"), 400, "dataset", "not ready")


def launch(api, partition, **overrides):
    return api.post("/api/runs/", {"partition": partition.pk, "epochs": 2, **overrides}, format="json")


@pytest.mark.parametrize("spec, field, words", [
    ({"optimizer": {"learning_rate": 0}}, "optimizer.learning_rate", ["greater than 0", "typical"]),
    ({"optimizer": {"name": "sgd", "momentum": 2}}, "optimizer.momentum", ["between 0 and 0.999"]),
    ({"early_stopping": {"enabled": True, "patience": -1}}, "early_stopping.patience", ["between 1 and 1000"]),
    ({"epochs": 10, "schedule": {"name": "step", "step_epochs": 12}}, "schedule.step_epochs", ["after the run's 10 epochs"]),
    ({"epochs": 0}, "epochs", ["between 1 and 1000"]),
    ({"batch_size": "many"}, "batch_size", ["whole number"]),
    ({"batch_size": 64}, "batch_size", ["batch size (64) is larger than the training subset", "choose at most"]),
    ({"model": {"architecture": "gpt"}}, "model.architecture", ["one of"]),
    ({"resources": {"device": "tpu"}}, "resources.device", ["one of cpu, gpu"]),
    ({"learning_rate": 0.1}, "learning_rate", ["no setting 'learning_rate'"]),
])
def test_bad_run_settings_are_refused_with_the_field(api, project, spec, field, words):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    assert_error(launch(api, partition, **spec), 400, field, *words)


def test_a_partition_without_validation_images_cannot_monitor_a_validation_metric(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 80, 0, 20, 1)
    assert_error(launch(api, partition), 400, "monitor", "no validation images", "train.loss")
    assert launch(api, partition, monitor="train.loss").status_code == 202


def test_resume_needs_a_stopped_run_with_a_checkpoint(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    run = launch(api, partition).json()
    assert_error(api.post(f"/api/runs/{run['id']}/resume/"), 400, None, "Only a stopped or failed run", "still running")
    api.post(f"/api/runs/{run['id']}/stop/")
    assert_error(api.post(f"/api/runs/{run['id']}/resume/"), 400, None, "no checkpoint", "Clone")


def test_the_schedule_curve_is_drawn_by_the_trainers_own_code(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    response = api.post("/api/runs/schedule/", {"partition": partition.pk, "epochs": 4, "batch_size": 3,
                                                "schedule": {"name": "step", "step_epochs": 1, "gamma": 0.5, "warmup_epochs": 1}},
                        format="json")
    assert response.status_code == 200, response.content
    curve = response.json()
    steps = math.ceil(sum(partition.counts["train"].values()) / 3)
    assert curve["steps_per_epoch"] == steps
    assert curve["learning_rates"][0] == pytest.approx(0.003 / steps), "the first step of a 1-epoch warm-up"
    assert curve["learning_rates"][-1] == pytest.approx(0.003 * 0.5 ** 2), "warm-up, then halved after each of 2 epochs"
    assert_error(api.post("/api/runs/schedule/", {"partition": partition.pk, "optimizer": {"learning_rate": 0}}, format="json"),
                 400, "optimizer.learning_rate", "greater than 0")


def test_queued_runs_show_their_place_in_their_resources_queue(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    first, second = launch(api, partition).json(), launch(api, partition).json()
    assert (first["queue"], first["queue_position"], second["queue_position"]) == ("train-cpu", 1, 2)
    api.post(f"/api/runs/{first['id']}/stop/")  # cancelling a queued run takes it out of the queue
    assert api.get(f"/api/runs/{second['id']}/").json()["queue_position"] == 1
    assert api.get(f"/api/runs/{first['id']}/").json()["queue_position"] is None


def test_launch_on_a_single_class_dataset_is_refused(api, project):
    partition = create_partition(project.owner, ready_dataset(project, labels=("normal",)), "", 70, 15, 15, 1)
    assert_error(launch(api, partition), 400, "partition", "only one class", "'normal'", "at least two")


def test_gpu_launch_without_a_gpu_worker_is_refused(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    assert_error(launch(api, partition, resources={"device": "gpu"}), 400, "resources.device", "No GPU worker is online")


def test_good_launch_is_queued_with_its_full_configuration(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    response = launch(api, partition)
    assert response.status_code == 202, response.content
    run = response.json()
    assert run["status"] == "queued"
    assert run["provenance"]["partition"]["seed"] == 1 and run["provenance"]["dataset"]["classes"] == ["lesion", "normal"]
    assert run["provenance"]["code_version"] and run["provenance"]["packages"]["torch"]
    assert run["spec"] == resolve_spec({"epochs": 2, "batch_size": run["spec"]["batch_size"]}).to_dict() and run["model_url"] is None
    stopped = api.post(f"/api/runs/{run['id']}/stop/")
    assert stopped.status_code == 202 and stopped.json()["status"] == "stopped"
    assert_error(api.post(f"/api/runs/{run['id']}/stop/"), 409, None, "already")
    # Stopped before its first epoch: it is over, and never had a model to export.
    assert_error(api.get(f"/api/runs/{run['id']}/model.onnx/"), 404, None, "no ONNX file")


def test_outsiders_get_404_for_every_object(api, project, outsider):
    from rest_framework.test import APIClient

    dataset = ready_dataset(project)
    partition = create_partition(project.owner, dataset, "", 70, 15, 15, 1)
    run_id = launch(api, partition).json()["id"]
    sample = dataset.samples.first()
    stranger = APIClient()
    stranger.force_authenticate(outsider)
    for url in (f"/api/projects/{project.pk}/", f"/api/datasets/{dataset.pk}/", f"/api/partitions/{partition.pk}/",
                f"/api/runs/{run_id}/", f"/api/runs/{run_id}/metrics/", f"/api/samples/{sample.pk}/thumbnail/"):
        assert stranger.get(url).status_code == 404, url
    assert stranger.get("/api/datasets/").json()["count"] == 0


def test_pages_answer_for_the_owner_and_hide_from_others(client, user, outsider, project):
    dataset = ready_dataset(project)
    client.force_login(user)
    for url in ("/", f"/projects/{project.pk}/", f"/datasets/{dataset.pk}/", f"/projects/{project.pk}/runs/new/"):
        assert client.get(url).status_code == 200, url
    client.force_login(outsider)
    assert client.get(f"/projects/{project.pk}/").status_code == 404
    assert client.get(f"/datasets/{dataset.pk}/").status_code == 404
    client.logout()
    assert client.get("/").status_code == 302


def test_deleting_a_project_removes_its_rows_and_files(api, project, django_capture_on_commit_callbacks):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    launch(api, partition)
    project.storage_dir.mkdir(parents=True, exist_ok=True)
    (project.storage_dir / "marker").write_text("x")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/projects/{project.pk}/")
    assert response.status_code == 204, response.content
    assert not Dataset.objects.exists()
    assert not project.storage_dir.exists()


def test_datasets_cannot_be_deleted_while_runs_use_them(api, project):
    dataset = ready_dataset(project)
    launch(api, create_partition(project.owner, dataset, "", 70, 15, 15, 1))
    assert_error(api.delete(f"/api/datasets/{dataset.pk}/"), 409, None, "training run")
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_runs_are_deleted_only_when_finished_and_then_free_their_dataset(api, project):
    dataset = ready_dataset(project)
    run_id = launch(api, create_partition(project.owner, dataset, "", 70, 15, 15, 1)).json()["id"]
    from backend.runs.models import TrainingRun

    TrainingRun.objects.filter(pk=run_id).update(status="running")
    assert_error(api.delete(f"/api/runs/{run_id}/"), 409, None, "stop it")
    TrainingRun.objects.filter(pk=run_id).update(status="succeeded")
    assert api.delete(f"/api/runs/{run_id}/").status_code == 204
    assert api.delete(f"/api/datasets/{dataset.pk}/").status_code == 204


def test_absurd_paging_values_give_a_page_not_a_crash(api, project):
    response = api.get("/api/projects/?offset=-2432902008176640000&limit=13117494131405097009152")
    assert response.status_code == 200 and len(response.json()["results"]) == 1
    assert api.get("/api/projects/?offset=99999999999999999999999").json()["results"] == []


def test_uploads_over_the_size_limit_are_refused(api, project, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    assert_error(upload(api, project, make_zip(demo_entries(per_class=2))), 413, "files", "limited to")


def test_thumbnails_are_served_as_png_that_browsers_may_not_sniff(api, project, settings):
    sample = ready_dataset(project).samples.first()
    response = api.get(f"/api/samples/{sample.pk}/thumbnail/")
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    assert sample.thumbnail_path.is_file(), "made on first request and kept"


def test_viewers_see_pages_without_the_controls_that_change_things(client, user, outsider, project):
    from backend.projects.models import ProjectMember, Role

    dataset = ready_dataset(project)
    ProjectMember.objects.create(project=project, user=outsider, role=Role.VIEWER)
    client.force_login(outsider)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert 'id="upload-form"' not in page and 'id="share-form"' not in page and 'id="activity"' not in page
    assert 'id="partition-form"' not in client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert client.get(f"/projects/{project.pk}/runs/new/").status_code == 403
    client.force_login(user)
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert 'id="upload-form"' in page and 'id="share-form"' in page and 'id="activity"' in page


def test_a_missing_thumbnail_file_is_a_404_with_a_reason(api, project):
    sample = ready_dataset(project).samples.first()
    (sample.project_dir / sample.array).unlink()
    assert_error(api.get(f"/api/samples/{sample.pk}/thumbnail/"), 404, None, "missing from storage")


def test_incompatible_merges_are_refused_with_the_reason(api, project):
    grey = ready_dataset(project, name="Grey")
    colour = ready_dataset(project, name="Colour")
    Dataset.objects.filter(pk=colour.pk).update(channels=3)
    response = api.post("/api/datasets/merge/", {"datasets": [grey.pk, colour.pk]}, format="json")
    assert_error(response, 400, "datasets", "grayscale (1 channel)", "colour (3 channels)")
    Dataset.objects.filter(pk=colour.pk).update(channels=1, task="segmentation")
    assert_error(api.post("/api/datasets/merge/", {"datasets": [grey.pk, colour.pk]}, format="json"), 400, "datasets", "one task")
    Dataset.objects.filter(pk=colour.pk).update(task="classification")
    response = api.post("/api/datasets/merge/", {"datasets": [grey.pk, colour.pk], "label_mapping": {"TUMOUR": "x"}}, format="json")
    assert_error(response, 400, "label_mapping", "No dataset being merged has the label 'TUMOUR'")
    assert_error(api.post("/api/datasets/merge/", {"datasets": [grey.pk]}, format="json"), 400, "datasets", "at least two")
    assert Dataset.objects.count() == 2, "nothing is created by a refused merge"


def test_the_default_batch_gives_way_to_a_small_training_subset_but_a_chosen_one_is_checked(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    training_images = sum(partition.counts["train"].values())
    assert training_images < 32 and launch(api, partition).json()["spec"]["batch_size"] == min(training_images, 8)
    assert_error(launch(api, partition, batch_size=32), 400, "batch_size", "larger than the training subset")


def test_merged_masks_keep_their_label_names_and_conflicting_names_are_refused(api, project):
    liver = shapes_with_masks(project, count=4, name="Liver", label_names={"1": "liver", "2": "tumour"})
    more = shapes_with_masks(project, count=4, name="More livers", label_names={"1": "liver", "3": "vessel"})
    spleen = shapes_with_masks(project, count=4, name="Spleen", label_names={"1": "spleen"})
    response = api.post("/api/datasets/merge/", {"datasets": [liver.pk, spleen.pk]}, format="json")
    assert_error(response, 400, "datasets", "Label 1 is 'liver' in 'Liver' and 'spleen' in 'Spleen'")
    assert Dataset.objects.count() == 3, "nothing is created by a refused merge"
    response = api.post("/api/datasets/merge/", {"datasets": [liver.pk, more.pk]}, format="json")
    assert response.status_code == 202, response.content
    assert Dataset.objects.get(pk=response.json()["id"]).label_names == {"1": "liver", "2": "tumour", "3": "vessel"}

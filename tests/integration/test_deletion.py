"""Deleting from the API: what goes with a thing is said first (GET deletion/), the deletion refuses what it would break,
jobs are stopped first, the files leave the disk and the audit log says who deleted what."""
import pytest

from backend.audit.models import AuditEvent
from backend.datasets.models import Dataset, Partition
from backend.datasets.services import create_partition, merge_datasets
from backend.pipelines.models import Aggregation, Pipeline
from backend.pipelines.services import create_pipeline, start_aggregation
from backend.projects.models import ProjectMember, Role
from backend.runs.models import TrainingRun
from backend.runs.services import launch_run
from backend.zoo.models import ImportedModel
from tests.factories import ready_dataset

pytestmark = pytest.mark.django_db


def finished_run(project, partition, name="First", **spec):
    run = launch_run(project, partition, {"epochs": 1, **spec}, project.owner, name=name)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED)
    run.refresh_from_db()
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    (run.storage_dir / "model.onnx").write_bytes(b"x" * 1000)
    return run


def deleted(kind: str, pk: int) -> list[str]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.DELETE, object_type=kind, object_id=pk).values_list("username", flat=True))


def test_a_dataset_with_runs_says_what_goes_with_it_and_goes_only_with_them(api, project, django_capture_on_commit_callbacks):
    dataset = ready_dataset(project)
    partition = create_partition(project.owner, dataset, "Split", 70, 15, 15, 1)
    run = finished_run(project, partition)
    measuring = create_pipeline(project.owner, project, "Measure", "aggregation", [{"op": "window"}], ["mean"])
    aggregation = start_aggregation(project.owner, measuring, dataset, "Means")
    Aggregation.objects.filter(pk=aggregation.pk).update(status=Aggregation.DONE)
    dataset_bytes = sum(f.stat().st_size for f in dataset.storage_dir.rglob("*") if f.is_file())

    plan = api.get(f"/api/datasets/{dataset.pk}/deletion/").json()
    assert plan["target"] == {"type": "dataset", "id": dataset.pk, "name": "Ready", "finished": True, "status": "ready",
                              "url": f"/api/datasets/{dataset.pk}/", "page": f"/datasets/{dataset.pk}/"}
    assert [(thing["type"], thing["id"]) for thing in plan["also"]] == [("partition", partition.pk), ("aggregation", aggregation.pk)]
    assert [(thing["type"], thing["id"], thing["name"]) for thing in plan["runs"]] == [("run", run.pk, "First")]
    assert plan["allowed"] is False and "1 training run(s) used this dataset (run" in plan["reason"]
    assert plan["bytes"] == dataset_bytes  # the runs' files only when they go too

    refused = api.delete(f"/api/datasets/{dataset.pk}/")
    assert refused.status_code == 409 and "with_runs=true" in refused.json()["message"]
    assert Dataset.objects.filter(pk=dataset.pk).exists() and run.storage_dir.exists()

    with_runs = api.get(f"/api/datasets/{dataset.pk}/deletion/?with_runs=true").json()
    assert with_runs["allowed"] is True and with_runs["bytes"] == dataset_bytes + 1000, with_runs
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/datasets/{dataset.pk}/?with_runs=true").status_code == 204
    assert not Dataset.objects.exists() and not Partition.objects.exists() and not TrainingRun.objects.exists()
    assert not Aggregation.objects.exists()
    assert not dataset.storage_dir.exists() and not run.storage_dir.exists()  # the disk, not only the rows
    assert deleted("dataset", dataset.pk) == ["alice"] and deleted("run", run.pk) == ["alice"]


def test_a_job_still_working_is_named_and_must_be_stopped_first(api, project, django_capture_on_commit_callbacks):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    run = launch_run(project, partition, {"epochs": 1}, project.owner, name="Busy")
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)

    plan = api.get(f"/api/runs/{run.pk}/deletion/").json()
    assert [(thing["type"], thing["id"], thing["finished"]) for thing in plan["running"]] == [("run", run.pk, False)]
    refused = api.delete(f"/api/runs/{run.pk}/")
    assert refused.status_code == 409 and f"run {run.pk} 'Busy'" in refused.json()["message"] and "stop it first" in refused.json()["message"]

    assert api.post(f"/api/runs/{run.pk}/stop/").status_code == 202  # the worker ends it after its batch ...
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.STOPPED)  # ... as here
    assert api.get(f"/api/runs/{run.pk}/deletion/").json()["allowed"] is True
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/runs/{run.pk}/").status_code == 204
    assert not TrainingRun.objects.exists()


def test_a_queued_run_of_a_partition_is_stopped_at_once_then_the_partition_goes(api, project):
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    run = launch_run(project, partition, {"epochs": 1}, project.owner)
    plan = api.get(f"/api/partitions/{partition.pk}/deletion/?with_runs=1").json()
    assert [thing["id"] for thing in plan["running"]] == [run.pk] and not plan["allowed"]
    api.post(f"/api/runs/{run.pk}/stop/")
    assert api.delete(f"/api/partitions/{partition.pk}/?with_runs=true").status_code == 204
    assert not Partition.objects.exists() and not TrainingRun.objects.exists() and Dataset.objects.exists()
    assert deleted("partition", partition.pk) == ["alice"]


def test_what_cannot_be_lifted_here_is_said_and_refused(api, project):
    first, second = ready_dataset(project, name="A"), ready_dataset(project, name="B")
    merge_datasets(project.owner, "Both", [first, second], {})
    plan = api.get(f"/api/datasets/{first.pk}/deletion/?with_runs=true").json()
    assert plan["blocked_by"] == ["The merged dataset(s) 'Both' index this dataset's samples; delete them first."]
    assert api.delete(f"/api/datasets/{first.pk}/?with_runs=true").status_code == 409

    preprocessing = create_pipeline(project.owner, project, "Resize", "preprocessing", [{"op": "resize", "size": 32}])
    from backend.pipelines.services import run_preprocessing

    run_preprocessing(project.owner, preprocessing, first, "Small")
    reason = api.get(f"/api/pipelines/{preprocessing.pk}/deletion/").json()["reason"]
    assert reason == "Version 1 made the dataset 'Small'; it is kept so they can say how they were made. Delete them first."
    assert api.delete(f"/api/pipelines/{preprocessing.pk}/").status_code == 409
    assert Pipeline.objects.filter(pk=preprocessing.pk).exists()


def test_an_augmentation_pipeline_goes_with_the_runs_it_augmented(api, project):
    augmentation = create_pipeline(project.owner, project, "Flip", "augmentation", [{"op": "flip"}])
    partition = create_partition(project.owner, ready_dataset(project), "", 70, 15, 15, 1)
    run = finished_run(project, partition, data={"augmentation": augmentation.pk})
    assert api.delete(f"/api/pipelines/{augmentation.pk}/").status_code == 409
    assert [thing["id"] for thing in api.get(f"/api/pipelines/{augmentation.pk}/deletion/").json()["runs"]] == [run.pk]
    assert api.delete(f"/api/pipelines/{augmentation.pk}/?with_runs=true").status_code == 204
    assert not Pipeline.objects.exists() and not TrainingRun.objects.exists() and Partition.objects.exists()


def test_an_imported_models_files_leave_the_disk(api, project, django_capture_on_commit_callbacks):
    imported = ImportedModel.objects.create(project=project, name="Theirs", kind="onnx", status="ready")
    imported.storage_dir.mkdir(parents=True)
    (imported.storage_dir / "model.onnx").write_bytes(b"y" * 300)
    assert api.get(f"/api/imported-models/{imported.pk}/deletion/").json()["bytes"] == 300
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/imported-models/{imported.pk}/").status_code == 204
    assert not imported.storage_dir.exists() and deleted("imported_model", imported.pk) == ["alice"]


def test_viewers_may_read_the_plan_but_not_delete(api, project, outsider):
    from rest_framework.test import APIClient

    dataset = ready_dataset(project)
    ProjectMember.objects.create(project=project, user=outsider, role=Role.VIEWER)
    viewer = APIClient()
    viewer.force_authenticate(outsider)
    assert viewer.get(f"/api/datasets/{dataset.pk}/deletion/").status_code == 200
    refused = viewer.delete(f"/api/datasets/{dataset.pk}/")
    assert refused.status_code == 403 and "owner role" in refused.json()["message"]
    assert Dataset.objects.filter(pk=dataset.pk).exists() and not deleted("dataset", dataset.pk)


def test_a_bad_with_runs_is_a_400_with_the_reason(api, project):
    dataset = ready_dataset(project)
    response = api.delete(f"/api/datasets/{dataset.pk}/?with_runs=maybe")
    assert response.status_code == 400 and response.json()["field"] == "with_runs"
    assert Dataset.objects.filter(pk=dataset.pk).exists()

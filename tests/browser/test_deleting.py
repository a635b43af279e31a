"""Deleting from the pages, as a person does it: the confirmation says what goes with the thing, runs go only when
ticked, a job still working is stopped first, the files leave the disk, the audit log records it, and only owners
see the control."""
import re
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def finished_run(project, partition, name):
    from backend.runs.models import TrainingRun
    from backend.runs.services import launch_run

    run = launch_run(project, partition, {"epochs": 1}, project.owner, name=name)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED)
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    (run.storage_dir / "model.onnx").write_bytes(b"x" * 2000)
    return run


def test_a_dataset_goes_with_its_runs_only_when_they_are_ticked(page, live_server, clinician):
    from backend.audit.models import AuditEvent
    from backend.datasets.models import Dataset
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = ready_dataset(project, name="X-rays")
    partition = create_partition(clinician, dataset, "Split", 70, 15, 15, 1)
    runs = [finished_run(project, partition, name) for name in ("Small CNN", "ResNet-18")]
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("button", name="Delete dataset…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Deleted with it:")
    expect(dialog.get_by_role("link", name="partition ‘Split’")).to_have_attribute("href", f"/partitions/{partition.pk}/")
    expect(dialog).to_contain_text("2 training run(s) used it")
    expect(dialog.get_by_role("link", name="run ‘Small CNN’")).to_be_visible()
    expect(dialog).to_contain_text("Tick the box to delete the runs too, or delete them first.")
    confirm = dialog.get_by_role("button", name="Delete", exact=True)
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Also delete these 2 training run(s)").check()
    expect(dialog).to_contain_text("Its files (")  # now counting the runs' files too
    expect(confirm).to_be_enabled()
    DOCS_IMAGES.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS_IMAGES / "delete-confirmation.png"))
    for width in (1920, 390):
        page.set_viewport_size({"width": width, "height": 900})
        box = dialog.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)  # the dialog fits the screen
        shot(page, f"delete-dialog-{width}")
    page.set_viewport_size({"width": 1280, "height": 1000})

    confirm.click()
    page.wait_for_url(re.compile(rf"/projects/{project.pk}/$"))
    expect(page.locator("#dataset-table")).not_to_contain_text("X-rays")
    assert not Dataset.objects.exists() and not TrainingRun.objects.exists()
    assert not dataset.storage_dir.exists() and not any(run.storage_dir.exists() for run in runs)
    assert set(AuditEvent.objects.filter(action="delete").values_list("object_type", "username")) == {("dataset", "clinician"), ("run", "clinician")}


def test_a_run_still_training_is_stopped_first_then_deleted(page, live_server, clinician):
    from backend.datasets.services import create_partition
    from backend.projects.models import Project
    from backend.runs.models import TrainingRun
    from backend.runs.services import launch_run

    project = Project.objects.create(owner=clinician, name="Chest")
    partition = create_partition(clinician, ready_dataset(project), "", 70, 15, 15, 1)
    run = launch_run(project, partition, {"epochs": 1}, clinician, name="Busy")
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.get_by_role("button", name="Delete run…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Still working, so stopped first")

    def worker_ends_it_after_its_batch():  # what a worker does once it sees stop_requested
        deadline = time.monotonic() + 60
        while not TrainingRun.objects.filter(pk=run.pk, stop_requested=True).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.STOPPED)

    worker = threading.Thread(target=worker_ends_it_after_its_batch)
    worker.start()
    try:
        dialog.get_by_role("button", name="Stop and delete").click()
        expect(dialog.get_by_role("status")).to_contain_text("Stopping the run ‘Busy’")
        page.wait_for_url(re.compile(rf"/projects/{project.pk}/$"))
    finally:
        worker.join()
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("kind", ["partition", "pipeline", "imported model", "group", "comparison"])
def test_partitions_pipelines_and_imported_models_are_deleted_from_their_pages(page, live_server, clinician, kind):
    from backend.datasets.services import create_partition
    from backend.experiments.models import Comparison, RunGroup
    from backend.pipelines.services import create_pipeline
    from backend.projects.models import Project
    from backend.zoo.models import ImportedModel

    project = Project.objects.create(owner=clinician, name="Chest")
    dataset = ready_dataset(project)
    if kind == "partition":
        thing = create_partition(clinician, dataset, "Split", 70, 15, 15, 1)
        url, back = f"/partitions/{thing.pk}/", f"/datasets/{dataset.pk}/"
    elif kind == "pipeline":
        thing = create_pipeline(clinician, project, "Flip", "augmentation", [{"op": "flip"}])
        url, back = f"/projects/{project.pk}/pipelines/{thing.pk}/", f"/projects/{project.pk}/"
    elif kind == "imported model":
        thing = ImportedModel.objects.create(project=project, name="Theirs", kind="onnx", status="ready")
        url, back = f"/imported-models/{thing.pk}/", f"/projects/{project.pk}/models/"
    elif kind == "group":  # its runs are kept (tests/integration/test_sweeps.py)
        partition = create_partition(clinician, dataset, "Split", 70, 15, 15, 1)
        thing = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SEEDS, name="Seeds", seeds=2)
        url, back = f"/groups/{thing.pk}/", f"/projects/{project.pk}/"
    else:
        thing = Comparison.objects.create(project=project, name="Side by side", metric="loss")
        url, back = f"/comparisons/{thing.pk}/", f"/projects/{project.pk}/"
    log_in(page, live_server.url)
    page.goto(live_server.url + url)
    page.get_by_role("button", name=f"Delete {kind}…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(re.compile(re.escape(back) + "$"))
    assert not type(thing).objects.filter(pk=thing.pk).exists()


def test_viewers_are_not_offered_the_control(page, live_server, clinician, django_user_model):
    from backend.projects.models import Project, ProjectMember, Role

    owner = django_user_model.objects.create_user("owner", password="owner-password-1")
    project = Project.objects.create(owner=owner, name="Theirs")
    ProjectMember.objects.create(project=project, user=clinician, role=Role.VIEWER)
    dataset = ready_dataset(project)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    expect(page.locator("h1")).to_have_text(dataset.name)
    expect(page.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)

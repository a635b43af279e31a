"""Transfer between tasks with a real worker process: a run on two classes, then a run on three classes that starts
from its kept model (a new head, the rest carried over and, in a head-only phase, left exactly as it was); and a
start whose ImageNet file turns out not to be the real one ends the run as failed, saying what to do."""
import pytest
import torch

from backend.datasets.services import create_partition
from backend.runs.models import TrainingRun
from tests.conftest import start_worker, stop_process, wait_for
from tests.factories import ready_dataset, with_training_cache
from workers.engine.zoo.registry import MODELS

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def partition_of(project, labels, name):
    dataset = with_training_cache(ready_dataset(project, labels=labels, per_class=16, name=name))
    return create_partition(project.owner, dataset, "", 70, 15, 15, 1)


def finished(run_id: int, timeout: float) -> TrainingRun:
    return wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.finished_statuses()).first(), timeout,
                    "the run to end")


def test_a_run_on_three_classes_starts_from_a_run_on_two(api, project, celery_worker_process):
    lesions = partition_of(project, ("lesion", "normal"), "Lesions")
    first = api.post("/api/runs/", {"partition": lesions.pk, "name": "Lesions", "epochs": 2, "batch_size": 8}, format="json")
    assert first.status_code == 202, first.content
    earlier = finished(first.json()["id"], 180)
    log = celery_worker_process.log_path
    assert earlier.status == "succeeded", earlier.message + log.read_text()[-3000:]

    grades = partition_of(project, ("grade-1", "grade-2", "grade-3"), "Grades")
    second = api.post("/api/runs/", {"partition": grades.pk, "batch_size": 8, "monitor": "train.loss",
                                     "model": {"architecture": "small_cnn", "weights": "run", "start_run": earlier.pk},
                                     "phases": [{"epochs": 1, "train": "head"}]}, format="json")
    assert second.status_code == 202, second.content
    run = finished(second.json()["id"], 180)
    assert run.status == "succeeded", run.message + log.read_text()[-3000:]

    lines = list(run.log_lines.values_list("text", flat=True))
    assert (f"Starting from run {earlier.pk} 'Lesions': its head (2 classes) is replaced by a new one for this run's 3 classes "
            "(grade-1, grade-2, grade-3); everything else is carried over.") in lines, lines
    assert [step["weights"] for step in run.provenance["lineage"]] == ["run", "random"]
    assert run.provenance["lineage"][0]["run"] == earlier.pk and run.provenance["lineage"][0]["classes"] == ["lesion", "normal"]
    assert run.results["classes"] == ["grade-1", "grade-2", "grade-3"]

    # The head alone trained: every other weight and BatchNorm statistic is the earlier run's kept model's, as read at the start.
    before, after = (torch.load(r.weights_path, weights_only=True) for r in (earlier, run))
    assert after["network.head.weight"].shape == (3, 64) and before["network.head.weight"].shape == (2, 64)
    body = [key for key in before if not key.startswith("network.head.")]
    assert "network.block1.0.weight" in body and "network.block1.1.running_mean" in body
    assert all(torch.equal(after[key], before[key]) for key in body)


def test_an_imagenet_file_that_is_not_the_real_one_fails_the_run_with_what_to_do(api, project, tmp_path, settings):
    folder = tmp_path / "weights"
    folder.mkdir()
    entry = MODELS["mobilenet_v3_small"].weights_named("imagenet")
    (folder / entry.filename).write_bytes(b"an interrupted download")  # there by name: the launch lets it through
    worker = start_worker(tmp_path / "worker.log", TOOLKIT_WEIGHTS_DIR=str(folder), TORCH_HOME=str(tmp_path / "torch"))
    settings.PRETRAINED_WEIGHTS_DIR = folder  # the web tier's, as the worker's environment says
    try:
        response = api.post("/api/runs/", {"partition": partition_of(project, ("lesion", "normal"), "Lesions").pk, "epochs": 1,
                                           "model": {"architecture": "mobilenet_v3_small", "weights": "imagenet"}}, format="json")
        assert response.status_code == 202, response.content
        run = finished(response.json()["id"], 120)
    finally:
        stop_process(worker)
    assert run.status == "failed"
    assert run.message == (f"{folder / entry.filename} is not the ImageNet (torchvision) weights file: its SHA-256 does not begin with "
                           f"{entry.sha256_prefix} as its name says (a partial download or another file). Download it again from "
                           f"{entry.url}.")

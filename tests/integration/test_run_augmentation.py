"""Runs with an augmentation pipeline and class balancing: what the API accepts, and a real worker training with them."""
import math

import numpy as np
import pytest

from backend.datasets.services import create_partition
from backend.pipelines.services import create_pipeline
from backend.runs.models import TrainingRun
from tests.conftest import wait_for
from tests.factories import ready_dataset, training_spec
from workers.training import subset_images

AUGMENT = [{"op": "flip", "params": {"probability": 0.5}}, {"op": "additive_gaussian_noise", "params": {"std": 0.05}}]


def imbalanced_partition(project, user):
    dataset = ready_dataset(project, labels=("lesion", "normal"), per_class=10)
    for sample in dataset.samples.filter(label="normal")[:6]:  # 10 lesion, 4 normal
        sample.label = "lesion"
        sample.save()
    dataset.class_counts = {"lesion": 16, "normal": 4}
    dataset.save()
    dataset.cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = np.lib.format.open_memmap(dataset.cache_path, mode="w+", dtype=np.uint8, shape=(20, 1, 64, 64))
    cache[:] = np.random.default_rng(0).integers(0, 255, cache.shape, dtype=np.uint8)
    cache.flush()
    return create_partition(user, dataset, "", 70, 15, 15, 1)


@pytest.mark.django_db
def test_a_run_records_its_augmentation_version_and_balancing_and_freezes_the_version(api, project, user):
    partition = imbalanced_partition(project, user)
    pipeline = create_pipeline(user, project, "Flips", "augmentation", AUGMENT)
    response = api.post("/api/runs/", {"partition": partition.pk, "epochs": 1, "data": {
        "augmentation": pipeline.pk, "balancing": "factors", "class_factors": {"normal": 3}}}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["spec"]["data"] == {"balancing": "factors", "class_factors": {"normal": 3}, "augmentation": pipeline.pk}
    assert body["provenance"]["augmentation"] == {"pipeline": pipeline.pk, "name": "Flips", "version": 1}
    pipeline.latest.refresh_from_db()
    assert pipeline.latest.used_at is not None, "a run's augmentation version is kept as it was"
    run = TrainingRun.objects.get(pk=body["id"])
    train = subset_images(run, "train", ["lesion", "normal"])
    counts = np.bincount(train.targets.numpy(), minlength=2)
    plain = subset_images(TrainingRun(partition=partition, spec=training_spec()), "train", ["lesion", "normal"])
    assert counts[1] == 3 * np.bincount(plain.targets.numpy(), minlength=2)[1], "each normal image used three times"
    first, again = train[0]["image"], train[0]["image"]
    assert np.array_equal(first, again), "the same epoch draws the same augmentation"
    train.set_epoch(2)
    assert not np.array_equal(train[0]["image"], first), "another epoch draws again"


@pytest.mark.django_db
def test_bad_augmentation_and_balancing_settings_are_refused_with_the_field(api, project, user):
    partition = imbalanced_partition(project, user)
    prepare = create_pipeline(user, project, "Prep", "preprocessing", [{"op": "min_max"}])
    cases = [({"augmentation": prepare.pk}, "data.augmentation", "choose an augmentation pipeline"),
             ({"augmentation": 99999}, "data.augmentation", "no pipeline with id 99999"),
             ({"balancing": "factors"}, "data.class_factors", "at least one class"),
             ({"balancing": "factors", "class_factors": {"tumour": 2}}, "data.class_factors", "no class 'tumour'"),
             ({"class_factors": {"normal": 2}}, "data.class_factors", "only when balancing is 'factors'"),
             ({"balancing": "smote"}, "data.balancing", "must be one of")]
    for data, field, message in cases:
        response = api.post("/api/runs/", {"partition": partition.pk, "epochs": 1, "data": data}, format="json")
        assert response.status_code == 400 and response.json()["field"] == field, response.content
        assert message in response.json()["message"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_trains_with_augmentation_and_weighted_sampling(api, project, user, celery_worker_process):
    partition = imbalanced_partition(project, user)
    pipeline = create_pipeline(user, project, "Flips", "augmentation", AUGMENT)
    response = api.post("/api/runs/", {"partition": partition.pk, "epochs": 2, "batch_size": 4,
                                       "data": {"augmentation": pipeline.pk, "balancing": "weighted"}}, format="json")
    run_id = response.json()["id"]
    run = wait_for(lambda: TrainingRun.objects.filter(pk=run_id, status__in=["succeeded", "failed"]).first(), 180, "the run")
    assert run.status == "succeeded", run.message
    assert run.metrics.filter(subset="train", name="loss").count() == 2


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_spreads_a_run_over_two_processes_each_on_its_shard(api, project, user, celery_worker_process):
    partition = imbalanced_partition(project, user)
    pipeline = create_pipeline(user, project, "Flips", "augmentation", AUGMENT)
    response = api.post("/api/runs/", {"partition": partition.pk, "epochs": 2, "batch_size": 4, "resources": {"processes": 2},
                                       "data": {"augmentation": pipeline.pk, "balancing": "weighted"}}, format="json")
    assert response.status_code == 202, response.content
    run = wait_for(lambda: TrainingRun.objects.filter(pk=response.json()["id"], status__in=["succeeded", "failed"]).first(), 240, "the run")
    assert run.status == "succeeded", run.message
    assert run.spec["resources"]["processes"] == 2
    train_images = sum(partition.counts["train"].values())
    assert run.progress_total == 2 * math.ceil(math.ceil(train_images / 2) / 4), "each process runs the batches of half the images"
    assert run.metrics.filter(subset="validation", name="accuracy").count() == 2
    assert run.onnx_path.exists()


def test_more_processes_than_the_largest_worker_has_are_refused(api, project, user):
    from django.utils import timezone

    from backend.core.models import WorkerHeartbeat
    from backend.core.tasks import queue_name

    partition = imbalanced_partition(project, user)
    WorkerHeartbeat.objects.create(hostname="small", queues=[queue_name("train-cpu")], cpu_count=2, last_seen=timezone.now())
    def launch(processes):
        return api.post("/api/runs/", {"partition": partition.pk, "epochs": 1, "batch_size": 2, "resources": {"processes": processes}},
                        format="json")

    response = launch(3)
    assert response.status_code == 400 and response.json()["field"] == "resources.processes"
    assert "has 2 CPU core(s); choose at most 2 processes" in response.json()["message"]
    response = launch(0)
    assert response.status_code == 400 and response.json()["field"] == "resources.processes"
    assert launch(2).status_code == 202

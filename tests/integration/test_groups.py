"""Groups of runs (issue 22, T5): one spec launched as runs over seeds or over the folds of a k-fold partition, through
the run service (each member a normal queued run); refusals with their field and nothing created; the group's figures
across members; its pooled evaluation. The runs here are queued, not trained: tests/integration/test_group_training.py
trains groups with a real worker."""
import pytest

from backend.datasets.services import create_kfold_partitions, create_partition
from backend.experiments.models import GroupMember, RunGroup
from backend.runs.models import Evaluation, MetricPoint, SamplePrediction, TrainingRun
from tests.factories import ready_dataset, training_spec
from workers.groups import pool

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(project):
    return ready_dataset(project, per_class=12)


@pytest.fixture
def partition(user, dataset):
    return create_partition(user, dataset, "", 60, 20, 20, 1)


def launch(api, **body):
    return api.post("/api/groups/", body, format="json")


def test_repeats_over_seeds_are_normal_queued_runs_seeded_from_the_spec(api, project, partition):
    response = launch(api, partition=partition.pk, spec={"epochs": 1, "seed": 40}, seeds=3)
    assert response.status_code == 202, response.content
    group = response.json()
    assert group["kind"] == "seeds" and group["seeds"] == 3 and group["name"].endswith("3 seeds")
    runs = TrainingRun.objects.filter(groups=group["id"]).order_by("spec__seed")
    assert [run.spec["seed"] for run in runs] == [40, 41, 42], "spec seed + 0, 1, 2"
    assert all(run.status == "queued" and run.partition == partition and run.epochs == 1 for run in runs)
    assert [m["seed"] for m in group["members"]] == [40, 41, 42] and all(m["status"] == "queued" for m in group["members"])
    assert group["summary"]["members"] == 3 and group["summary"]["finished"] == 0 and group["summary"]["subset"] == "test"

    listed = api.get(f"/api/groups/?project={project.pk}").json()["results"]
    assert [(g["id"], g["members"]) for g in listed] == [(group["id"], 3)]
    assert api.get(f"/api/groups/?project={project.pk + 1}").json()["results"] == []


def test_a_cross_validation_trains_one_run_per_fold_crossed_with_seeds(api, user, dataset):
    folds = create_kfold_partitions(user, dataset, "", 3, 0)
    response = launch(api, partition=folds[1].pk, spec={"epochs": 1}, seeds=2, folds=True)
    assert response.status_code == 202, response.content
    members = response.json()["members"]
    assert sorted((m["fold"], m["seed"]) for m in members) == [(f, s) for f in (1, 2, 3) for s in (0, 1)]
    by_fold = {p.fold: p.pk for p in folds}
    assert all(m["partition"] == by_fold[m["fold"]] for m in members), "each fold's run trains on the partition holding it out"
    assert response.json()["summary"]["subset"] == "validation", "the out-of-fold predictions: each run on the fold it held out"

    single = launch(api, partition=folds[0].pk, spec={"epochs": 1}, folds=True)
    assert single.status_code == 202 and len(single.json()["members"]) == 3, "one seed per fold by default"


@pytest.mark.parametrize("body, field", [
    ({"seeds": 1}, "seeds"), ({"seeds": 11}, "seeds"), ({"seeds": "many"}, "seeds"),
    ({"seeds": 2, "folds": True}, "folds"),  # a partition of percentages has no folds
    ({"seeds": 2, "spec": {"epochs": 0}}, "spec.epochs"),
    ({"seeds": 2, "spec": {"optimizer": {"name": "sgd", "momentum": 7}}}, "spec.optimizer.momentum"),
    ({"seeds": 3, "spec": {"epochs": 1, "seed": 2**31 - 2}}, "spec.seed"),  # the third member's seed is past the largest
])
def test_refusals_name_their_field_and_create_nothing(api, partition, body, field):
    response = launch(api, partition=partition.pk, **{"spec": {"epochs": 1}, **body})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field, response.json()
    assert not RunGroup.objects.exists() and not TrainingRun.objects.exists()


def test_a_viewer_or_a_stranger_cannot_launch(api, outsider, partition):
    from rest_framework.test import APIClient

    stranger = APIClient()
    stranger.force_authenticate(outsider)
    response = stranger.post("/api/groups/", {"partition": partition.pk, "seeds": 2}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "partition"
    assert not TrainingRun.objects.exists()


def finished_member(group, partition, seed, metrics, evaluation_metrics, predictions, subset="test"):
    """A succeeded run of the group with its metric points ({(subset, name): {epoch: value}}), and a done evaluation
    with its predictions [(patient, truth, probability of 'lesion')]."""
    run = TrainingRun.objects.create(project=group.project, partition=partition, name=f"seed {seed}", status="succeeded",
                                     spec=training_spec(epochs=3, seed=seed))
    GroupMember.objects.create(group=group, run=run, seed=seed)
    MetricPoint.objects.bulk_create(MetricPoint(run=run, subset=s, name=n, epoch=e, value=v)
                                    for (s, n), values in metrics.items() for e, v in values.items())
    evaluation = Evaluation.objects.create(run=run, subset=subset, status="done", results={
        "classes": ["lesion", "normal"], "metrics": {name: {"value": value} for name, value in evaluation_metrics.items()}})
    samples = list(partition.dataset.samples.order_by("pk"))
    SamplePrediction.objects.bulk_create(
        SamplePrediction(evaluation=evaluation, sample=samples[k], patient=patient, truth=truth, probabilities=[p, 1 - p],
                         predicted="lesion" if p >= 0.5 else "normal", truth_probability=p if truth == "lesion" else 1 - p,
                         confidence=max(p, 1 - p), correct=(p >= 0.5) == (truth == "lesion"))
        for k, (patient, truth, p) in enumerate(predictions))
    return run, evaluation


def test_the_summary_is_the_mean_and_deviation_across_members_and_the_pooled_evaluation(api, user, project, partition):
    group = RunGroup.objects.create(project=project, partition=partition, kind="seeds", name="Three seeds", seeds=3, created_by=user)
    cases = [  # validation loss per epoch, test accuracy, predictions (patient, truth, P(lesion))
        ({1: 1.0, 2: 0.5, 3: 0.2}, 0.6, [("A", "lesion", 0.9), ("B", "normal", 0.2), ("C", "lesion", 0.4)]),
        ({1: 2.0, 2: 1.5}, 0.7, [("A", "lesion", 0.8), ("B", "normal", 0.6), ("C", "lesion", 0.7)]),
        ({1: 3.0, 2: 1.0, 3: 0.4}, 0.8, [("A", "lesion", 0.7), ("B", "normal", 0.1), ("C", "lesion", 0.9)]),
    ]
    evaluations = [finished_member(group, partition, seed, {("validation", "loss"): losses}, {"accuracy": accuracy}, rows)[1]
                   for seed, (losses, accuracy, rows) in enumerate(cases)]
    pool(group.pk)

    summary = api.get(f"/api/groups/{group.pk}/").json()["summary"]
    assert summary["members"] == summary["finished"] == summary["succeeded"] == summary["evaluated"] == 3
    [curve] = summary["curves"]
    assert (curve["subset"], curve["name"]) == ("validation", "loss")
    expected = [{"epoch": 1, "mean": 2.0, "std": 1.0, "n": 3}, {"epoch": 2, "mean": 1.0, "std": 0.5, "n": 3},
                {"epoch": 3, "mean": 0.3, "std": 0.02 ** 0.5, "n": 2}]
    assert [band == pytest.approx(hand) for band, hand in zip(curve["epochs"], expected)] == [True] * 3, curve["epochs"]
    assert summary["test"]["accuracy"] == pytest.approx({"mean": 0.7, "std": 0.1, "n": 3})

    pooled = summary["pooled"]
    assert pooled["current"] and pooled["evaluations"] == sorted(e.pk for e in evaluations)
    results = pooled["results"]
    # 9 predictions of 3 patients, wrong only C's 0.4 (a lesion called normal) and B's 0.6 (normal called lesion): 7 of 9.
    assert results["samples"] == 9 and results["patients"] == 3
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(7 / 9)
    assert results["metrics"]["accuracy"]["low"] <= 7 / 9 <= results["metrics"]["accuracy"]["high"]
    assert results["confusion"]["counts"] == [[5, 1], [1, 2]], "rows: true lesion, true normal"

    # Another member evaluated later: the pooled figure is marked out of date until the worker pools it again.
    finished_member(group, partition, 3, {}, {"accuracy": 1.0}, [("A", "lesion", 0.9)])
    assert not api.get(f"/api/groups/{group.pk}/").json()["summary"]["pooled"]["current"]
    pool(group.pk)
    again = api.get(f"/api/groups/{group.pk}/").json()["summary"]
    assert again["pooled"]["current"] and again["pooled"]["results"]["samples"] == 10

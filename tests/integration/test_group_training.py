"""Groups trained by a real worker (issue 22, T5): a repeat over two seeds and a two-fold cross-validation of a tiny
run (the demo's images, one epoch). Every member runs as a normal run, is evaluated, and the worker pools the members'
predictions; the group's summary then holds the bands per epoch, the test metrics across members and the pooled
evaluation."""
import pytest

from backend.experiments.models import RunGroup
from backend.runs.models import Evaluation, TrainingRun
from tests.conftest import demo_entries, wait_for
from tests.integration.test_volume_training import partition_of, ready_dataset

pytestmark = pytest.mark.django_db(transaction=True)

TINY = {"model": {"architecture": "small_cnn"}, "epochs": 1}


def pooled_group(api, group_id: int, seconds: float = 400) -> dict:
    """The group once every member has finished and its pooled evaluation holds every member evaluated."""
    def ready():
        group = api.get(f"/api/groups/{group_id}/").json()
        summary = group["summary"]
        done = summary["finished"] == summary["members"] and summary["evaluated"] == summary["succeeded"]
        return group if done and summary["pooled"]["current"] and summary["evaluated"] else None
    return wait_for(ready, seconds, f"group {group_id} to finish and pool")


def test_a_repeat_over_two_seeds_runs_both_and_fills_the_summary(api, project, celery_worker_process):
    dataset = ready_dataset(api, project, demo_entries(per_class=15), "Demo")
    response = api.post("/api/groups/", {"partition": partition_of(api, dataset), "spec": TINY, "seeds": 2}, format="json")
    assert response.status_code == 202, response.content
    group = pooled_group(api, response.json()["id"])
    log = celery_worker_process.log_path.read_text()[-3000:]
    assert [(m["seed"], m["status"]) for m in group["members"]] == [(0, "succeeded"), (1, "succeeded")], log

    summary = group["summary"]
    curves = {(c["subset"], c["name"]): c["epochs"] for c in summary["curves"]}
    assert {("train", "loss"), ("validation", "loss"), ("validation", "accuracy")} <= set(curves)
    [epoch] = curves[("validation", "loss")]
    assert epoch["epoch"] == 1 and epoch["n"] == 2 and epoch["std"] is not None
    losses = [TrainingRun.objects.get(pk=m["run"]).metrics.get(subset="validation", name="loss").value for m in group["members"]]
    assert epoch["mean"] == pytest.approx(sum(losses) / 2)
    assert summary["test"]["accuracy"]["n"] == 2 and summary["test"]["auc"]["n"] == 2

    tested = sum(TrainingRun.objects.get(pk=group["members"][0]["run"]).partition.counts["test"].values())
    pooled = summary["pooled"]["results"]
    assert pooled["samples"] == 2 * tested, "each seed's predictions of the test subset"
    assert pooled["patients"] == tested, "a sample predicted by both seeds is one patient (resampled together)"
    accuracy = pooled["metrics"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"]


def test_a_two_fold_cross_validation_pools_the_out_of_fold_predictions(api, project, celery_worker_process):
    dataset = ready_dataset(api, project, demo_entries(per_class=12), "Demo")
    folds = api.post("/api/partitions/kfold/", {"dataset": dataset.pk, "folds": 2, "seed": 0}, format="json")
    assert folds.status_code == 201, folds.content
    response = api.post("/api/groups/", {"partition": folds.json()[0]["id"], "spec": TINY, "folds": True}, format="json")
    assert response.status_code == 202, response.content
    group = pooled_group(api, response.json()["id"])
    assert [(m["fold"], m["status"]) for m in group["members"]] == [(1, "succeeded"), (2, "succeeded")], \
        celery_worker_process.log_path.read_text()[-3000:]

    evaluations = Evaluation.objects.filter(run__groups=group["id"])
    assert sorted(evaluations.values_list("subset", flat=True)) == ["validation", "validation"], "each on the fold it held out"
    predicted = sorted(evaluations.values_list("predictions__sample_id", flat=True))
    assert predicted == sorted(dataset.samples.values_list("pk", flat=True)), "every sample predicted once, out of fold"
    assert group["summary"]["pooled"]["results"]["samples"] == 24 and group["summary"]["subset"] == "validation"
    assert RunGroup.objects.get(pk=group["id"]).pooled["runs"] == sorted(m["run"] for m in group["members"])

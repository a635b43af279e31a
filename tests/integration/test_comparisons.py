"""Comparisons (issue 22, R3; docs/results.md "Compare") through the API on the real database: saving one, reading it
as a member, 404 for an outsider, the refusals (another project, nothing in common, another class set per metric),
and paired tests whose numbers are those of workers/engine/paired.py on the stored predictions; segmentation runs
(issue 23) with their mean Dice and IoU, no ROC curve, and Wilcoxon's test whose numbers are SciPy's on the cases."""
import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.datasets.services import create_partition
from backend.experiments.models import Comparison, GroupMember, RunGroup
from backend.projects.models import Project, ProjectMember, Role
from backend.runs.models import SamplePrediction, SegmentationCase, TrainingRun
from tests.comparison_factories import evaluated_run, segmentation_run
from tests.factories import ready_dataset, training_spec
from workers.engine.paired import delong, mcnemar
from workers.groups import pool

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(project):
    return ready_dataset(project, per_class=15)


@pytest.fixture
def partition(user, dataset):
    return create_partition(user, dataset, "", 60, 20, 20, 1)


@pytest.fixture
def two_runs(project, partition):
    return (evaluated_run(project, partition, "Small CNN", skill=0.6, seed=1),
            evaluated_run(project, partition, "ResNet", skill=1.6, seed=2))


def client_of(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_saved_comparison_shows_curves_metrics_roc_and_is_read_by_members_only(api, user, project, partition, two_runs,
                                                                                   django_user_model, outsider):
    a, b = two_runs
    response = api.post("/api/comparisons/", {"project": project.pk, "runs": [a.pk, b.pk], "metric": "loss",
                                              "name": "CNN against ResNet"}, format="json")
    assert response.status_code == 201, response.content
    saved = response.json()
    assert saved["name"] == "CNN against ResNet" and saved["runs"] == [a.pk, b.pk] and saved["metric"] == "loss"
    comparison = Comparison.objects.get(pk=saved["id"])
    assert comparison.created_by == user and comparison.project == project

    viewer = django_user_model.objects.create_user("viewer")
    ProjectMember.objects.create(project=project, user=viewer, role=Role.VIEWER)
    shown = client_of(viewer).get(f"/api/comparisons/{comparison.pk}/")
    assert shown.status_code == 200, shown.content
    view = shown.json()["view"]
    assert [item["key"] for item in view["items"]] == [f"run-{a.pk}", f"run-{b.pk}"]
    assert view["metric"] == "loss" and set(view["metrics"]) == {"loss", "accuracy"}
    # Curves: each run's loss per subset, every epoch.
    curves = {(c["item"], c["subset"]): c for c in view["curves"]}
    assert set(curves) == {(f"run-{r.pk}", s) for r in (a, b) for s in ("train", "validation")}
    stored = list(a.metrics.filter(name="loss", subset="validation").order_by("epoch").values_list("value", flat=True))
    assert curves[(f"run-{a.pk}", "validation")]["values"] == pytest.approx(stored)
    # The test metrics are each run's evaluation's, with their intervals; the bar draws the same.
    rows = {row["metric"]: row for row in view["test"]}
    for run, cell in zip((a, b), rows["auc"]["cells"]):
        figure = run.evaluations.get().results["metrics"]["auc"]
        assert (cell["value"], cell["low"], cell["high"]) == (figure["value"], figure["low"], figure["high"])
        assert cell["shown"]["bars"] == "interval" and cell["shown"]["value"] == figure["value"]
    assert [len(entry["curves"]) for entry in view["roc"]] == [1, 1] and view["roc"][0]["curves"][0]["class"] == "normal"
    assert view["pairable"] == [a.pk, b.pk]

    # Another metric's curves on request, without changing what was saved.
    other = api.get(f"/api/comparisons/{comparison.pk}/?metric=accuracy").json()["view"]
    assert other["metric"] == "accuracy" and Comparison.objects.get(pk=comparison.pk).metric == "loss"

    assert client_of(outsider).get(f"/api/comparisons/{comparison.pk}/").status_code == 404
    assert client_of(outsider).get(f"/api/comparisons/{comparison.pk}/paired/?a={a.pk}&b={b.pk}").status_code == 404
    assert client_of(outsider).get("/api/comparisons/").json()["results"] == []
    assert [c["id"] for c in api.get(f"/api/comparisons/?project={project.pk}").json()["results"]] == [comparison.pk]
    # A viewer reads and previews but does not save (the project's write rules).
    refused = client_of(viewer).post("/api/comparisons/", {"runs": [a.pk, b.pk]}, format="json")
    assert refused.status_code == 403
    assert client_of(viewer).get(f"/api/comparisons/preview/?runs={a.pk},{b.pk}").status_code == 200


def test_a_group_shows_mean_and_sd_across_members_beside_its_pooled_interval(api, user, project, partition, two_runs):
    a, _ = two_runs
    group = RunGroup.objects.create(project=project, partition=partition, kind="seeds", name="Seeds", seeds=2, created_by=user)
    members = [evaluated_run(project, partition, f"seed {s}", skill=1.0, seed=10 + s) for s in range(2)]
    for seed, member in enumerate(members):
        GroupMember.objects.create(group=group, run=member, seed=seed)
    pool(group.pk)

    view = api.get(f"/api/comparisons/preview/?runs={a.pk}&groups={group.pk}&metric=accuracy").json()
    assert [item["key"] for item in view["items"]] == [f"run-{a.pk}", f"group-{group.pk}"]
    accuracy = {row["metric"]: row for row in view["test"]}["accuracy"]["cells"][1]
    values = [m.evaluations.get().results["metrics"]["accuracy"]["value"] for m in members]
    assert accuracy["mean"] == pytest.approx(np.mean(values)) and accuracy["std"] == pytest.approx(np.std(values, ddof=1))
    pooled = RunGroup.objects.get(pk=group.pk).pooled["results"]["metrics"]["accuracy"]
    assert accuracy["pooled"] == pooled and accuracy["n"] == 2
    assert accuracy["shown"]["bars"] == "sd" and accuracy["shown"]["high"] == pytest.approx(np.mean(values) + np.std(values, ddof=1))
    band = [c for c in view["curves"] if c["item"] == f"group-{group.pk}" and c["subset"] == "validation"][0]
    first = [m.metrics.get(epoch=1, subset="validation", name="accuracy").value for m in members]
    assert band["values"][0] == pytest.approx(np.mean(first)) and band["std"][0] == pytest.approx(np.std(first, ddof=1))
    assert "curves" in view["roc"][1], "the group's ROC is its pooled evaluation's"


def test_refusals_name_their_field(api, user, project, partition, two_runs, django_user_model):
    a, b = two_runs
    elsewhere = Project.objects.create(owner=user, name="Elsewhere")
    other_partition = create_partition(user, ready_dataset(elsewhere, per_class=10), "", 60, 20, 20, 1)
    foreign = evaluated_run(elsewhere, other_partition, "Foreign", seed=3)
    cases = [
        ({"runs": [a.pk, foreign.pk]}, "runs", "different projects"),
        ({"runs": [a.pk]}, "runs", "at least two"),
        ({"runs": [a.pk, 999999]}, "runs", "No run with id 999999"),
        ({"runs": [a.pk, b.pk], "project": elsewhere.pk}, "project", "not of project"),
        ({"runs": [a.pk, b.pk], "metric": "dice"}, "metric", "'dice'"),
        ({"runs": "many"}, "runs", None),
    ]
    for body, field, words in cases:
        response = api.post("/api/comparisons/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert response.json()["field"].split(".")[0] == field, (body, response.json())
        assert words is None or words in response.json()["message"], response.json()
    # Nothing in common: a queued run has measured nothing, so nothing is shared with a finished one.
    queued = TrainingRun.objects.create(project=project, partition=partition, name="queued", spec=training_spec(epochs=1))
    response = api.post("/api/comparisons/", {"runs": [a.pk, queued.pk]}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "nothing_in_common", response.json()
    # Metrics recorded by different names, no evaluation: nothing in common either (preview too).
    loss_only = evaluated_run(project, partition, "loss only", metric_names=("loss",), with_evaluation=False)
    dice_only = evaluated_run(project, partition, "dice only", metric_names=("dice",), with_evaluation=False)
    response = api.get(f"/api/comparisons/preview/?runs={loss_only.pk},{dice_only.pk}")
    assert response.status_code == 400 and response.json()["field"] == "runs" and "nothing in common" in response.json()["message"]
    assert api.get("/api/comparisons/preview/?runs=1,x").json()["field"] == "runs"
    assert not Comparison.objects.exists()


def test_runs_with_other_classes_are_refused_per_metric(api, project, partition, two_runs):
    a, b = two_runs
    three = evaluated_run(project, partition, "Three classes", classes=("lesion", "normal", "other"), seed=4)
    swapped = evaluated_run(project, partition, "Swapped", classes=("normal", "lesion"), seed=5)
    view = api.get(f"/api/comparisons/preview/?runs={a.pk},{b.pk},{three.pk},{swapped.pk}").json()
    rows = {row["metric"]: {cell["item"]: cell for cell in row["cells"]} for row in view["test"]}
    for metric in ("accuracy", "auc", "mcc"):
        assert "other" in rows[metric][f"run-{three.pk}"]["refused"], "another class set: refused for every metric"
        assert "value" in rows[metric][f"run-{a.pk}"]
    # The same classes in another order: the positive class differs, so AUC is refused; accuracy is not.
    assert "positive class" in rows["auc"][f"run-{swapped.pk}"]["refused"]
    assert "refused" not in rows["accuracy"][f"run-{swapped.pk}"] and rows["accuracy"][f"run-{swapped.pk}"]["value"] is not None
    roc = {entry["item"]: entry for entry in view["roc"]}
    assert "refused" in roc[f"run-{three.pk}"] and "curves" in roc[f"run-{a.pk}"]


def test_paired_tests_are_the_functions_on_the_stored_predictions(api, project, partition, two_runs, dataset):
    a, b = two_runs
    comparison = api.post("/api/comparisons/", {"runs": [a.pk, b.pk]}, format="json").json()
    response = api.get(f"/api/comparisons/{comparison['id']}/paired/?a={a.pk}&b={b.pk}")
    assert response.status_code == 200, response.content
    paired = response.json()

    def stored(run):
        rows = SamplePrediction.objects.filter(evaluation__run=run).order_by("sample_id")
        return {r.sample_id: r for r in rows}

    mine, theirs = stored(a), stored(b)
    shared = sorted(set(mine) & set(theirs))
    assert paired["samples"] == len(shared) == dataset.samples.count()
    positive = np.array([mine[s].truth == "normal" for s in shared])
    expected_auc = delong([mine[s].probabilities[1] for s in shared], [theirs[s].probabilities[1] for s in shared], positive)
    expected_accuracy = mcnemar([mine[s].correct for s in shared], [theirs[s].correct for s in shared])
    assert paired["auc"] == pytest.approx({**expected_auc, "positive_class": "normal"})
    assert paired["accuracy"] == pytest.approx(expected_accuracy)
    assert paired["auc"]["test"] == "DeLong" and paired["accuracy"]["test"].startswith("McNemar") and paired["auc"]["n"] == 30
    assert paired["auc"]["a"] == pytest.approx(a.evaluations.get().results["metrics"]["auc"]["value"])

    # Refusals: a run not in the comparison, the same run twice, no shared test sample, a task of three classes.
    assert api.get(f"/api/comparisons/{comparison['id']}/paired/?a={a.pk}&b=999").json()["field"] == "b"
    assert api.get(f"/api/comparisons/{comparison['id']}/paired/?a={a.pk}&b={a.pk}").json()["field"] == "b"
    assert api.get(f"/api/comparisons/{comparison['id']}/paired/?a={a.pk}").json()["field"] == "b"
    samples = list(dataset.samples.order_by("pk"))
    first_half = evaluated_run(project, partition, "first half", seed=6, samples=samples[:15])
    second_half = evaluated_run(project, partition, "second half", seed=7, samples=samples[15:])
    three = evaluated_run(project, partition, "three", seed=8, classes=("lesion", "normal", "other"))
    three_too = evaluated_run(project, partition, "three too", seed=9, classes=("lesion", "normal", "other"))
    apart = api.post("/api/comparisons/", {"runs": [first_half.pk, second_half.pk, three.pk, three_too.pk]}, format="json").json()
    response = api.get(f"/api/comparisons/{apart['id']}/paired/?a={first_half.pk}&b={second_half.pk}")
    assert response.status_code == 400 and response.json()["code"] == "no_shared_samples", response.json()
    not_binary = api.get(f"/api/comparisons/{apart['id']}/paired/?a={three.pk}&b={three_too.pk}").json()
    assert "two classes" in not_binary["auc"]["refused"] and not_binary["accuracy"]["n"] == 30
    other_classes = api.get(f"/api/comparisons/{apart['id']}/paired/?a={first_half.pk}&b={three.pk}").json()
    assert "classes differ" in other_classes["accuracy"]["refused"] and other_classes["samples"] == 15


@pytest.fixture
def two_segmentations(project, partition):
    return (segmentation_run(project, partition, "U-Net", skill=0.78, seed=11),
            segmentation_run(project, partition, "SegResNet", skill=0.83, seed=12))


def test_segmentations_show_mean_dice_and_iou_beside_classifiers_and_have_no_roc(api, project, partition, two_runs,
                                                                                 two_segmentations):
    classifier, _ = two_runs
    unet, segresnet = two_segmentations
    liver_only = segmentation_run(project, partition, "Liver only", labels=("background", "liver"), seed=13)
    keys = {run.pk: f"run-{run.pk}" for run in (classifier, unet, segresnet, liver_only)}

    only_segmentations = api.get(f"/api/comparisons/preview/?runs={unet.pk},{segresnet.pk}").json()
    assert [row["metric"] for row in only_segmentations["test"]] == ["mean_dice", "mean_iou"], "no classifier's rows"
    assert [item["task"] for item in only_segmentations["items"]] == ["segmentation", "segmentation"]

    view = api.get(f"/api/comparisons/preview/?runs={classifier.pk},{unet.pk},{segresnet.pk},{liver_only.pk}").json()
    rows = {row["metric"]: {cell["item"]: cell for cell in row["cells"]} for row in view["test"]}
    assert {"accuracy", "auc", "mean_dice", "mean_iou"} <= set(rows)
    for run in (unet, segresnet):
        figures = run.evaluations.get().results["metrics"]
        for metric in ("mean_dice", "mean_iou"):
            cell = rows[metric][keys[run.pk]]
            assert (cell["value"], cell["low"], cell["high"]) == (figures[metric]["value"], figures[metric]["low"], figures[metric]["high"])
            assert cell["low"] < cell["value"] < cell["high"] and cell["shown"]["bars"] == "interval"
        # A segmentation's cell of a classifier's metric is empty, not refused; and the reverse.
        assert rows["accuracy"][keys[run.pk]]["value"] is None and "refused" not in rows["accuracy"][keys[run.pk]]
    assert rows["mean_dice"][keys[classifier.pk]]["value"] is None and "refused" not in rows["mean_dice"][keys[classifier.pk]]
    assert rows["accuracy"][keys[classifier.pk]]["value"] is not None, "a classifier is measured against classifiers only"
    # Other labels: refused per metric with the labels named.
    for metric in ("mean_dice", "mean_iou"):
        assert "labels background, liver;" in rows[metric][keys[liver_only.pk]]["refused"]
        assert "background, liver, tumour" in rows[metric][keys[liver_only.pk]]["refused"]
    roc = {entry["item"]: entry for entry in view["roc"]}
    for run in (unet, segresnet, liver_only):
        assert roc[keys[run.pk]]["refused"].startswith("A segmentation has no ROC curve"), roc[keys[run.pk]]
    assert "curves" in roc[keys[classifier.pk]]


def test_two_segmentations_are_paired_by_wilcoxon_on_their_cases_mean_dice(api, project, partition, dataset, two_runs,
                                                                          two_segmentations):
    from scipy import stats

    unet, segresnet = two_segmentations
    samples = list(dataset.samples.order_by("pk"))
    part = segmentation_run(project, partition, "Part", skill=0.8, seed=14, samples=samples[5:])
    liver_only = segmentation_run(project, partition, "Liver only", labels=("background", "liver"), seed=13)
    classifier, _ = two_runs
    comparison = api.post("/api/comparisons/", {"runs": [unet.pk, segresnet.pk, part.pk, liver_only.pk, classifier.pk]},
                          format="json").json()

    def per_case(run):
        return dict(SegmentationCase.objects.filter(evaluation__run=run).values_list("sample_id", "mean_dice"))

    for a, b in ((unet, segresnet), (unet, part)):
        response = api.get(f"/api/comparisons/{comparison['id']}/paired/?a={a.pk}&b={b.pk}")
        assert response.status_code == 200, response.content
        paired = response.json()
        mine, theirs = per_case(a), per_case(b)
        shared = sorted(set(mine) & set(theirs))
        assert paired["samples"] == len(shared) == (30 if b == segresnet else 25)
        ours, others = [mine[s] for s in shared], [theirs[s] for s in shared]
        expected = stats.wilcoxon(ours, others, zero_method="wilcox", alternative="two-sided")
        dice = paired["mean_dice"]
        assert dice["test"] == "Wilcoxon signed-rank (exact)" and dice["n"] == len(shared)
        assert dice["statistic"] == pytest.approx(expected.statistic) and dice["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert dice["median_difference"] == pytest.approx(np.median(np.subtract(ours, others)))
        assert dice["a"] == pytest.approx(np.mean(ours)) and paired["task"] == "segmentation"
        assert "no ROC curve" in paired["auc"]["refused"] and "Wilcoxon" in paired["accuracy"]["refused"]
    assert paired["a"]["samples"] == 30 and paired["b"]["samples"] == 25
    # The better model by 0.05 Dice on 30 cases: the test sees it.
    assert api.get(f"/api/comparisons/{comparison['id']}/paired/?a={unet.pk}&b={segresnet.pk}").json()["mean_dice"]["p_value"] < 0.01

    other_labels = api.get(f"/api/comparisons/{comparison['id']}/paired/?a={unet.pk}&b={liver_only.pk}").json()
    assert "labels differ" in other_labels["mean_dice"]["refused"]
    mixed = api.get(f"/api/comparisons/{comparison['id']}/paired/?a={unet.pk}&b={classifier.pk}")
    assert mixed.status_code == 400 and mixed.json()["code"] == "different_tasks" and mixed.json()["field"] == "b"

"""A group's and a comparison's tables as files through the API on the real database (issue 22, R4; docs/results.md,
"Export"): each table in CSV, XLSX and JSON read back and checked against figures worked out here from the rows the
test makes (mean and sample SD across members, 7 of 9 pooled predictions right, each run's and group's cell of the
comparison page's table); bad choices refused with their field; another project's reader gets 404."""
import csv
import io
import math
import statistics

import pytest
from openpyxl import load_workbook

from backend.audit.models import AuditEvent
from backend.datasets.services import create_partition
from backend.experiments.models import GroupMember, RunGroup
from backend.runs.export import in_order
from backend.runs.models import TrainingRun
from tests.comparison_factories import evaluated_run
from tests.factories import ready_dataset, training_spec
from tests.integration.test_comparisons import client_of
from tests.integration.test_exports import attachment_name
from tests.integration.test_groups import finished_member
from workers.groups import pool

pytestmark = pytest.mark.django_db

FORMATS = ("csv", "xlsx", "json")


@pytest.fixture
def dataset(project):
    return ready_dataset(project, per_class=12)


@pytest.fixture
def partition(user, dataset):
    return create_partition(user, dataset, "", 60, 20, 20, 1)


def number(text: str):
    """A CSV cell as what it was written from: empty is None, then an int, a float, or the text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_back(response, file_format: str) -> list[list]:
    """The file's table (header first) as values, whichever format it came in; NaN read as None (JSON has no NaN)."""
    if file_format == "csv":
        rows = [[number(cell) for cell in row] for row in csv.reader(io.StringIO(response.content.decode()))]
    elif file_format == "xlsx":
        book = load_workbook(io.BytesIO(response.content))
        assert book.sheetnames[1] == "About", book.sheetnames
        rows = [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    else:
        objects = response.json()
        rows = [list(objects[0])] + [list(entry.values()) for entry in objects]
    return [[None if isinstance(cell, float) and math.isnan(cell) else cell for cell in row] for row in rows]


def same(rows, expected) -> bool:
    """Equal cell by cell, numbers to about 12 significant digits (XLSX keeps ~15)."""
    if len(rows) != len(expected):
        return False
    for row, hand in zip(rows, expected, strict=True):
        if len(row) != len(hand):
            return False
        for cell, want in zip(row, hand, strict=True):
            if isinstance(want, float) and not math.isnan(want):
                if not isinstance(cell, int | float) or cell != pytest.approx(want, rel=1e-11, abs=1e-12):
                    return False
            elif (None if isinstance(want, float) else want) != cell:
                return False
    return True


@pytest.fixture
def group(user, project, partition):
    """Three seeds evaluated on the test subset (accuracy 0.6, 0.7 and 0.8), pooled; and a fourth still queued."""
    group = RunGroup.objects.create(project=project, partition=partition, kind="seeds", name="Three seeds", seeds=3,
                                    created_by=user)
    cases = [(0.6, [("A", "lesion", 0.9), ("B", "normal", 0.2), ("C", "lesion", 0.4)]),
             (0.7, [("A", "lesion", 0.8), ("B", "normal", 0.6), ("C", "lesion", 0.7)]),
             (0.8, [("A", "lesion", 0.7), ("B", "normal", 0.1), ("C", "lesion", 0.9)])]
    for seed, (accuracy, rows) in enumerate(cases):
        run, _ = finished_member(group, partition, seed, {("validation", "loss"): {1: 1.0, 2: 0.5, 3: 0.2}},
                                 {"accuracy": accuracy, "auc": accuracy + 0.1}, rows)
        TrainingRun.objects.filter(pk=run.pk).update(epochs_completed=3)
    queued = TrainingRun.objects.create(project=project, partition=partition, name="seed 3", spec=training_spec(epochs=3, seed=3))
    GroupMember.objects.create(group=group, run=queued, seed=3)
    pool(group.pk)
    return RunGroup.objects.get(pk=group.pk)


def test_a_groups_metrics_download_in_each_format(api, group):
    pooled = group.pooled["results"]["metrics"]
    # 9 pooled predictions of 3 patients, wrong only C's 0.4 and B's 0.6: 7 of 9 right.
    assert pooled["accuracy"]["value"] == pytest.approx(7 / 9)
    by_hand = {"accuracy": (0.7, 0.1, 3), "auc": (0.8, 0.1, 3)}  # mean, sample SD (ddof=1), n of (.6, .7, .8) and (.7, .8, .9)
    assert statistics.stdev([0.6, 0.7, 0.8]) == pytest.approx(0.1)
    expected = [["metric", "mean", "std", "n", "pooled", "ci_low", "ci_high"]]
    for name in in_order(pooled):
        mean, std, n = by_hand.get(name, (None, None, 0))
        expected.append([name, mean, std, n, pooled[name].get("value"), pooled[name].get("low"), pooled[name].get("high")])
    assert expected[1][:5] == ["accuracy", 0.7, 0.1, 3, pytest.approx(7 / 9)]
    assert expected[1][5] <= 7 / 9 <= expected[1][6], "the pooled interval holds the pooled value"

    for file_format in FORMATS:
        response = api.get(f"/api/groups/{group.pk}/export/?table=metrics&file={file_format}")
        assert response.status_code == 200, response.content
        assert attachment_name(response) == f"Three-seeds-group{group.pk}-metrics.{file_format}"
        rows = read_back(response, file_format)
        assert same(rows, expected), (file_format, rows, expected)
    assert api.get(f"/api/groups/{group.pk}/export/").content == api.get(
        f"/api/groups/{group.pk}/export/?table=metrics&file=csv").content, "metrics as CSV by default"
    assert AuditEvent.objects.filter(action="download", object_type="group", object_id=group.pk).exists()


def test_a_groups_members_download_in_each_format(api, group):
    members = list(group.members.order_by("seed"))
    expected = [["run", "name", "fold", "seed", "status", "epochs_completed", "epochs", "accuracy", "auc"]]
    for member, accuracy in zip(members, (0.6, 0.7, 0.8, None), strict=True):
        run = member.run
        done = accuracy is not None
        expected.append([run.pk, f"seed {member.seed}", None, member.seed, "succeeded" if done else "queued", 3 if done else 0, 3,
                         accuracy, accuracy + 0.1 if done else None])
    for file_format in FORMATS:
        response = api.get(f"/api/groups/{group.pk}/export/?table=members&file={file_format}")
        assert response.status_code == 200, response.content
        assert attachment_name(response) == f"Three-seeds-group{group.pk}-members.{file_format}"
        rows = read_back(response, file_format)
        assert same(rows, expected), (file_format, rows, expected)


@pytest.fixture
def comparison(api, user, project, partition):
    """Two runs, a group of two seeds (pooled) and a run over another class set, saved as a comparison."""
    a = evaluated_run(project, partition, "Small CNN", skill=0.6, seed=1)
    b = evaluated_run(project, partition, "ResNet", skill=1.6, seed=2)
    three = evaluated_run(project, partition, "Three classes", classes=("lesion", "normal", "other"), seed=4)
    group = RunGroup.objects.create(project=project, partition=partition, kind="seeds", name="Seeds", seeds=2, created_by=user)
    for seed in range(2):
        GroupMember.objects.create(group=group, run=evaluated_run(project, partition, f"seed {seed}", seed=10 + seed), seed=seed)
    pool(group.pk)
    response = api.post("/api/comparisons/", {"project": project.pk, "runs": [a.pk, b.pk, three.pk], "groups": [group.pk],
                                              "name": "Runs & seeds"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"], (a, b, three), RunGroup.objects.get(pk=group.pk)


def test_a_comparisons_results_download_in_each_format(api, comparison):
    pk, (a, b, three), group = comparison
    runs = [a, b, three]
    run_metrics = {run.pk: run.evaluations.get().results["metrics"] for run in runs}
    member_metrics = [member.run.evaluations.get().results["metrics"] for member in group.members.all()]
    pooled = group.pooled["results"]["metrics"]
    headline = ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "auc", "average_precision", "brier", "ece")
    expected = [["metric", "kind", "id", "name", "value", "ci_low", "ci_high", "mean", "std", "n", "refused"]]
    for metric in headline:
        if all(run_metrics[run.pk].get(metric, {}).get("value") is None for run in runs):
            continue
        for run in (a, b):
            figure = run_metrics[run.pk][metric]
            expected.append([metric, "run", run.pk, run.name, figure["value"], figure.get("low"), figure.get("high"),
                             None, None, None, None])
        expected.append([metric, "run", three.pk, "Three classes", None, None, None, None, None, None, "refused"])
        values = [m[metric]["value"] for m in member_metrics]
        expected.append([metric, "group", group.pk, "Seeds", pooled[metric]["value"], pooled[metric]["low"], pooled[metric]["high"],
                         statistics.mean(values), statistics.stdev(values), 2, None])
    assert len(expected) > 4 * 4, "several metrics, four items each"

    for file_format in FORMATS:
        response = api.get(f"/api/comparisons/{pk}/export/?table=metrics&file={file_format}")
        assert response.status_code == 200, response.content
        assert attachment_name(response) == f"Runs-seeds-comparison{pk}-metrics.{file_format}"
        rows = read_back(response, file_format)
        for row, hand in zip(rows[1:], expected[1:], strict=True):
            if hand[-1] == "refused":  # the reason, in the service's words: another class set
                assert row[-1].startswith("Not comparable") and "lesion, normal, other" in row[-1], row
                row[-1] = "refused"
        assert same(rows, expected), (file_format, rows, expected)
    assert api.get(f"/api/comparisons/{pk}/export/").content == api.get(
        f"/api/comparisons/{pk}/export/?table=metrics&file=csv").content, "the results as CSV by default"


@pytest.mark.parametrize("query, field, allowed", [
    ("table=predictions", "table", "metrics, members"),
    ("file=pdf", "file", "csv, xlsx, json"),
])
def test_a_bad_group_choice_is_refused_with_the_allowed_values(api, group, query, field, allowed):
    response = api.get(f"/api/groups/{group.pk}/export/?{query}")
    assert response.status_code == 400 and response.json()["field"] == field, response.content
    assert allowed in response.json()["message"]


@pytest.mark.parametrize("query, field, allowed", [
    ("table=members", "table", "must be one of metrics"),
    ("file=xls", "file", "csv, xlsx, json"),
])
def test_a_bad_comparison_choice_is_refused_with_the_allowed_values(api, comparison, query, field, allowed):
    response = api.get(f"/api/comparisons/{comparison[0]}/export/?{query}")
    assert response.status_code == 400 and response.json()["field"] == field, response.content
    assert allowed in response.json()["message"]


def test_another_projects_reader_gets_not_found(outsider, group, comparison):
    stranger = client_of(outsider)
    for path in (f"/api/groups/{group.pk}/export/", f"/api/groups/{group.pk}/export/?table=members&file=xlsx",
                 f"/api/comparisons/{comparison[0]}/export/", f"/api/comparisons/{comparison[0]}/export/?file=json"):
        assert stranger.get(path).status_code == 404, path

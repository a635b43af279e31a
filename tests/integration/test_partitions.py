"""Partitions over the API: percentages with patients kept whole, k-fold, subsets from a table column, leakage listed."""
from collections import defaultdict

import pytest

from backend.datasets.models import PartitionMember
from tests.factories import ready_dataset

pytestmark = pytest.mark.django_db


def subsets_by_patient(partition_id) -> dict[str, set[str]]:
    found = defaultdict(set)
    for patient, subset in PartitionMember.objects.filter(partition_id=partition_id).values_list("sample__patient", "subset"):
        found[patient].add(subset)
    return found


def test_a_percentage_partition_keeps_patients_whole_and_says_so(api, project):
    dataset = ready_dataset(project, per_class=20)
    body = api.post("/api/partitions/", {"dataset": dataset.pk, "seed": 3}, format="json").json()
    assert body["method"] == "percentages" and body["leaking_patients"] == {}
    assert all(len(subsets) == 1 for subsets in subsets_by_patient(body["id"]).values())


def test_k_fold_makes_k_partitions_whose_validation_folds_cover_every_sample_once(api, project):
    dataset = ready_dataset(project, per_class=10)
    response = api.post("/api/partitions/kfold/", {"dataset": dataset.pk, "folds": 4, "seed": 1}, format="json")
    assert response.status_code == 201, response.content
    partitions = response.json()
    assert [(p["fold"], p["folds"], p["method"]) for p in partitions] == [(k, 4, "kfold") for k in range(1, 5)]
    validated = defaultdict(int)
    for partition in partitions:
        assert partition["leaking_patients"] == {} and partition["test_percent"] == 0
        members = PartitionMember.objects.filter(partition_id=partition["id"])
        for sample_id in members.filter(subset="validation").values_list("sample_id", flat=True):
            validated[sample_id] += 1
        assert all(len(s) == 1 for s in subsets_by_patient(partition["id"]).values())
    assert sorted(validated) == sorted(dataset.samples.values_list("id", flat=True)) and set(validated.values()) == {1}
    response = api.post("/api/partitions/kfold/", {"dataset": dataset.pk, "folds": 1}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "folds"


def test_subsets_from_a_table_column_are_taken_as_given_and_leaks_are_listed(api, project):
    dataset = ready_dataset(project, per_class=2)
    samples = list(dataset.samples.order_by("id"))
    words = ["train", "Train", "val", "test"]  # the first two share a patient (P-0000), so do the last two (P-0001)
    for sample, word in zip(samples, words):
        sample.meta = {**sample.meta, "table": {"split": word}}
        sample.save()
    response = api.post("/api/partitions/", {"dataset": dataset.pk, "method": "column", "column": "split"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["counts"]["train"] == {"lesion": 2} and body["counts"]["validation"] == {"normal": 1}
    assert body["leaking_patients"] == {"P-0001": ["validation", "test"]}, "offenders are listed, not hidden"
    samples[0].meta = {"table": {"split": "later"}}
    samples[0].save()
    response = api.post("/api/partitions/", {"dataset": dataset.pk, "method": "column", "column": "split"}, format="json")
    assert response.status_code == 400 and "values like 'later'" in response.json()["message"]
    response = api.post("/api/partitions/", {"dataset": dataset.pk, "method": "column", "column": "fold"}, format="json")
    assert response.status_code == 400 and "Join a table" in response.json()["message"]
    response = api.post("/api/partitions/", {"dataset": dataset.pk, "method": "column"}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "column"

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


def six_patients_of_twelve(project):
    """72 samples: 3 lesion patients and 3 normal patients, 12 images each (P-0000 .. P-0005)."""
    dataset = ready_dataset(project, per_class=36, name="Six patients")
    for sample in dataset.samples.all():
        sample.patient = f"P-{sample.cache_index // 12:04d}"
        sample.save(update_fields=["patient"])
    return dataset


def test_six_patients_cannot_fill_70_15_15_and_the_empty_test_subset_is_refused_with_the_counts(api, project):
    """Worked by hand: each label has 36 images, so its targets are 25/6/5 (largest remainder). Its first two patients
    fill train (24); the third fits validation best (6 fit, 6 overflow) rather than test (5 fit, 7 overflow) or
    train (1 fits, 11 overflow). Both labels alike: 48 / 24 / 0, patients 4 / 2 / 0."""
    dataset = six_patients_of_twelve(project)
    asked = {"dataset": dataset.pk, "train_percent": 70, "validation_percent": 15, "test_percent": 15, "seed": 42}
    preview = api.post("/api/partitions/preview/", asked, format="json")
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["summary"] == "train 48 · validation 24 · test 0 samples (6 patients: 4/2/0)"
    assert {name: (s["samples"], s["patients"], s["percent"]) for name, s in body["subsets"].items()} == {
        "train": (48, 4, 66.7), "validation": (24, 2, 33.3), "test": (0, 0, 0.0)}
    assert body["grouped_by"] == "patient" and body["existing"] is None
    assert body["warnings"] == ["This split gives 67/33/0 % of the samples where 70/15/15 % was asked: patients are kept whole, "
                                "and each of the 6 holds about 17 % of the samples."]
    assert [(r["field"], r["counts"], r["patients"]) for r in body["refusals"]] == [
        ("test_percent", {"train": 48, "validation": 24, "test": 0}, {"train": 4, "validation": 2, "test": 0})]

    refused = api.post("/api/partitions/", asked, format="json")
    assert refused.status_code == 400
    error = refused.json()
    assert error["code"] == "empty_subset" and error["field"] == "test_percent"
    assert error["message"].startswith("The test subset would be empty: train 48 · validation 24 · test 0 samples (6 patients: 4/2/0).")
    assert "Set test to 0 % for no test subset" in error["message"]
    assert error["counts"] == {"train": 48, "validation": 24, "test": 0}, "the counts come with the refusal, not only in words"
    assert error == {**body["refusals"][0], "errors": body["refusals"]}, "the preview refuses what the creation refuses"
    assert not dataset.partitions.exists()

    # Asking for no test subset is what whole patients give: made, with its patients counted.
    made = api.post("/api/partitions/", {**asked, "validation_percent": 30, "test_percent": 0}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["patients"] == {"train": 4, "validation": 2, "test": 0} and made.json()["samples_without_patient"] == 0
    # 50/25/25 gives each subset two patients (24 / 24 / 24), far from the percentages but none empty: a warning only.
    even = api.post("/api/partitions/preview/", {**asked, "train_percent": 50, "validation_percent": 25, "test_percent": 25},
                    format="json").json()
    assert even["summary"] == "train 24 · validation 24 · test 24 samples (6 patients: 2/2/2)" and even["refusals"] == []
    assert even["warnings"][0].startswith("This split gives 33/33/33 % of the samples where 50/25/25 % was asked")


def test_k_fold_refuses_more_folds_than_whole_patients_fill(api, project):
    dataset = six_patients_of_twelve(project)
    response = api.post("/api/partitions/kfold/", {"dataset": dataset.pk, "folds": 10, "seed": 1}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "folds"
    assert "24, 24, 24, 0, 0, 0, 0, 0, 0, 0 samples, from 6 patients" in response.json()["message"]
    assert not dataset.partitions.exists()


def test_the_same_partition_twice_is_refused_naming_the_one_made_before(api, project):
    dataset = ready_dataset(project)
    asked = {"dataset": dataset.pk, "train_percent": 70, "validation_percent": 15, "test_percent": 15, "seed": 3}
    first = api.post("/api/partitions/", {**asked, "name": "Mine"}, format="json").json()
    assert api.post("/api/partitions/preview/", asked, format="json").json()["existing"] == {"id": first["id"], "name": "Mine"}
    again = api.post("/api/partitions/", {**asked, "name": "Mine again"}, format="json")
    assert again.status_code == 400
    error = again.json()
    assert error["code"] == "duplicate" and error["existing"] == {"id": first["id"], "name": "Mine"}
    assert f"'Mine' (id {first['id']})" in error["message"] and "change the seed or the percentages" in error["message"]
    assert dataset.partitions.count() == 1
    # Another seed, or other percentages, is another partition.
    assert api.post("/api/partitions/", {**asked, "seed": 4}, format="json").status_code == 201
    assert api.post("/api/partitions/preview/", {**asked, "seed": 5}, format="json").json()["existing"] is None
    # A k-fold cross-validation made twice: refused, naming its first fold.
    folds = api.post("/api/partitions/kfold/", {"dataset": dataset.pk, "folds": 2, "seed": 1}, format="json").json()
    twice = api.post("/api/partitions/kfold/", {"dataset": dataset.pk, "folds": 2, "seed": 1}, format="json")
    assert twice.status_code == 400 and twice.json()["existing"]["id"] == folds[0]["id"]
    assert dataset.partitions.count() == 4


def test_without_patient_ids_the_split_is_said_to_be_by_image(api, project):
    dataset = ready_dataset(project)
    dataset.samples.update(patient="")
    asked = {"dataset": dataset.pk, "train_percent": 70, "validation_percent": 15, "test_percent": 15, "seed": 1}
    preview = api.post("/api/partitions/preview/", asked, format="json").json()
    assert preview["grouped_by"] == "image" and preview["patients"] == 0 and preview["samples_without_patient"] == 20
    # Each label's 10 images: 7 / 1.5 / 1.5, the odd one to validation (remainders tie, validation comes first).
    assert preview["summary"] == "train 14 · validation 4 · test 2 samples (no patient IDs: split by image)"
    assert preview["warnings"] == ["No sample has a patient ID, so the split is by image: images of one patient may be in both "
                                   "training and test, and the test figures may then be optimistic."]
    made = api.post("/api/partitions/", asked, format="json").json()
    assert made["samples_without_patient"] == 20 and made["patients"] == {"train": 0, "validation": 0, "test": 0}
    # Some samples without an ID: split image by image, and said so.
    dataset.samples.filter(label="lesion").update(patient="P-1")
    partly = api.post("/api/partitions/preview/", {**asked, "seed": 2}, format="json").json()
    assert partly["grouped_by"] == "patient where known" and partly["summary"].endswith("(1 patient: 1/0/0; 10 samples without a patient ID)")
    assert partly["warnings"][0].startswith("10 of 20 samples have no patient ID and are split image by image")

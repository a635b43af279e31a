"""Property-based tests of the splitter: for random datasets with patients, labels and percentages,
subsets are disjoint, cover everything, keep patients whole, and keep each class's proportions to
one sample when every patient has one sample."""
from collections import Counter, defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.engine.splits import (
    SUBSETS,
    allocate,
    balanced_weights,
    grouped_split,
    kfold_split,
    leaking_patients,
    oversampled,
    shards,
    subsets_from_column,
)


@st.composite
def datasets(draw, one_sample_per_patient=False):
    count = draw(st.integers(1, 300))
    labels = draw(st.lists(st.sampled_from("abcd"), min_size=count, max_size=count))
    if one_sample_per_patient:
        patients = [f"P{i}" for i in range(count)]
    else:
        patient_count = draw(st.integers(1, count))
        patients = [f"P{draw(st.integers(0, patient_count - 1))}" for _ in range(count)]
    return labels, patients


@st.composite
def percentages(draw):
    train = draw(st.integers(0, 100))
    validation = draw(st.integers(0, 100 - train))
    return {"train": float(train), "validation": float(validation), "test": float(100 - train - validation)}


@settings(max_examples=150, deadline=None)
@given(datasets(), percentages(), st.integers(0, 2**31 - 1))
def test_subsets_are_disjoint_cover_everything_and_keep_patients_whole(data, shares, seed):
    labels, patients = data
    assignment = grouped_split(labels, shares, seed, patients)
    assert len(assignment) == len(labels) and set(assignment) <= set(SUBSETS), "every sample in exactly one subset"
    assert leaking_patients(assignment, patients) == {}, "no patient in two subsets"
    assert assignment == grouped_split(labels, shares, seed, patients), "the seed reproduces it"
    for subset, share in shares.items():
        if share == 0:
            assert subset not in assignment, "a subset asked to be empty stays empty"


@settings(max_examples=150, deadline=None)
@given(datasets(one_sample_per_patient=True), percentages(), st.integers(0, 2**31 - 1))
def test_with_one_sample_per_patient_each_class_keeps_its_proportions_to_one_sample(data, shares, seed):
    labels, patients = data
    assignment = grouped_split(labels, shares, seed, patients)
    counts = Counter(zip(labels, assignment))
    for label, total in Counter(labels).items():
        for subset, share in shares.items():
            assert abs(counts[(label, subset)] - total * share / 100) <= 1, (label, subset, counts[(label, subset)], total, share)


@settings(max_examples=100, deadline=None)
@given(datasets(), st.integers(2, 10), st.integers(0, 2**31 - 1))
def test_folds_keep_patients_whole_and_cover_everything(data, folds, seed):
    labels, patients = data
    assignment = kfold_split(labels, folds, seed, patients)
    assert set(assignment) <= set(range(folds)) and len(assignment) == len(labels)
    by_patient = defaultdict(set)
    for fold, patient in zip(assignment, patients):
        by_patient[patient].add(fold)
    assert all(len(found) == 1 for found in by_patient.values())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("abc"), min_size=0, max_size=200), st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_shards_are_disjoint_covering_and_balanced_within_one_sample(labels, count, seed):
    indices = list(range(100, 100 + len(labels)))
    dealt = shards(indices, labels, count, seed)
    flat = [i for shard in dealt for i in shard]
    assert sorted(flat) == indices, "disjoint and covering"
    sizes = [len(shard) for shard in dealt]
    assert max(sizes) - min(sizes) <= 1
    label_of = dict(zip(indices, labels))
    for label in set(labels):
        per_shard = [sum(label_of[i] == label for i in shard) for shard in dealt]
        assert max(per_shard) - min(per_shard) <= 2, "each label spread evenly (to the round robin's carry)"


def test_grouping_beats_splitting_a_patient_even_when_proportions_suffer():
    # Two patients with 9 samples each and 2 patients with 1: only whole patients can move.
    labels = ["a"] * 20
    patients = ["big1"] * 9 + ["big2"] * 9 + ["small1", "small2"]
    assignment = grouped_split(labels, {"train": 50, "validation": 0, "test": 50}, 3, patients)
    assert leaking_patients(assignment, patients) == {}
    assert sorted(Counter(assignment).values()) == [10, 10]


def test_allocate_sums_exactly_and_the_old_entry_point_still_splits():
    for count in range(0, 50):
        assert sum(allocate(count, {"train": 70, "validation": 15, "test": 15}).values()) == count


def test_a_table_column_names_subsets_and_leaks_are_listed():
    subsets, unknown = subsets_from_column(["Train", "val", "TEST", "holdout", "later"])
    assert subsets == ["train", "validation", "test", "test", ""] and unknown == [(4, "later")]
    assert leaking_patients(["train", "test", "train", "validation"], ["P1", "P1", "P2", "P2"]) == {
        "P1": ["train", "test"], "P2": ["train", "validation"]}


def test_balancing_by_weights_and_by_oversampling():
    labels = ["a"] * 8 + ["b"] * 2
    weights = balanced_weights(labels)
    assert sum(w for w, lab in zip(weights, labels) if lab == "a") == sum(w for w, lab in zip(weights, labels) if lab == "b")
    indices = oversampled(list(range(10)), labels, seed=1)
    assert Counter(labels[i] for i in indices) == {"a": 8, "b": 8}
    assert Counter(i for i in indices if labels[i] == "b") == {8: 4, 9: 4}, "each minority sample repeated equally"
    assert np.isclose(sum(weights), 1.0)

from collections import Counter

import pytest

from workers.engine.splits import allocate, stratified_split, subset_sizes

PERCENT = {"train": 70, "validation": 15, "test": 15}


def test_allocate_sums_exactly():
    for count in range(0, 50):
        assert sum(allocate(count, PERCENT).values()) == count
    assert allocate(100, PERCENT) == {"train": 70, "validation": 15, "test": 15}


def test_split_is_stratified_reproducible_and_covering():
    labels = ["a"] * 300 + ["b"] * 100
    first = stratified_split(labels, PERCENT, seed=7)
    assert first == stratified_split(labels, PERCENT, seed=7)
    assert first != stratified_split(labels, PERCENT, seed=8)
    per_subset = Counter(zip(first, labels))
    assert per_subset[("train", "a")] == 210 and per_subset[("train", "b")] == 70
    assert per_subset[("test", "a")] == 45 and per_subset[("test", "b")] == 15
    assert all(first)


def test_percentages_must_add_to_100():
    with pytest.raises(ValueError):
        stratified_split(["a", "b"], {"train": 70, "validation": 15, "test": 10}, seed=0)


def test_subset_sizes_count_samples_and_patients_and_leave_out_samples_without_an_id():
    assignment = ["train", "train", "train", "validation", "train", "validation"]
    patients = ["P1", "P1", "P2", "P3", "", ""]
    assert subset_sizes(assignment, patients) == {"train": {"samples": 4, "patients": 2}, "validation": {"samples": 2, "patients": 1},
                                                  "test": {"samples": 0, "patients": 0}}
    assert subset_sizes(assignment)["train"] == {"samples": 4, "patients": 0}

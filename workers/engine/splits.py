"""Assign samples to subsets: train / validation / test, folds, shards; check for patient leakage.

Every split here keeps each patient's samples together (a patient in two subsets
would let a model be tested on someone it trained on), is stratified by label as
far as whole patients allow, and is reproducible from its seed.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

SUBSETS = ("train", "validation", "test")
# Words a table may use for a subset.
SUBSET_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation", "val": "validation",
                "dev": "validation", "test": "test", "testing": "test", "holdout": "test"}


def allocate(count: int, percentages: dict[str, float]) -> dict[str, int]:
    """Split `count` items by percentages with the largest-remainder method (sums exactly)."""
    exact = {name: count * pct / 100.0 for name, pct in percentages.items()}
    sizes = {name: int(np.floor(value)) for name, value in exact.items()}
    leftover = count - sum(sizes.values())
    by_remainder = sorted(exact, key=lambda name: (exact[name] - sizes[name], percentages[name]), reverse=True)
    for name in by_remainder[:leftover]:
        sizes[name] += 1
    return sizes


def groups_of(count: int, patients: list[str] | None) -> list[list[int]]:
    """Sample indices by patient; a sample with no patient is a group of its own."""
    if patients is None:
        return [[i] for i in range(count)]
    by_patient: dict[str, list[int]] = defaultdict(list)
    alone = []
    for index, patient in enumerate(patients):
        (by_patient[patient] if patient else alone).append(index)
    return list(by_patient.values()) + [[i] for i in alone]


def grouped_split(labels: list[str], percentages: dict[str, float], seed: int, patients: list[str] | None = None) -> list[str]:
    """The subset of each sample: patients kept whole, each label's proportions kept in every subset
    as closely as whole patients allow (exactly, to one sample, when every patient has one sample).

    Greedy over patients, largest first (ties in a seeded random order): each goes to the subset
    with the most room left for its labels. Reproducible from the seed.
    """
    if abs(sum(percentages.values()) - 100.0) > 1e-9:
        raise ValueError("percentages must add up to 100")
    names = list(percentages)
    label_totals = Counter(labels)
    targets = {label: allocate(total, percentages) for label, total in label_totals.items()}
    filled = {name: Counter() for name in names}
    rng = np.random.default_rng(seed)
    groups = groups_of(len(labels), patients)
    order = rng.permutation(len(groups))
    order = sorted(order, key=lambda g: -len(groups[g]))  # stable: equal sizes keep the seeded order
    assignment = [""] * len(labels)
    for g in order:
        members = groups[g]
        mix = Counter(labels[i] for i in members)
        subset = max(names, key=lambda name: room_score(mix, filled[name], {lab: targets[lab][name] for lab in mix}))
        filled[subset].update(mix)
        for index in members:
            assignment[index] = subset
    return assignment


def room_score(mix: Counter, filled: Counter, targets: dict[str, int]) -> tuple[float, float]:
    """How well a group fits a subset: samples that fit its room minus those that overflow it,
    then the share of the room still free (so the emptiest subset wins ties)."""
    fits = sum(min(count, max(targets[label] - filled[label], 0)) for label, count in mix.items())
    overflow = sum(max(filled[label] + count - targets[label], 0) for label, count in mix.items())
    room = sum(max(targets[label] - filled[label], 0) for label in mix)
    total = sum(targets.values())
    return fits - overflow, room / total if total else -1.0


def stratified_split(labels: list[str], percentages: dict[str, float], seed: int) -> list[str]:
    """grouped_split with every sample its own patient."""
    return grouped_split(labels, percentages, seed)


def kfold_split(labels: list[str], folds: int, seed: int, patients: list[str] | None = None) -> list[int]:
    """The fold (0..folds-1) of each sample: patients whole, labels spread evenly over the folds."""
    if not 2 <= folds <= 20:
        raise ValueError("folds must be between 2 and 20")
    percentages = {str(k): 100.0 / folds for k in range(folds)}
    # Equal shares that do not sum to 100 exactly in floating point: rescale the last.
    percentages[str(folds - 1)] = 100.0 - sum(percentages[str(k)] for k in range(folds - 1))
    return [int(fold) for fold in grouped_split(labels, percentages, seed, patients)]


def subsets_from_column(values: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
    """A table column's words as subsets; also (index, value) for values that name no subset."""
    subsets, unknown = [], []
    for index, value in enumerate(values):
        subset = SUBSET_WORDS.get(str(value).strip().lower(), "")
        subsets.append(subset)
        if not subset:
            unknown.append((index, str(value)))
    return subsets, unknown


def subset_sizes(assignment: list[str], patients: list[str] | None = None, names=SUBSETS) -> dict[str, dict[str, int]]:
    """{subset: {"samples": n, "patients": m}} for each name: what a split gives, before or after it is stored.

    A sample without a patient ID counts as a sample only (it was placed on its own, as groups_of does).
    """
    sizes = {name: {"samples": 0, "patients": 0} for name in names}
    seen: dict[str, set[str]] = defaultdict(set)
    for index, subset in enumerate(assignment):
        sizes.setdefault(subset, {"samples": 0, "patients": 0})["samples"] += 1
        if patients is not None and patients[index]:
            seen[subset].add(patients[index])
    for subset, found in seen.items():
        sizes[subset]["patients"] = len(found)
    return sizes


def leaking_patients(assignment: list[str], patients: list[str]) -> dict[str, list[str]]:
    """Patients whose samples sit in more than one subset, with those subsets."""
    seen: dict[str, set[str]] = defaultdict(set)
    for subset, patient in zip(assignment, patients):
        if patient and subset:
            seen[patient].add(subset)
    order = {name: position for position, name in enumerate(SUBSETS)}
    return {patient: sorted(found, key=lambda name: (order.get(name, len(order)), name))
            for patient, found in sorted(seen.items()) if len(found) > 1}


def shards(indices: list[int], labels: list[str], count: int, seed: int) -> list[list[int]]:
    """The training subset dealt to `count` workers: disjoint, covering, sizes within one sample,
    each label spread as evenly as it can be."""
    if count < 1:
        raise ValueError("at least one shard")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in zip(indices, labels):
        by_label[label].append(index)
    dealt: list[list[int]] = [[] for _ in range(count)]
    position = 0
    for label in sorted(by_label):
        members = list(rng.permutation(by_label[label]))
        for index in members:  # round robin continues across labels, so sizes stay within one
            dealt[position % count].append(int(index))
            position += 1
    return dealt


def balanced_weights(labels: list[str]) -> list[float]:
    """Per-sample weights that draw every class equally often (for weighted sampling)."""
    counts = Counter(labels)
    return [1.0 / (len(counts) * counts[label]) for label in labels]


def oversampled(indices: list[int], labels: list[str], seed: int) -> list[int]:
    """Indices with the smaller classes repeated up to the largest: each member of a class as
    evenly often as the others (a shuffled copy, cycled)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in zip(indices, labels):
        by_label[label].append(index)
    largest = max((len(members) for members in by_label.values()), default=0)
    result = []
    for label in sorted(by_label):
        members = by_label[label]
        extra = np.resize(rng.permutation(members), largest - len(members)).tolist()
        result.extend(members + [int(i) for i in extra])
    return result

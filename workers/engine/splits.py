"""Assign samples to train / validation / test subsets."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

SUBSETS = ("train", "validation", "test")


def allocate(count: int, percentages: dict[str, float]) -> dict[str, int]:
    """Split `count` items by percentages with the largest-remainder method (sums exactly)."""
    exact = {name: count * pct / 100.0 for name, pct in percentages.items()}
    sizes = {name: int(np.floor(value)) for name, value in exact.items()}
    leftover = count - sum(sizes.values())
    by_remainder = sorted(exact, key=lambda name: (exact[name] - sizes[name], percentages[name]), reverse=True)
    for name in by_remainder[:leftover]:
        sizes[name] += 1
    return sizes


def stratified_split(labels: list[str], percentages: dict[str, float], seed: int) -> list[str]:
    """The subset of each sample, keeping each label's proportions in every subset.

    Reproducible: the same labels, percentages and seed give the same assignment.
    """
    if abs(sum(percentages.values()) - 100.0) > 1e-9:
        raise ValueError("percentages must add up to 100")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    assignment = [""] * len(labels)
    for label in sorted(by_label):
        indices = np.array(by_label[label])
        rng.shuffle(indices)
        start = 0
        for subset, size in allocate(len(indices), percentages).items():
            for index in indices[start:start + size]:
                assignment[int(index)] = subset
            start += size
    return assignment

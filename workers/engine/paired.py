"""Paired tests between two classifiers measured on the same samples (issue 22, R3; docs/results.md "Compare").

- **DeLong's test** for the difference of two correlated ROC AUCs (DeLong, DeLong & Clarke-Pearson, Biometrics 1988),
  computed with the fast algorithm of Sun & Xu (IEEE Signal Processing Letters 2014): the structural components come
  from mid-ranks (one sort per model) instead of comparing every positive with every negative. Two classes only.
- **McNemar's test** for the difference of two accuracies on the same samples: only the discordant samples (one model
  right, the other wrong) count. Exact two-sided binomial test on them (p = 0.5) up to EXACT_UP_TO discordant pairs;
  above, the chi-square with Yates's continuity correction, whose approximation is then very close.

NumPy and the standard library only, so the web process can compute them without SciPy (scipy.stats has neither
test for paired AUCs; statsmodels' McNemar would bring SciPy and pandas). tests/unit/test_paired.py checks both against
hand-worked examples, a brute-force DeLong and scipy.stats.binomtest.
"""
from __future__ import annotations

import math

import numpy as np

EXACT_UP_TO = 5000  # discordant pairs: the exact binomial test up to here, the chi-square with continuity above


def midranks(values: np.ndarray) -> np.ndarray:
    """The rank (1-based) of each value, ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    # positions start..end-1 (0-based) share the rank (start + 1 + end) / 2
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def delong(scores_a, scores_b, positive) -> dict:
    """DeLong's test that two models' AUCs on the same samples are equal. scores_*: each sample's score for the positive
    class; positive: whether each sample is of that class. Returns {test, n, positives, negatives, a, b, difference,
    standard_error, z, p_value}: two-sided p from the normal distribution (math.erfc)."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.vstack([np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)])
    if scores.shape[1] != len(positive):
        raise ValueError(f"{len(positive)} samples need as many scores per model; got {scores.shape[1]}")
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least two samples of each class; these have {m} positive and {n} negative")
    # Positives first (Sun & Xu's ordering), then the three mid-rankings per model.
    ordered = np.hstack([scores[:, positive], scores[:, ~positive]])
    aucs, v10, v01 = [], [], []
    for row in ordered:
        tx, ty, tz = midranks(row[:m]), midranks(row[m:]), midranks(row)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[:m] - tx) / n)  # per positive: the share of negatives it is scored above (ties half)
        v01.append(1.0 - (tz[m:] - ty) / m)  # per negative: the share of positives scored above it
    covariance = np.cov(np.asarray(v10)) / m + np.cov(np.asarray(v01)) / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    difference = float(aucs[0] - aucs[1])
    if variance <= 1e-15:  # identical rankings (or a perfect pair): no spread to test against
        z, p_value, error = None, 1.0 if abs(difference) < 1e-12 else 0.0, 0.0
    else:
        error = math.sqrt(variance)
        z = difference / error
        p_value = math.erfc(abs(z) / math.sqrt(2))
    return {"test": "DeLong", "n": m + n, "positives": m, "negatives": n, "a": float(aucs[0]), "b": float(aucs[1]),
            "difference": difference, "standard_error": error, "z": z, "p_value": float(p_value)}


def binomial_two_sided(k: int, n: int) -> float:
    """The exact two-sided p of k successes in n trials with p = 0.5: twice the smaller tail, at most 1. Summed in
    whole numbers (math.comb's recurrence) and divided once, so nothing is rounded on the way."""
    low = min(k, n - k)
    term, tail = 1, 1
    for i in range(low):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's test that two models' accuracies on the same samples are equal. correct_*: whether each sample was
    given its true class. Returns {test, n, discordant, a_only, b_only, a, b, difference, statistic, p_value}."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or not len(a):
        raise ValueError(f"McNemar's test needs the same samples for both models; got {len(a)} and {len(b)}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    discordant = a_only + b_only
    if discordant <= EXACT_UP_TO:
        test, statistic = "McNemar (exact binomial)", None
        p_value = binomial_two_sided(a_only, discordant) if discordant else 1.0
    else:
        test = "McNemar (chi-square, continuity-corrected)"
        statistic = (abs(a_only - b_only) - 1) ** 2 / discordant
        p_value = math.erfc(math.sqrt(statistic / 2))  # the chi-square of one degree of freedom's upper tail
    return {"test": test, "n": int(len(a)), "discordant": discordant, "a_only": a_only, "b_only": b_only,
            "a": float(a.mean()), "b": float(b.mean()), "difference": float(a.mean() - b.mean()),
            "statistic": statistic, "p_value": float(p_value)}

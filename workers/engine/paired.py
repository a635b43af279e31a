"""Paired tests between two classifiers measured on the same samples (issue 22, R3; docs/results.md "Compare").

- **DeLong's test** for the difference of two correlated ROC AUCs (DeLong, DeLong & Clarke-Pearson, Biometrics 1988),
  computed with the fast algorithm of Sun & Xu (IEEE Signal Processing Letters 2014): the structural components come
  from mid-ranks (one sort per model) instead of comparing every positive with every negative. Two classes only.
- **McNemar's test** for the difference of two accuracies on the same samples: only the discordant samples (one model
  right, the other wrong) count. Exact two-sided binomial test on them (p = 0.5) up to EXACT_UP_TO discordant pairs;
  above, the chi-square with Yates's continuity correction, whose approximation is then very close.
- **Wilcoxon's signed-rank test** for two segmentation models' per-case scores (mean Dice) on the same cases, as
  scipy.stats.wilcoxon(zero_method="wilcox") computes it: zero differences dropped; up to WILCOXON_EXACT_UP_TO cases
  with no zero and no tie the exact null distribution (counted, not simulated), else the normal approximation with
  the tie correction and no continuity correction (SciPy's defaults; where SciPy would run a permutation test, up to
  13 cases with a zero or a tie, this stays with the normal approximation).

NumPy and the standard library only, so the web process can compute them without SciPy (scipy.stats has neither
test for paired AUCs; statsmodels' McNemar would bring SciPy and pandas; SciPy's Wilcoxon would bring SciPy).
tests/unit/test_paired.py checks them against hand-worked examples, a brute-force DeLong, scipy.stats.binomtest and
scipy.stats.wilcoxon.
"""
from __future__ import annotations

import math

import numpy as np

EXACT_UP_TO = 5000  # discordant pairs: the exact binomial test up to here, the chi-square with continuity above
# Cases: Wilcoxon's exact distribution up to here when no difference is zero and no two tie, the normal approximation
# above (the bound scipy.stats.wilcoxon's method="auto" uses in SciPy 1.13+, so that its default answers and ours agree).
WILCOXON_EXACT_UP_TO = 50


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


def signed_rank_counts(n: int) -> list[int]:
    """How many of the 2**n ways of signing the ranks 1..n give each sum of positive ranks (0 .. n(n+1)/2): Wilcoxon's
    null distribution, counted in whole numbers by adding one rank at a time (a subset-sum recurrence)."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    for rank in range(1, n + 1):
        for total in range(rank * (rank + 1) // 2, rank - 1, -1):
            counts[total] += counts[total - rank]
    return counts


def wilcoxon(scores_a, scores_b) -> dict:
    """Wilcoxon's signed-rank test that two models' per-case scores on the same cases (paired by position) differ by
    no more than chance, two-sided. Returns {test, n (non-zero differences ranked), cases, zeros, a, b (the mean
    scores), median_difference (of a - b over every case), statistic (the smaller of the positive and negative rank
    sums, as SciPy reports), z (None when exact), p_value}."""
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or not len(a):
        raise ValueError(f"Wilcoxon's test needs the same cases for both models; got {len(a)} and {len(b)}")
    differences = a - b
    ranked = differences[differences != 0]  # zero_method="wilcox": a case on which the models agree says nothing
    n = len(ranked)
    ranks = midranks(np.abs(ranked))
    positive_sum = float(ranks[ranked > 0].sum())
    statistic = min(positive_sum, n * (n + 1) / 2 - positive_sum)
    ties = np.unique(np.abs(ranked), return_counts=True)[1]
    answer = {"n": n, "cases": int(len(a)), "zeros": int(len(a) - n), "a": float(a.mean()), "b": float(b.mean()),
              "median_difference": float(np.median(differences)), "statistic": statistic}
    if n == 0:
        return {**answer, "test": "Wilcoxon signed-rank", "z": None, "p_value": 1.0}
    if len(a) <= WILCOXON_EXACT_UP_TO and n == len(a) and ties.max() == 1:
        counts = signed_rank_counts(n)
        rank_sum = round(positive_sum)  # whole without ties
        tail = min(sum(counts[:rank_sum + 1]), sum(counts[rank_sum:]))
        return {**answer, "test": "Wilcoxon signed-rank (exact)", "z": None, "p_value": min(1.0, 2 * tail / 2**n)}
    variance = (n * (n + 1) * (2 * n + 1) - float((ties**3 - ties).sum()) / 2) / 24
    z = (positive_sum - n * (n + 1) / 4) / math.sqrt(variance)
    return {**answer, "test": "Wilcoxon signed-rank (normal approximation)", "z": z, "p_value": math.erfc(abs(z) / math.sqrt(2))}

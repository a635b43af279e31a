"""The paired tests of a comparison (workers/engine/paired.py): DeLong's test of two correlated AUCs against a
hand-worked example and against its definition computed pair by pair, and McNemar's test against the hand-worked
binomial sums and scipy.stats.binomtest, and Wilcoxon's signed-rank test against hand-worked examples and
scipy.stats.wilcoxon."""
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from workers.engine.paired import (
    EXACT_UP_TO,
    WILCOXON_EXACT_UP_TO,
    binomial_two_sided,
    delong,
    mcnemar,
    midranks,
    signed_rank_counts,
    wilcoxon,
)


def test_midranks_give_ties_the_mean_of_their_ranks():
    assert midranks(np.array([0.3, 0.1, 0.3, 0.7, 0.3])).tolist() == [3.0, 1.0, 3.0, 5.0, 3.0]
    values = np.random.default_rng(0).integers(0, 5, 50).astype(float)
    assert np.allclose(midranks(values), stats.rankdata(values))


def test_delong_on_a_hand_worked_example():
    # Model A: positives 0.9, 0.6; negatives 0.3, 0.7. 3 of 4 pairs ordered: AUC 0.75.
    #   per positive (V10): 0.9 beats both = 1, 0.6 beats one = 0.5; per negative (V01): 0.3 below both = 1, 0.7 below one = 0.5
    #   var(V10) = var(V01) = 0.125 (ddof 1): var(AUC_A) = 0.125 / 2 + 0.125 / 2 = 0.125.
    # Model B: positives 0.8, 0.75; negatives 0.5, 0.2: AUC 1, every component 1, no variance, no covariance.
    # var(A - B) = 0.125, z = -0.25 / sqrt(0.125) = -1 / sqrt(2), p = erfc(0.5).
    positive = [True, True, False, False]
    result = delong([0.9, 0.6, 0.3, 0.7], [0.8, 0.75, 0.5, 0.2], positive)
    assert (result["a"], result["b"], result["difference"]) == (0.75, 1.0, -0.25)
    assert result["z"] == pytest.approx(-1 / math.sqrt(2))
    assert result["p_value"] == pytest.approx(math.erfc(0.5)) and result["p_value"] == pytest.approx(0.4795001)
    assert (result["n"], result["positives"], result["negatives"]) == (4, 2, 2)


def brute_force_delong(a, b, positive):
    """DeLong 1988 as written: the kernel psi(x, y) = 1, 1/2, 0 over every positive-negative pair, the structural
    components as its row and column means, their covariance matrices."""
    positive = np.asarray(positive, bool)
    components = []
    for scores in (np.asarray(a), np.asarray(b)):
        x, y = scores[positive], scores[~positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        components.append((psi.mean(), psi.mean(1), psi.mean(0)))
    m, n = positive.sum(), (~positive).sum()
    s10 = np.cov(np.vstack([c[1] for c in components]))
    s01 = np.cov(np.vstack([c[2] for c in components]))
    s = s10 / m + s01 / n
    z = (components[0][0] - components[1][0]) / math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return components[0][0], components[1][0], z, 2 * stats.norm.sf(abs(z))


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True), (3, False)])
def test_delong_equals_its_definition_computed_pair_by_pair(seed, ties):
    rng = np.random.default_rng(seed)
    n = 150
    truth = rng.random(n) < 0.4
    a = truth * 1.0 + rng.normal(0, 0.8, n)
    b = 0.6 * a + truth * 0.4 + rng.normal(0, 0.9, n)  # correlated with A, as two models of the same samples are
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    result = delong(a, b, truth)
    auc_a, auc_b, z, p = brute_force_delong(a, b, truth)
    assert result["a"] == pytest.approx(auc_a) == pytest.approx(roc_auc_score(truth, a))
    assert result["b"] == pytest.approx(auc_b) == pytest.approx(roc_auc_score(truth, b))
    assert result["z"] == pytest.approx(z, rel=1e-9)
    assert result["p_value"] == pytest.approx(p, rel=1e-9)


def test_delong_of_a_model_with_itself_is_no_difference_and_refuses_one_class():
    scores = [0.1, 0.4, 0.35, 0.8]
    same = delong(scores, scores, [False, False, True, True])
    assert same["difference"] == 0 and same["p_value"] == 1.0 and same["z"] is None
    with pytest.raises(ValueError, match="two samples of each class"):
        delong([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [True, True, False])


def test_mcnemar_exact_on_a_hand_worked_example():
    # 10 samples: both right on 3, both wrong on 1, only A right on 1, only B right on 5.
    # Discordant n = 6, k = 1: p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14 / 64.
    a = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    b = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
    result = mcnemar(np.array(a, bool), np.array(b, bool))
    assert (result["n"], result["discordant"], result["a_only"], result["b_only"]) == (10, 6, 1, 5)
    assert result["p_value"] == 14 / 64 and result["test"] == "McNemar (exact binomial)"
    assert (result["a"], result["b"]) == (0.4, 0.8)
    assert result["p_value"] == pytest.approx(stats.binomtest(1, 6, 0.5).pvalue)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0, "no discordant pair: no evidence of a difference"


@pytest.mark.parametrize("k, n", [(0, 1), (3, 7), (5, 10), (10, 10), (12, 40), (200, 450), (2400, 5000)])
def test_the_exact_binomial_equals_scipys(k, n):
    assert binomial_two_sided(k, n) == pytest.approx(stats.binomtest(k, n, 0.5).pvalue, rel=1e-9)


def test_large_discordant_counts_use_the_chi_square_with_continuity():
    n = EXACT_UP_TO + 1001
    a_only = n // 2 - 60
    a = np.r_[np.ones(a_only, bool), np.zeros(n - a_only, bool)]
    result = mcnemar(a, ~a)
    b_only = n - a_only
    chi2 = (abs(a_only - b_only) - 1) ** 2 / n
    assert result["test"].startswith("McNemar (chi-square") and result["statistic"] == pytest.approx(chi2)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    assert result["p_value"] == pytest.approx(stats.binomtest(a_only, n, 0.5).pvalue, rel=0.05), "close to the exact test"


def test_wilcoxon_exact_on_a_hand_worked_example():
    # Differences 0.3, -0.1, 0.2, 0.4: ranks of |d| 3, 1, 2, 4; positive rank sum 9, negative 1 (the statistic).
    # Of the 2^4 = 16 signings, sums 9 and 10 are reached once each ({2, 3, 4}, {1, 2, 3, 4}) and 0, 1 once each:
    # p = 2 * 2 / 16 = 0.25.
    assert signed_rank_counts(4) == [1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1] and sum(signed_rank_counts(10)) == 2**10
    result = wilcoxon([0.3, -0.1, 0.2, 0.4], [0, 0, 0, 0])
    assert (result["statistic"], result["p_value"], result["n"], result["z"]) == (1.0, 0.25, 4, None)
    assert result["test"] == "Wilcoxon signed-rank (exact)" and result["median_difference"] == pytest.approx(0.25)
    assert result["p_value"] == stats.wilcoxon([0.3, -0.1, 0.2, 0.4]).pvalue


def test_wilcoxon_normal_approximation_on_a_hand_worked_example_with_ties_and_a_zero():
    # Differences 1, 1, -2, 3, 3, 3, 0: the zero dropped (n = 6); |d| ranks 1.5, 1.5, 3, 5, 5, 5; positive sum 18, negative 3.
    # Mean 6·7/4 = 10.5; variance (6·7·13 − ((2³−2) + (3³−3)) / 2) / 24 = (546 − 15) / 24 = 22.125; z = 7.5 / √22.125.
    result = wilcoxon([1, 1, -2, 3, 3, 3, 0], [0] * 7)
    z = 7.5 / math.sqrt(22.125)
    assert (result["n"], result["zeros"], result["statistic"]) == (6, 1, 3.0)
    assert result["test"] == "Wilcoxon signed-rank (normal approximation)"
    assert result["z"] == pytest.approx(z) and result["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    expected = stats.wilcoxon([1, 1, -2, 3, 3, 3, 0], zero_method="wilcox", method="asymptotic")
    assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-12) and result["statistic"] == expected.statistic


@pytest.mark.parametrize("n, seed, rounding, zeros", [
    (5, 0, None, 0), (12, 1, None, 0), (25, 2, None, 0), (40, 3, None, 0), (WILCOXON_EXACT_UP_TO, 4, None, 0),
    (WILCOXON_EXACT_UP_TO + 1, 5, None, 0), (300, 6, None, 0), (30, 7, 2, 0), (80, 8, 1, 0), (30, 9, None, 4), (200, 10, 2, 20)])
def test_wilcoxon_equals_scipys(n, seed, rounding, zeros):
    # Per-case mean Dice of two models: B a little better, with noise; some rounded (ties), some cases scored alike (zeros).
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 0.95, n)
    b = np.clip(a + rng.normal(0.02, 0.05, n), 0, 1)
    if rounding:
        a, b = np.round(a, rounding), np.round(b, rounding)
    b[:zeros] = a[:zeros]
    result = wilcoxon(a, b)
    # SciPy's default: exact up to 50 cases with no zero and no tie, else the normal approximation (SciPy runs a
    # permutation test for 13 cases or fewer with a zero or a tie; none of these is such a case).
    expected = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-9), result
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert result["n"] == int(np.count_nonzero(a - b)) and result["zeros"] >= zeros
    exact = n <= WILCOXON_EXACT_UP_TO and not rounding and not zeros
    assert result["test"].endswith("(exact)" if exact else "(normal approximation)"), result["test"]
    assert result["median_difference"] == pytest.approx(np.median(a - b))


def test_wilcoxon_of_identical_scores_is_no_difference_and_refuses_unpaired_input():
    same = wilcoxon([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert (same["n"], same["zeros"], same["p_value"], same["statistic"]) == (0, 3, 1.0, 0.0)
    with pytest.raises(ValueError, match="same cases"):
        wilcoxon([0.8, 0.7], [0.8])


def test_importing_the_tests_pulls_no_heavy_library():
    code = ("import sys, workers.engine.paired; heavy = {'torch', 'scipy', 'pandas', 'sklearn', 'monai'} & set(sys.modules); "
            "print(sorted(heavy)); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

"""A classifier's results: every metric against values worked out by hand and against scikit-learn on resampled
copies of the data; the patient-level bootstrap against the interval theory gives; operating points."""
import numpy as np
import pytest
from sklearn import metrics as sk

from workers.engine.tasks.classification.results import (
    Predictions,
    bootstrap_weights,
    bootstrapped,
    classification_results,
    every_metric,
    intervals,
    patient_strata,
    point_values,
)

TRUTH = [0, 0, 0, 0, 1, 1, 1, 1]
POSITIVE = [0.12, 0.42, 0.35, 0.82, 0.28, 0.71, 0.93, 0.64]


def binary(truth, positive, patients=None) -> Predictions:
    positive = np.asarray(positive, dtype=float)
    return Predictions.of(np.stack([1 - positive, positive], 1), truth, patients or [""] * len(truth), ["normal", "lesion"])


def test_every_headline_metric_matches_the_hand_worked_values():
    """Called lesion above 0.5: TN 3, FP 1 (0.82), FN 1 (0.28), TP 3. AUC: 11 of the 16 lesion/normal pairs ranked
    right. AP: lesions at ranks 1, 3, 4, 7: (1 + 2/3 + 3/4 + 4/7) / 4. Brier: the squared distances of the lesion
    probability from the truth, summed 1.7227, over 8. ECE: top-probability bins (0.5-0.6] .42, (0.6-0.7] .35 + .36,
    (0.7-0.8] |.29 - .72|, (0.8-0.9] |.12 - .82|, (0.9-1] .07: 2.33 over 8."""
    expected = {"accuracy": 0.75, "balanced_accuracy": 0.75, "macro_f1": 0.75, "mcc": 0.5, "auc": 11 / 16,
                "average_precision": (1 + 2 / 3 + 3 / 4 + 4 / 7) / 4, "brier": 1.7227 / 8, "ece": 2.33 / 8}
    predictions = binary(TRUTH, POSITIVE)
    assert point_values(predictions) == pytest.approx(expected)
    weighted = every_metric(predictions, np.ones((1, 8), np.float32))
    assert {name: float(weighted[name][0]) for name in expected} == pytest.approx(expected)
    assert weighted["sensitivity"][0].tolist() == [0.75, 0.75] and weighted["specificity"][0].tolist() == [0.75, 0.75]
    results = classification_results(predictions, resamples=0)
    assert results["confusion"]["counts"] == [[3, 1], [1, 3]] and results["metrics"]["auc"]["value"] == pytest.approx(11 / 16)
    assert [row["count"] for row in results["calibration"]["bins"]][5:] == [1, 2, 2, 2, 1]


@pytest.mark.parametrize("classes", [2, 3])
def test_the_weighted_arithmetic_equals_scikit_learn_on_the_resampled_copies(classes):
    rng = np.random.default_rng(classes)
    n = 90
    truth = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[truth]
    probabilities = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)  # rounded: tied scores
    probabilities /= probabilities.sum(1, keepdims=True)
    predictions = Predictions.of(probabilities, truth, [""] * n, [f"c{k}" for k in range(classes)])
    weights = rng.integers(0, 3, size=(4, n)).astype(np.float32)
    figures = every_metric(predictions, weights)
    for r, row in enumerate(weights.astype(int)):
        copy = Predictions.of(np.repeat(probabilities, row, 0), np.repeat(truth, row), [""] * int(row.sum()), predictions.classes)
        for name, value in point_values(copy).items():
            assert figures[name][r] == pytest.approx(value, abs=1e-9), (name, r)
        assert figures["precision"][r] == pytest.approx(sk.precision_score(copy.truth, copy.predicted, average=None,
                                                                             labels=range(classes), zero_division=np.nan),
                                                        nan_ok=True)


def test_the_bootstrap_interval_of_independent_patients_is_the_binomial_one():
    """400 patients, one image each, 320 right: the 95% interval of the accuracy is 0.8 +- 1.96 sqrt(0.8 x 0.2 / 400)
    = 0.8 +- 0.039."""
    truth = np.array([0, 1] * 200)
    right = np.zeros(400, bool)
    right[np.random.default_rng(0).permutation(400)[:320]] = True
    positive = np.where(right == (truth == 1), 0.9, 0.1)
    low, high = intervals(bootstrapped(binary(truth, positive, [f"p{k}" for k in range(400)]), 2000))["accuracy"]
    assert low == pytest.approx(0.8 - 0.039, abs=0.008) and high == pytest.approx(0.8 + 0.039, abs=0.008)


def test_many_images_of_few_patients_give_the_wider_interval_of_their_patients():
    """The same 400 images from 20 patients (20 images each, right or wrong together): the interval is about that of
    20 patients (+- 0.175), not of 400 images."""
    truth = np.repeat([0, 1] * 10, 20)
    patient_right = np.array([True] * 16 + [False] * 4)[np.random.default_rng(1).permutation(20)]
    right = np.repeat(patient_right, 20)
    positive = np.where(right == (truth == 1), 0.9, 0.1)
    low, high = intervals(bootstrapped(binary(truth, positive, [f"p{k // 20}" for k in range(400)]), 2000))["accuracy"]
    assert high - low > 0.25 and low < 0.7 and high >= 0.95


def test_each_resample_keeps_the_number_of_patients_of_each_class():
    truth = np.array([0, 0, 0, 1, 1, 0, 1])
    group, strata = patient_strata(truth, ["a", "a", "b", "c", "c", "d", "e"])
    assert strata.tolist() == [0, 0, 1, 0, 1]  # a: 0, b: 0, c: 1, d: 0, e: 1
    weights = bootstrap_weights(group, strata, 500, np.random.default_rng(0))
    drawn = np.zeros((500, 5))
    for g in range(5):
        drawn[:, g] = weights[:, np.flatnonzero(group == g)[0]]
    assert (drawn[:, strata == 0].sum(1) == 3).all() and (drawn[:, strata == 1].sum(1) == 2).all()
    assert (weights[:, 0] == weights[:, 1]).all(), "a patient's images are drawn together"


def test_operating_points_are_chosen_on_validation_and_reported_on_test():
    rng = np.random.default_rng(3)
    def subset(n):
        truth = np.array([0, 1] * n)
        return binary(truth, np.clip(rng.normal(0.35 + 0.3 * truth, 0.15), 0, 1))
    validation, test = subset(200), subset(200)
    points = {p["name"]: p for p in classification_results(test, validation, resamples=0, threshold=0.5)["operating_points"]}
    assert set(points) == {"youden", "high_sensitivity", "high_specificity", "typed"}
    assert points["high_sensitivity"]["validation"]["sensitivity"] >= 0.95
    assert points["high_specificity"]["validation"]["specificity"] >= 0.95
    scores, positive = validation.probabilities[:, 1], validation.truth == 1
    best = max(((scores[positive] >= t).mean() + (scores[~positive] < t).mean() for t in np.unique(scores)))
    youden = points["youden"]["validation"]
    assert youden["sensitivity"] + youden["specificity"] == pytest.approx(best)
    called = test.probabilities[:, 1] >= points["youden"]["threshold"]
    assert points["youden"]["test"] == {"sensitivity": called[test.truth == 1].mean(), "specificity": (~called[test.truth == 0]).mean()}


def test_a_metric_undefined_on_the_samples_is_none_not_a_crash():
    results = classification_results(binary([1, 1, 1], [0.9, 0.4, 0.8]), resamples=50)
    assert results["metrics"]["auc"] == {"value": None, "low": None, "high": None}
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3) and results["roc"] == []


def test_the_results_say_how_many_samples_had_no_patient_so_pages_can_name_the_bootstraps_unit():
    """Issue 22 (Results, 2): without patient IDs every image is its own unit; the results carry the count of samples
    without one (samples_without_patient), and the evaluation's message says "bootstrap over images" then."""
    from workers.evaluation import done_words

    none_known = classification_results(binary(TRUTH, POSITIVE), resamples=20)
    assert none_known["samples_without_patient"] == 8 and none_known["patients"] == 8
    assert "bootstrap over images" in done_words(none_known) and "patients" not in done_words(none_known)
    some = classification_results(binary(TRUTH, POSITIVE, ["p1", "p1", "", "p2", "p3", "p3", "", "p4"]), resamples=20)
    assert some["samples_without_patient"] == 2 and some["patients"] == 6
    all_known = classification_results(binary(TRUTH, POSITIVE, [f"p{k // 2}" for k in range(8)]), resamples=20)
    assert all_known["samples_without_patient"] == 0 and all_known["patients"] == 4
    assert done_words(all_known).startswith("Measured 8 samples of 4 patients") and "bootstrap over patients" in done_words(all_known)
    # The pooled predictions of a group name them as the caller counted them.
    assert Predictions.of([[0.5, 0.5]] * 2, [0, 1], ["sample 1", "sample 2"], ["a", "b"], unnamed=2).unnamed == 2

"""The patient-level bootstrap of a classifier's test metrics; prints JSON.

Target (issue 22): the 95% interval of the AUC from 2,000 resamples of 10,000 predictions in under 2 s on this CPU.
The toolkit computes every resample's metrics at once from per-sample weights (workers/engine/tasks/classification/
results.py); the baseline, measured in the same invocation, is scikit-learn's roc_auc_score on each resample, timed
on BASELINE_RESAMPLES of them and scaled to the same count. Also timed: every metric of the results page (accuracy,
balanced accuracy, F1, MCC, AUC, average precision, Brier, ECE, per-class figures) over the same resamples.

Usage: python bench/bootstrap_interval.py [predictions] [resamples]   (BENCH_SMOKE=1: 500 predictions, 100 resamples)
"""
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, size  # noqa: E402
from workers.engine.tasks.classification.results import (  # noqa: E402
    Predictions,
    bootstrap_weights,
    bootstrapped,
    intervals,
    patient_strata,
    ranking_metrics,
)

PREDICTIONS = int(sys.argv[1]) if len(sys.argv) > 1 else size(10_000, 500)
RESAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else size(2_000, 100)
BASELINE_RESAMPLES = size(100, 10)
IMAGES_PER_PATIENT = 4


def predictions() -> Predictions:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, PREDICTIONS)
    positive = 1 / (1 + np.exp(-(rng.normal(size=PREDICTIONS) + 1.6 * (truth - 0.5))))
    patients = [f"p{k // IMAGES_PER_PATIENT}" for k in range(PREDICTIONS)]
    return Predictions.of(np.stack([1 - positive, positive], 1), truth, patients, ["normal", "lesion"])


def auc_interval(data: Predictions) -> tuple[float, tuple[float, float]]:
    """The AUC's interval alone, as the toolkit computes it: seconds and (low, high)."""
    start = time.perf_counter()
    group, strata = patient_strata(data.truth, data.patients)
    rng = np.random.default_rng(1)
    values = np.concatenate([ranking_metrics(data, bootstrap_weights(group, strata, min(250, RESAMPLES - first), rng))["auc"]
                             for first in range(0, RESAMPLES, 250)])
    low, high = np.percentile(values, (2.5, 97.5))
    return time.perf_counter() - start, (float(low), float(high))


def baseline_seconds(data: Predictions) -> float:
    """scikit-learn's AUC on BASELINE_RESAMPLES resamples (the same weights, as repeated samples), scaled to RESAMPLES."""
    group, strata = patient_strata(data.truth, data.patients)
    weights = bootstrap_weights(group, strata, BASELINE_RESAMPLES, np.random.default_rng(1)).astype(int)
    start = time.perf_counter()
    for row in weights:
        roc_auc_score(np.repeat(data.truth, row), np.repeat(data.probabilities[:, 1], row))
    return (time.perf_counter() - start) * RESAMPLES / BASELINE_RESAMPLES


def main() -> None:
    data = predictions()
    auc_seconds, auc_range = auc_interval(data)
    baseline = baseline_seconds(data)
    start = time.perf_counter()
    every = intervals(bootstrapped(data, RESAMPLES, seed=1))
    every_seconds = time.perf_counter() - start
    report("bootstrap_interval", {
        "predictions": PREDICTIONS, "patients": PREDICTIONS // IMAGES_PER_PATIENT, "resamples": RESAMPLES,
        "auc_interval_seconds": round(auc_seconds, 3), "auc_interval": [round(v, 4) for v in auc_range],
        "sklearn_loop_seconds": round(baseline, 3), "speedup": round(baseline / auc_seconds, 1),
        "every_metric_seconds": round(every_seconds, 3), "accuracy_interval": [round(v, 4) for v in every["accuracy"]],
        "target": "AUC interval of 2,000 resamples of 10,000 predictions < 2 s",
        "met": bool(auc_seconds < 2.0) if (PREDICTIONS, RESAMPLES) == (10_000, 2_000) else None,
    }, indent=2)


if __name__ == "__main__":
    main()

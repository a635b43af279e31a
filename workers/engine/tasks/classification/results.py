"""What a classifier's per-sample predictions on a test subset say, as a paper needs it (issue 22; R1, R2): the
metrics Metrics Reloaded recommends for classification (Maier-Hein et al., Nature Methods 2024), each with a 95%
interval from a bootstrap that resamples patients, not images, stratified by class; the confusion matrix, ROC and
precision-recall curves, calibration; and for two classes the operating points chosen on the validation subset.

Point values come from scikit-learn. The bootstrap needs thousands of them, so it computes each metric for every
resample at once from per-sample weights (how many times a resample drew the sample's patient): confusion matrices
as one matrix product, AUC and average precision from one sort of the scores and cumulative sums. A test checks
these against scikit-learn on resampled copies of the data, and the interval against a known one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as sk

RESAMPLES = 2000
LEVEL = 0.95
CALIBRATION_BINS = 10
HIGH = 0.95  # the sensitivity (specificity) a "high sensitivity" ("high specificity") operating point keeps
CHUNK = 250  # resamples computed together: 250 x 10,000 weights in float32 is 10 MB


@dataclass(frozen=True)
class Predictions:
    """A model's outputs on one subset: probabilities (N, K), the true class index of each sample, and its patient
    (samples of one patient are resampled together; an empty id makes the sample its own patient). `unnamed`: how
    many samples had no patient id, so the results can say whether the bootstrap resampled patients or images."""
    probabilities: np.ndarray
    truth: np.ndarray
    patients: Sequence[str]
    classes: Sequence[str]
    unnamed: int = 0

    @classmethod
    def of(cls, probabilities, truth, patients, classes, unnamed: int | None = None) -> Predictions:
        """unnamed: the samples without a patient id, where the caller already named them (else the empty ids)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        truth = np.asarray(truth, dtype=np.int64)
        if probabilities.ndim != 2 or probabilities.shape != (len(truth), len(classes)) or len(patients) != len(truth):
            raise ValueError(f"predictions of {len(truth)} samples need probabilities ({len(truth)}, {len(classes)}) and "
                             f"{len(truth)} patients; got {probabilities.shape} and {len(patients)}")
        missing = sum(1 for p in patients if not p) if unnamed is None else unnamed
        return cls(probabilities, truth, [p or f"sample {k}" for k, p in enumerate(patients)], list(classes), missing)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)


# ------------------------------------------------------------------ resampling patients


def patient_strata(truth: np.ndarray, patients: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the patient index of each sample, the stratum of each patient: the class most of its samples have)."""
    names, group = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    counts = np.zeros((len(names), int(truth.max()) + 1 if len(truth) else 1), dtype=np.int64)
    np.add.at(counts, (group, truth), 1)
    return group, counts.argmax(1)


def bootstrap_weights(group: np.ndarray, strata: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, N) float32: how many times each resample drew each sample's patient. Within each stratum as many
    patients are drawn, with replacement, as it has, so every resample keeps the class mix of patients."""
    patients = len(strata)
    picks = np.concatenate([members[rng.integers(0, len(members), size=(resamples, len(members)))]
                            for members in (np.flatnonzero(strata == s) for s in np.unique(strata))], axis=1)
    # One count over (resample, patient) pairs: row r's picks offset by r * patients.
    flat = (picks + np.arange(resamples)[:, None] * patients).ravel()
    drawn = np.bincount(flat, minlength=resamples * patients).reshape(resamples, patients).astype(np.float32)
    return drawn[:, group]


# ------------------------------------------------------------------ metrics of weighted samples, every resample at once


def confusions(truth: np.ndarray, predicted: np.ndarray, classes: int, weights: np.ndarray) -> np.ndarray:
    """(R, K, K) confusion matrices (rows: true class) of the weighted samples."""
    cells = np.zeros((len(truth), classes * classes), dtype=np.float32)
    cells[np.arange(len(truth)), truth * classes + predicted] = 1.0
    return (weights @ cells).reshape(len(weights), classes, classes).astype(np.float64)


def safe_divide(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)


def from_confusions(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Every confusion-matrix metric of (R, K, K) matrices: (R,) arrays, and (R, K) per class."""
    total = confusion.sum((1, 2))
    true_pos = np.diagonal(confusion, axis1=1, axis2=2)
    actual, called = confusion.sum(2), confusion.sum(1)
    negatives = total[:, None] - actual
    sensitivity = safe_divide(true_pos, actual)
    specificity = safe_divide(negatives - (called - true_pos), negatives)
    precision = safe_divide(true_pos, called)
    f1 = safe_divide(2 * true_pos, actual + called)
    # Matthews correlation for K classes (Gorodkin 2004), as scikit-learn computes it.
    correct = true_pos.sum(1)
    top = correct * total - (actual * called).sum(1)
    bottom = np.sqrt((total**2 - (called**2).sum(1)) * (total**2 - (actual**2).sum(1)))
    mcc = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), 0.0)
    with np.errstate(invalid="ignore"):
        balanced = np.nanmean(np.where(actual > 0, sensitivity, np.nan), axis=1)
        # Over the classes present or predicted, as scikit-learn's macro F1 (a class only predicted scores 0).
        macro_f1 = np.nanmean(np.where(actual + called > 0, np.nan_to_num(f1), np.nan), axis=1)
    return {"accuracy": safe_divide(correct, total), "balanced_accuracy": balanced, "macro_f1": macro_f1, "mcc": mcc,
            "sensitivity": sensitivity, "specificity": specificity, "precision": precision, "f1": f1}


def ranked(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the order that sorts the scores descending, where each group of equal scores starts in that order)."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    return order, np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])


def grouped_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(R, N) values in score order summed within each group of tied scores: (R, groups), in float64."""
    if len(starts) == values.shape[1]:  # no two scores tie (continuous probabilities): nothing to sum
        return values.astype(np.float64)
    return np.add.reduceat(values, starts, axis=1, dtype=np.float64)


def aucs_and_average_precisions(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC AUC and average precision (scikit-learn's definitions, ties included) of one class against the rest,
    for each row of weights."""
    order, starts = ranked(scores)
    ordered = weights[:, order]
    pos = grouped_sums(ordered * positive[order], starts)
    neg = grouped_sums(ordered, starts) - pos
    true_pos, false_pos = np.cumsum(pos, 1), np.cumsum(neg, 1)
    all_pos, all_neg = true_pos[:, -1], false_pos[:, -1]
    # AUC: each positive against the negatives scored below it, half for ties.
    below = all_neg[:, None] - false_pos
    auc = safe_divide((pos * (below + neg / 2)).sum(1), all_pos * all_neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = true_pos / (true_pos + false_pos)  # NaN only where pos is 0 too: multiplied by 0 below
    average_precision = safe_divide(np.nansum(pos * precision, 1), all_pos)
    return auc, average_precision


def ranking_metrics(predictions: Predictions, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AUC and average precision: of the positive class (the second) for two classes, else the mean one-vs-rest."""
    k = len(predictions.classes)
    scored = [1] if k == 2 else range(k)
    per_class = [aucs_and_average_precisions(predictions.probabilities[:, c], predictions.truth == c, weights) for c in scored]
    return {"auc": defined_mean([a for a, _ in per_class]), "average_precision": defined_mean([p for _, p in per_class])}


def defined_mean(rows: list[np.ndarray]) -> np.ndarray:
    """The mean of each column over the rows where it is defined (NaN where none is: a class absent from a resample)."""
    table = np.asarray(rows, dtype=np.float64)
    defined = np.isfinite(table)
    counts = defined.sum(0)
    return np.where(counts > 0, np.where(defined, table, 0.0).sum(0) / np.maximum(counts, 1), np.nan)


def calibration_metrics(predictions: Predictions, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The Brier score (the mean squared distance of the probabilities from the one-hot truth; for two classes, of
    the positive class's probability, as scikit-learn's) and the expected calibration error (confidence against
    accuracy in CALIBRATION_BINS equal-width bins of the top probability)."""
    probabilities, truth = predictions.probabilities, predictions.truth
    if probabilities.shape[1] == 2:
        squared = (probabilities[:, 1] - (truth == 1)) ** 2
    else:
        squared = ((probabilities - np.eye(probabilities.shape[1])[truth]) ** 2).sum(1)
    confidence = probabilities.max(1)
    correct = (probabilities.argmax(1) == truth).astype(np.float64)
    bins = calibration_bin(confidence)
    member = np.zeros((len(truth), CALIBRATION_BINS))
    member[np.arange(len(truth)), bins] = 1.0
    total = weights.sum(1)
    gap = np.abs(weights @ (member * (correct - confidence)[:, None]))
    return {"brier": safe_divide(weights @ squared, total), "ece": safe_divide(gap.sum(1), total)}


def calibration_bin(confidence: np.ndarray) -> np.ndarray:
    """Each probability's bin of CALIBRATION_BINS equal widths, a value on an edge in the lower bin (as scikit-learn's
    calibration_curve places it)."""
    return np.searchsorted(np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1], confidence)


def every_metric(predictions: Predictions, weights: np.ndarray) -> dict[str, np.ndarray]:
    k = len(predictions.classes)
    figures = from_confusions(confusions(predictions.truth, predictions.predicted, k, weights))
    figures.update(ranking_metrics(predictions, weights))
    figures.update(calibration_metrics(predictions, weights))
    return figures


# ------------------------------------------------------------------ the results


HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "auc", "average_precision", "brier", "ece")
PER_CLASS = ("sensitivity", "specificity", "precision", "f1")


def point_values(predictions: Predictions) -> dict[str, float]:
    """The headline metrics as scikit-learn computes them (the bootstrap's own arithmetic is checked against these)."""
    truth, predicted, probabilities = predictions.truth, predictions.predicted, predictions.probabilities
    labels = list(range(len(predictions.classes)))
    two = len(labels) == 2
    present = len(np.unique(truth)) > 1
    values = {
        "accuracy": sk.accuracy_score(truth, predicted),
        "balanced_accuracy": sk.balanced_accuracy_score(truth, predicted),
        "macro_f1": sk.f1_score(truth, predicted, labels=sorted(set(truth) | set(predicted)), average="macro", zero_division=0),
        "mcc": sk.matthews_corrcoef(truth, predicted),
        "brier": sk.brier_score_loss(truth == 1, probabilities[:, 1]) if two else
        float(((probabilities - np.eye(len(labels))[truth]) ** 2).sum(1).mean()),
    }
    if present:
        if two:
            values["auc"] = sk.roc_auc_score(truth, probabilities[:, 1])
            values["average_precision"] = sk.average_precision_score(truth == 1, probabilities[:, 1])
        else:
            held = [c for c in labels if (truth == c).any()]
            values["auc"] = float(np.mean([sk.roc_auc_score(truth == c, probabilities[:, c]) for c in held]))
            values["average_precision"] = float(np.mean([sk.average_precision_score(truth == c, probabilities[:, c]) for c in held]))
    values["ece"] = float(calibration_metrics(predictions, np.ones((1, len(truth))))["ece"][0])
    return {name: float(value) for name, value in values.items()}


def intervals(samples: dict[str, np.ndarray], level: float = LEVEL) -> dict[str, tuple[float, float] | list]:
    """Percentile intervals of each metric's bootstrap values (resamples where a metric is undefined left out)."""
    tail = (1 - level) / 2 * 100
    out = {}
    for name, values in samples.items():
        if values.ndim == 1:
            kept = values[np.isfinite(values)]
            out[name] = tuple(float(v) for v in np.percentile(kept, (tail, 100 - tail))) if len(kept) else (np.nan, np.nan)
        else:
            out[name] = [intervals({"c": values[:, c]}, level)["c"] for c in range(values.shape[1])]
    return out


def bootstrapped(predictions: Predictions, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Every metric for each of `resamples` patient-level, class-stratified resamples."""
    group, strata = patient_strata(predictions.truth, predictions.patients)
    rng = np.random.default_rng(seed)
    parts = []
    for first in range(0, resamples, CHUNK):
        weights = bootstrap_weights(group, strata, min(CHUNK, resamples - first), rng)
        parts.append(every_metric(predictions, weights))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def classification_results(test: Predictions, validation: Predictions | None = None, resamples: int = RESAMPLES,
                           seed: int = 0, threshold: float | None = None) -> dict:
    """Everything the results page and the report show of a classifier on its test subset, JSON-ready."""
    values = every_metric(test, np.ones((1, len(test.truth)), dtype=np.float32))
    points = point_values(test)
    spread = intervals(bootstrapped(test, resamples, seed)) if resamples else {}
    metrics = {name: {"value": points.get(name, float(values[name][0])), "low": spread.get(name, (np.nan,))[0],
                      "high": spread.get(name, (np.nan, np.nan))[1]} for name in HEADLINE}
    per_class = {name: [{"class": test.classes[c], "value": float(values[name][0][c]),
                         "low": spread[name][c][0] if spread else np.nan, "high": spread[name][c][1] if spread else np.nan}
                        for c in range(len(test.classes))] for name in PER_CLASS}
    results = {"classes": list(test.classes), "samples": len(test.truth), "patients": len(set(test.patients)),
               "samples_without_patient": test.unnamed,
               "resamples": resamples, "level": LEVEL, "metrics": metrics, "per_class": per_class,
               "confusion": confusion_of(test), "roc": curves_of(test, "roc"), "precision_recall": curves_of(test, "pr"),
               "calibration": reliability_of(test)}
    if len(test.classes) == 2 and validation is not None:
        results["operating_points"] = operating_points(validation, test, threshold)
    return jsonable(results)


def confusion_of(predictions: Predictions) -> dict:
    counts = sk.confusion_matrix(predictions.truth, predictions.predicted, labels=list(range(len(predictions.classes))))
    rows = counts.sum(1, keepdims=True)
    return {"counts": counts.tolist(), "normalised": np.where(rows > 0, counts / np.maximum(rows, 1), 0.0).tolist()}


def curves_of(predictions: Predictions, kind: str) -> list[dict]:
    """ROC or precision-recall curves: the positive class for two classes, else each class against the rest."""
    k = len(predictions.classes)
    curves = []
    for c in ([1] if k == 2 else range(k)):
        positive = predictions.truth == c
        if positive.all() or not positive.any():
            continue
        scores = predictions.probabilities[:, c]
        if kind == "roc":
            x, y, thresholds = sk.roc_curve(positive, scores)
        else:
            y, x, thresholds = sk.precision_recall_curve(positive, scores)
        curves.append({"class": predictions.classes[c], "x": x.tolist(), "y": y.tolist(),
                       "thresholds": np.nan_to_num(thresholds, posinf=1.0).tolist()})
    return curves


def reliability_of(predictions: Predictions) -> dict:
    """The reliability diagram: per bin of the top probability, its mean confidence, accuracy and sample count."""
    confidence = predictions.probabilities.max(1)
    correct = predictions.predicted == predictions.truth
    bins = calibration_bin(confidence)
    rows = [{"low": b / CALIBRATION_BINS, "high": (b + 1) / CALIBRATION_BINS, "count": int((bins == b).sum()),
             "confidence": float(confidence[bins == b].mean()) if (bins == b).any() else None,
             "accuracy": float(correct[bins == b].mean()) if (bins == b).any() else None} for b in range(CALIBRATION_BINS)]
    return {"bins": rows}


# ------------------------------------------------------------------ operating points (two classes)


def operating_points(validation: Predictions, test: Predictions, threshold: float | None = None) -> list[dict]:
    """Thresholds on the positive class's probability chosen on the validation subset (Youden's J; the highest
    specificity keeping sensitivity >= HIGH; the reverse; and a typed one), with the sensitivity and specificity each
    gives on the test subset, as the diabetic-retinopathy papers report them."""
    false_pos, true_pos, thresholds = sk.roc_curve(validation.truth == 1, validation.probabilities[:, 1])
    thresholds = np.clip(thresholds, 0.0, 1.0)
    chosen = {"youden": int(np.argmax(true_pos - false_pos))}
    sensitive = np.flatnonzero(true_pos >= HIGH)
    if len(sensitive):
        chosen["high_sensitivity"] = int(sensitive[np.argmin(false_pos[sensitive])])
    specific = np.flatnonzero(1 - false_pos >= HIGH)
    if len(specific):
        chosen["high_specificity"] = int(specific[np.argmax(true_pos[specific])])
    points = [{"name": name, "threshold": float(thresholds[i]), "validation": {"sensitivity": float(true_pos[i]),
                                                                                  "specificity": float(1 - false_pos[i])}}
              for name, i in chosen.items()]
    if threshold is not None:
        points.append({"name": "typed", "threshold": float(threshold), "validation": at_threshold(validation, threshold)})
    for point in points:
        point["test"] = at_threshold(test, point["threshold"])
    return points


def at_threshold(predictions: Predictions, threshold: float) -> dict:
    called = predictions.probabilities[:, 1] >= threshold
    positive = predictions.truth == 1
    return {"sensitivity": float(called[positive].mean()) if positive.any() else None,
            "specificity": float((~called[~positive]).mean()) if (~positive).any() else None}


def jsonable(value):
    """NaN (a metric undefined on these samples) as None, numpy numbers as Python's."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value

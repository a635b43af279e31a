"""Finished, evaluated runs to compare (issue 22, R3): metric points per epoch, a done test evaluation whose results
are computed by the evaluation's own code (workers/engine/tasks/classification/results.py) from the stored
predictions, and those predictions as SamplePrediction rows; a segmentation's (issue 23) from its cases' scores
(workers/engine/tasks/segmentation/results.py), the cases as SegmentationCase rows. Used by the comparison's
integration, browser and bench."""
from __future__ import annotations

import numpy as np

from backend.runs.models import Evaluation, MetricPoint, SamplePrediction, SegmentationCase, TrainingRun


def scores_for(truth_positive: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """Probabilities of the positive class: higher for positives the more skilful, with noise."""
    rng = np.random.default_rng(seed)
    raw = skill * (truth_positive * 2.0 - 1.0) + rng.normal(0, 1.0, len(truth_positive))
    return 1.0 / (1.0 + np.exp(-raw))


def recorded_run(project, partition, name: str, spec: dict, classes, epochs: int, seed: int, metric_names) -> TrainingRun:
    """A succeeded run with `epochs` metric points per subset and metric."""
    run = TrainingRun.objects.create(project=project, partition=partition, name=name, status="succeeded", spec=spec,
                                     epochs_completed=epochs, provenance={"dataset": {"classes": list(classes)}})
    rng = np.random.default_rng(seed + 1000)
    MetricPoint.objects.bulk_create(
        MetricPoint(run=run, epoch=epoch, subset=subset, name=metric,
                    value=float((1 / epoch if metric == "loss" else 1 - 0.5 / epoch) * (1 + 0.05 * rng.normal())))
        for epoch in range(1, epochs + 1) for subset in ("train", "validation") for metric in metric_names)
    return run


def segmentation_run(project, partition, name: str, skill: float = 0.8, seed: int = 0,
                     labels=("background", "liver", "tumour"), epochs: int = 4, samples=None, resamples: int = 200) -> TrainingRun:
    """A succeeded segmentation run with loss and Dice per epoch and a done test evaluation of `samples` (default: every
    sample of the partition's dataset): each case's Dice per foreground label drawn around `skill` (a case's IoU is
    its Dice's, D / (2 - D)), the results the evaluation's own segmentation_results of them."""
    from tests.factories import training_spec
    from workers.engine.tasks.segmentation.results import CaseScores, segmentation_results

    run = recorded_run(project, partition, name, training_spec(epochs=epochs, seed=seed, task="segmentation"), labels,
                       epochs, seed, ("loss", "dice"))
    samples = list(samples if samples is not None else partition.dataset.samples.order_by("pk"))
    rng = np.random.default_rng(seed)
    foreground = list(labels[1:])
    cases = []
    for _ in samples:
        dice = {label: float(np.clip(skill + rng.normal(0, 0.08), 0, 1)) for label in foreground}
        cases.append(CaseScores(dice=dice, iou={label: d / (2 - d) for label, d in dice.items()},
                                hd95={label: float(10 * (1 - d)) for label, d in dice.items()},
                                nsd={label: d for label, d in dice.items()}, predicted_volume={label: 1.0 for label in foreground},
                                reference_volume={label: 1.0 for label in foreground}, empty={label: "" for label in foreground},
                                mean_dice=float(np.mean(list(dice.values()))), tolerance_mm=1.0))
    results = segmentation_results(cases, [sample.patient for sample in samples], labels, dims=2, resamples=resamples, seed=seed)
    evaluation = Evaluation.objects.create(run=run, subset="test", status=Evaluation.Status.DONE, results=results)
    TrainingRun.objects.filter(pk=run.pk).update(results={"test": {"mean_dice": results["metrics"]["mean_dice"]["value"]}})
    SegmentationCase.objects.bulk_create(
        SegmentationCase(evaluation=evaluation, sample=sample, patient=sample.patient, mask=f"evaluations/{evaluation.pk}/{sample.pk}.npy",
                         **{key: value for key, value in case.as_dict().items()})
        for sample, case in zip(samples, cases))
    return run


def evaluated_run(project, partition, name: str, skill: float = 1.0, seed: int = 0, classes=("lesion", "normal"),
                  epochs: int = 4, samples=None, resamples: int = 200, metric_names=("loss", "accuracy"),
                  with_evaluation: bool = True) -> TrainingRun:
    """A succeeded run with `epochs` metric points per subset and metric and (with_evaluation) a done test evaluation of
    `samples` (default: every sample of the partition's dataset). The positive class is classes[1]; a sample's truth
    is its label. Probabilities are (N, len(classes)); with a third class it gets a small share."""
    from tests.factories import training_spec
    from workers.engine.tasks.classification.results import Predictions, classification_results

    run = recorded_run(project, partition, name, training_spec(epochs=epochs, seed=seed), classes, epochs, seed, metric_names)
    if not with_evaluation:
        return run
    samples = list(samples if samples is not None else partition.dataset.samples.order_by("pk"))
    truth = np.array([classes.index(sample.label) for sample in samples])
    positive = scores_for(truth == 1, skill, seed)
    if len(classes) == 2:
        probabilities = np.stack([1 - positive, positive], 1)
    else:
        probabilities = np.stack([(1 - positive) * 0.9, positive * 0.9, np.full(len(samples), 0.1)], 1)
    predictions = Predictions.of(probabilities, truth, [sample.patient for sample in samples], classes)
    results = classification_results(predictions, resamples=resamples, seed=seed)
    evaluation = Evaluation.objects.create(run=run, subset="test", status=Evaluation.Status.DONE, results=results)
    TrainingRun.objects.filter(pk=run.pk).update(results={"test": {"accuracy": results["metrics"]["accuracy"]["value"]}})
    predicted = probabilities.argmax(1)
    SamplePrediction.objects.bulk_create(
        SamplePrediction(evaluation=evaluation, sample=sample, patient=sample.patient, truth=classes[t], predicted=classes[p],
                         probabilities=[float(v) for v in row], truth_probability=float(row[t]), confidence=float(row.max()),
                         correct=bool(t == p))
        for sample, t, p, row in zip(samples, truth, predicted, probabilities))
    return run

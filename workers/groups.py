"""A group's pooled evaluation (issue 22, T5): the predictions of every member evaluated so far, read as one
evaluation with results.py's patient bootstrap. For a cross-validation these are the out-of-fold predictions (each
sample predicted once, by the run that did not train on it); for repeats over seeds, every seed's predictions of the
same test samples, a patient's predictions by every seed resampled together (the interval then says how sure the
figure is of those patients, over the seeds' models).

It runs in the worker that finishes a member's evaluation, after that evaluation is stored: results.py needs
scikit-learn (and SciPy), which the web process does not import."""
from __future__ import annotations

import logging

from django.db import transaction

from backend.experiments.models import RunGroup
from backend.runs.models import Evaluation, SamplePrediction
from workers.engine.tasks.classification.results import Predictions, classification_results

log = logging.getLogger(__name__)

BOOTSTRAP_SEED = 0  # one interval per set of predictions, whoever pools it


def pool_groups_of(evaluation: Evaluation) -> None:
    """Pool again every group the evaluated run belongs to. A failure is the group's, not the evaluation's: it is
    logged and written on the group, and the evaluation stays done."""
    # a sweep's members differ in their settings: their predictions together are no one model's
    groups = RunGroup.objects.filter(runs=evaluation.run_id).exclude(kind=RunGroup.Kind.SWEEP)
    for group_id in groups.values_list("pk", flat=True):
        try:
            pool(group_id)
        except Exception as exc:  # noqa: BLE001 - any fault of the pooling must leave the member's evaluation done
            log.exception("pooling group %s failed", group_id)
            RunGroup.objects.filter(pk=group_id).update(pooled={"error": f"Pooling failed ({type(exc).__name__}: {exc})."})


def pool(group_id: int) -> None:
    """The group's row is locked while it pools: of two members' evaluations finishing at once, the second to lock
    sees both (each pools after its own evaluation committed), so the last write holds every member."""
    with transaction.atomic():
        group = RunGroup.objects.select_for_update().get(pk=group_id)
        evaluations = group.member_evaluations()
        if not evaluations:
            return
        predictions = pooled_predictions(evaluations)
        results = classification_results(predictions, seed=BOOTSTRAP_SEED)
        RunGroup.objects.filter(pk=group_id).update(pooled={
            "evaluations": sorted(e.pk for e in evaluations), "runs": sorted(e.run_id for e in evaluations),
            "subset": group.evaluated_subset, "results": results})


def pooled_predictions(evaluations: list[Evaluation]) -> Predictions:
    """Every stored prediction of the evaluations, in the classes' order of the first (members share a dataset).
    A sample without a patient is its own patient across members (its id), so seeds do not count it twice."""
    classes = evaluations[0].results["classes"]
    rows = SamplePrediction.objects.filter(evaluation__in=evaluations).order_by("evaluation_id", "id")
    probabilities, truth, patients = [], [], []
    unnamed = 0  # predictions of samples without a patient id: the results then say the bootstrap drew images
    for row in rows.values_list("probabilities", "truth", "patient", "sample_id"):
        probabilities.append(row[0])
        truth.append(classes.index(row[1]))
        patients.append(row[2] or f"sample {row[3]}")
        unnamed += not row[2]
    return Predictions.of(probabilities, truth, patients, classes, unnamed=unnamed)

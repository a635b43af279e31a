"""The task seam: a run's task (tasks/) owns its targets, tally, metrics and per-sample predictions, and the spec
refuses a loss or a metric that does not serve it."""
import math

import numpy as np
import pytest
import torch

from workers.engine.tasks import METRICS, TASKS, metrics_of, task_for
from workers.engine.tasks.classification.tally import ClassificationOutcome
from workers.engine.training import losses
from workers.engine.training.spec import SpecInvalid, resolve_spec, spec_schema


def test_metrics_from_a_confusion_matrix_and_scores():
    confusion = np.array([[8, 2], [1, 9]])
    outcome = ClassificationOutcome(confusion)
    assert METRICS["accuracy"].compute(outcome) == pytest.approx(17 / 20)
    assert METRICS["balanced_accuracy"].compute(outcome) == pytest.approx((0.8 + 0.9) / 2)
    f1_first, f1_second = 2 * 8 / (2 * 8 + 2 + 1), 2 * 9 / (2 * 9 + 1 + 2)
    assert METRICS["macro_f1"].compute(outcome) == pytest.approx((f1_first + f1_second) / 2)
    # Of the 2 x 2 (negative, positive) pairs, the positive scores higher in 3: AUC 3/4.
    scored = ClassificationOutcome(confusion, np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]]), np.array([0, 0, 1, 1]))
    assert METRICS["auc"].compute(scored) == 0.75
    assert math.isnan(METRICS["auc"].compute(ClassificationOutcome(confusion, np.array([[0.9, 0.1]]), np.array([0]))))


def test_the_classification_tally_adds_batches_to_a_confusion_matrix_and_keeps_predictions():
    task = task_for("classification", ["lesion", "normal", "other"])
    assert task.outputs == 3 and task.targets_of(["other", "lesion"]) == [2, 0]
    tally = task.tally(torch.device("cpu"), keep_scores=True)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    tally.add(torch.tensor(0.5), logits[:2], torch.tensor([0, 0]))
    tally.add(torch.tensor(1.0), logits[2:], torch.tensor([2, 1]))
    summary = tally.summary(["accuracy", "auc"])
    assert summary["loss"] == pytest.approx((0.5 * 2 + 1.0 * 2) / 4) and summary["accuracy"] == pytest.approx(3 / 4)
    predictions = tally.predictions()
    assert [(p["predicted"], p["target"]) for p in predictions] == [(0, 0), (1, 0), (2, 2), (1, 1)]
    assert predictions[1]["probabilities"] == pytest.approx(torch.tensor([0.0, 3.0, 0.0]).softmax(0).tolist())
    assert task.tally(torch.device("cpu")).predictions() == [], "no scores kept: no predictions"


def test_the_export_metadata_names_the_task_its_classes_and_dimensions():
    assert task_for("classification", ["a", "b"], dims=3).export_metadata() == {
        "task": "classification", "classes": '["a", "b"]', "dims": "3"}


def test_every_metric_and_loss_names_tasks_that_exist_and_the_schema_lists_them():
    assert set(TASKS) == {"classification", "segmentation"}
    assert all(set(metric.tasks) <= set(TASKS) for metric in METRICS.values())
    assert all(set(loss.tasks) <= set(TASKS) for loss in losses.LOSSES.values())
    schema = spec_schema()
    assert [t["name"] for t in schema["tasks"]] == list(TASKS)
    assert all(entry["tasks"] for entry in schema["losses"] + schema["metrics"])
    assert metrics_of("classification") + metrics_of("segmentation") == list(METRICS)


def test_the_spec_refuses_a_loss_or_metric_that_does_not_serve_its_task(monkeypatch):
    class OnlyOther(METRICS["accuracy"]):
        name, title, tasks = "other_only", "Other only", ("other",)

    monkeypatch.setitem(METRICS, "other_only", OnlyOther)
    monkeypatch.setattr(losses.LOSSES["mse"], "tasks", ("other",))
    with pytest.raises(SpecInvalid) as refused:
        resolve_spec({"metrics": ["accuracy", "other_only"], "loss": {"name": "mse"}})
    assert refused.value.errors["metrics"].startswith("Other only cannot measure classification; choose among accuracy")
    assert refused.value.errors["loss.name"].startswith("Mean squared error is not a loss for classification; choose among cross_entropy")

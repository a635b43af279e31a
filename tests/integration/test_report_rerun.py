"""A run's report holds enough to train it again (issue 22, R4): a real worker trains a small run on the CPU and
evaluates it; its report's embedded spec, sent back to POST /api/runs/ on the same partition, trains a second run whose
test metrics and per-sample probabilities are the first run's (training on the CPU is deterministic for a seed)."""
import json
import re

import pytest

from backend.runs.models import Evaluation, TrainingRun
from tests.conftest import demo_entries
from tests.integration.test_evaluation import finished
from tests.integration.test_volume_training import partition_of, ready_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def trained_and_evaluated(api, body, worker) -> tuple[TrainingRun, Evaluation]:
    response = api.post("/api/runs/", body, format="json")
    assert response.status_code == 202, response.content
    run = finished(TrainingRun, response.json()["id"])
    assert run.status == "succeeded", run.message + worker.log_path.read_text()[-3000:]
    evaluation = finished(Evaluation, run.evaluations.get(subset="test").pk)
    assert evaluation.status == "done", evaluation.message + worker.log_path.read_text()[-3000:]
    return run, evaluation


def embedded_spec(api, run) -> dict:
    html = api.get(f"/api/runs/{run.pk}/report/").content.decode()
    return json.loads(re.search(r'<script id="spec" type="application/json">(.*?)</script>', html, re.S).group(1))


def test_a_run_trained_again_from_its_reports_spec_gets_the_same_metrics(api, project, celery_worker_process):
    dataset = ready_dataset(api, project, demo_entries(per_class=20), "Demo")
    partition = partition_of(api, dataset)
    first, first_evaluation = trained_and_evaluated(api, {"partition": partition, "model": {"architecture": "small_cnn"},
                                                          "epochs": 2, "seed": 11, "metrics": ["accuracy", "auc"]},
                                                    celery_worker_process)

    spec = embedded_spec(api, first)
    assert spec == first.spec and spec["seed"] == 11
    again, again_evaluation = trained_and_evaluated(api, {"partition": partition, "name": "again", **spec}, celery_worker_process)

    assert again.spec == first.spec, "the same settings, resolved the same way"
    # Bit for bit: the same seed on the CPU gives the same weights, so the same probabilities and the same metrics
    # (their intervals too: the bootstrap draws from a fixed seed).
    assert again_evaluation.results["metrics"] == first_evaluation.results["metrics"]
    assert again_evaluation.results["confusion"] == first_evaluation.results["confusion"]
    probabilities = {evaluation.pk: dict(evaluation.predictions.values_list("sample_id", "probabilities"))
                     for evaluation in (first_evaluation, again_evaluation)}
    assert probabilities[again_evaluation.pk] == probabilities[first_evaluation.pk]
    assert len(probabilities[first_evaluation.pk]) == sum(first.partition.counts["test"].values())

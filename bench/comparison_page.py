"""Response times of a comparison (issue 22, R3) of 20 runs of 100 epochs each; prints JSON.

Target (issue 22, "Speed"): the comparison page with 20 runs of 100 epochs answers in under 300 ms.

Each run has 100 epochs of metric points (loss, accuracy, balanced accuracy on training and validation, and the learning
rate: 700 points a run, 14,000 in all), a done test evaluation whose results hold ROC and precision-recall curves of
TEST_SAMPLES predictions, and those predictions as rows; four of the runs are also a group with a pooled evaluation,
compared beside them. Timed, each the median of several requests through Django's full stack (middleware,
authentication, audit log, serialisation), in a throw-away test database of its own (bench_comparison_page_<name>) on
the database DATABASE_URL names: the page (its HTML holds the whole comparison), the API's comparison, the same with
another metric's curves, the unsaved preview, and the paired tests between two runs. `ratio` is large over small (a
comparison of 2 runs of 10 epochs): near 1 means the answer does not grow with the runs.

Usage: python bench/comparison_page.py [runs] [epochs] [repeats]   (defaults 20, 100 and 7; BENCH_SMOKE=1: 4, 10 and 1)
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import median_request_ms, own_test_database, report, size  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else size(20, 4)
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else size(100, 10)
REPEATS = int(sys.argv[3]) if len(sys.argv) > 3 else size(7, 1)
TEST_SAMPLES = size(500, 60)
SMALL_RUNS, SMALL_EPOCHS = 2, 10
TARGET_MS = 300
CLASSES = ["benign", "malignant"]


def make_samples(project):
    from backend.datasets.models import Dataset, Partition, Sample

    dataset = Dataset.objects.create(project=project, name="Lesions", status=Dataset.Status.READY, sample_count=TEST_SAMPLES,
                                     class_counts={c: TEST_SAMPLES // 2 for c in CLASSES}, channels=1, height=64, width=64)
    Sample.objects.bulk_create(Sample(dataset=dataset, source_dataset=dataset, label=CLASSES[k % 2], source_path=f"{k}.png",
                                      files=[f"{k}.png"], array=f"datasets/{dataset.pk}/arrays/{k:07d}.npy", cache_index=k,
                                      width=64, height=64, channels=1, dtype="uint8", modality="PNG", patient=f"P-{k // 2:05d}",
                                      sha256=f"{dataset.pk:08d}{k:056d}") for k in range(TEST_SAMPLES))
    partition = Partition.objects.create(dataset=dataset, name="70/15/15", train_percent=70, validation_percent=15,
                                         test_percent=15, seed=1)
    return dataset, partition


def results_for(probabilities: np.ndarray, truth: np.ndarray) -> dict:
    """An evaluation's results as the evaluation job stores them (workers/engine/tasks/classification/results.py)."""
    from workers.engine.tasks.classification.results import Predictions, classification_results

    patients = [f"P-{k // 2:05d}" for k in range(len(truth))]
    return classification_results(Predictions.of(probabilities, truth, patients, CLASSES), resamples=200)


def make_runs(project, dataset, partition, count: int, epochs: int, label: str) -> list:
    from backend.runs.models import Evaluation, MetricPoint, SamplePrediction, TrainingRun

    samples = list(dataset.samples.order_by("pk"))
    truth = np.array([k % 2 for k in range(len(samples))])
    runs = []
    for n in range(count):
        run = TrainingRun.objects.create(project=project, partition=partition, name=f"{label} {n}", status="succeeded",
                                         spec={"epochs": epochs, "seed": n}, epochs_completed=epochs,
                                         provenance={"dataset": {"classes": CLASSES}})
        rng = np.random.default_rng(n)
        MetricPoint.objects.bulk_create(
            [MetricPoint(run=run, epoch=e, subset=s, name=name, value=float(rng.random()))
             for e in range(1, epochs + 1) for s in ("train", "validation") for name in ("loss", "accuracy", "balanced_accuracy")]
            + [MetricPoint(run=run, epoch=e, subset="system", name="learning_rate", value=1e-3) for e in range(1, epochs + 1)],
            batch_size=5000)
        positive = 1 / (1 + np.exp(-((truth * 2 - 1) * (0.5 + n / count) + rng.normal(0, 1, len(truth)))))
        probabilities = np.stack([1 - positive, positive], 1)
        evaluation = Evaluation.objects.create(run=run, subset="test", status="done", results=results_for(probabilities, truth))
        SamplePrediction.objects.bulk_create(
            [SamplePrediction(evaluation=evaluation, sample=sample, patient=sample.patient, truth=CLASSES[t],
                              predicted=CLASSES[int(p[1] >= 0.5)], probabilities=p.tolist(), truth_probability=float(p[t]),
                              confidence=float(p.max()), correct=bool(int(p[1] >= 0.5) == t))
             for sample, t, p in zip(samples, truth, probabilities)], batch_size=5000)
        runs.append(run)
    return runs


def make_group(project, partition, members, user):
    from backend.experiments.models import GroupMember, RunGroup
    from backend.runs.models import Evaluation

    group = RunGroup.objects.create(project=project, partition=partition, kind="seeds", name="Seeds", seeds=len(members),
                                    created_by=user)
    for seed, run in enumerate(members):
        GroupMember.objects.create(group=group, run=run, seed=seed)
    evaluations = list(Evaluation.objects.filter(run__in=members))
    group.pooled = {"evaluations": sorted(e.pk for e in evaluations), "runs": sorted(r.pk for r in members), "subset": "test",
                    "results": evaluations[0].results}  # pooled results of the same shape and size
    group.save(update_fields=["pooled"])
    return group


def requests_of(comparison, runs, group) -> dict[str, str]:
    ids = ",".join(str(run.pk) for run in runs)
    return {
        "comparison page (HTML with its data)": f"/comparisons/{comparison.pk}/",
        "API comparison": f"/api/comparisons/{comparison.pk}/",
        "API comparison, another metric": f"/api/comparisons/{comparison.pk}/?metric=loss",
        "API preview (unsaved)": f"/api/comparisons/preview/?runs={ids}" + (f"&groups={group.pk}" if group else ""),
        "API paired tests (DeLong, McNemar)": f"/api/comparisons/{comparison.pk}/paired/?a={runs[0].pk}&b={runs[1].pk}",
    }


def compared(user, runs, group):
    from backend.experiments.comparisons import create_comparison

    return create_comparison(user, [run.pk for run in runs], [group.pk] if group else [], "accuracy")


def main():
    from django.contrib.auth import get_user_model

    from backend.projects.models import Project

    setup_test_environment()
    own_test_database(connection, "comparison_page")
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        project = Project.objects.create(owner=user, name="Bench")
        start = time.perf_counter()
        dataset, partition = make_samples(project)
        large_runs = make_runs(project, dataset, partition, RUNS, EPOCHS, "large")
        group = make_group(project, partition, large_runs[: min(4, RUNS)], user)
        small_runs = make_runs(project, dataset, partition, SMALL_RUNS, SMALL_EPOCHS, "small")
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("ANALYZE")
        built = time.perf_counter() - start
        large, small = compared(user, large_runs, group), compared(user, small_runs, None)
        client = Client()
        client.force_login(user)
        large_ms = median_request_ms(client, requests_of(large, large_runs, group), REPEATS)
        small_ms = median_request_ms(client, requests_of(small, small_runs, None), REPEATS)
    finally:
        connection.creation.destroy_test_db(database, verbosity=0)
    pages = {name: {"ms": round(large_ms[name], 1), "small_ms": round(small_ms[name], 1),
                    "ratio": round(large_ms[name] / small_ms[name], 2)} for name in large_ms}
    slowest = max(large_ms.values())
    report("comparison_page", {
        "database": connection.vendor, "runs": RUNS, "epochs": EPOCHS, "metric_points": RUNS * EPOCHS * 7,
        "group_members": min(4, RUNS), "test_samples": TEST_SAMPLES, "small": {"runs": SMALL_RUNS, "epochs": SMALL_EPOCHS},
        "repeats": REPEATS, "seconds_to_build": round(built, 1), "pages": pages, "slowest_ms": round(slowest, 1),
        "target_ms": TARGET_MS, "meets_target": slowest < TARGET_MS,
    })


if __name__ == "__main__":
    main()

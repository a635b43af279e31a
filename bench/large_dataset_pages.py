"""Response times of the dataset list, dataset page and sample grid with 100,000 samples; prints JSON.

Target (issue 4): with 100,000 samples in a dataset, list and grid pages answer in under 300 ms.

Every request the dataset pages make is timed against a dataset of 100,000 samples (four labels,
2,000 patients, two sources through a merge, a train/validation/test partition) and against one of
100 samples, in this one process, on the database DATABASE_URL names (PostgreSQL in CI; SQLite
when unset) in a throw-away test database of its own (bench_large_dataset_pages_<name>; never the test suite's). Each figure is the median of several requests through
Django's full stack (middleware, authentication, audit log, serialisation). `ratio` is large over
small: near 1 means the pages do not grow with the dataset.

Usage: python bench/large_dataset_pages.py [samples] [repeats]   (defaults 100000 and 7; BENCH_SMOKE=1: 500 and 1)
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

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else size(100_000, 500)
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else size(7, 1)
SMALL = 100
LABELS = ("normal", "pneumonia", "covid", "effusion")
TARGET_MS = 300
FINGERPRINT = {"count": 2000, "spacings": [[0.7, 0.7]] * 2000, "shapes": [[256, 256]] * 2000, "modalities": ["DX"],
               "channels": [{"mean": 1800.0, "std": 600.0, "percentile_00_5": 300.0, "percentile_99_5": 3600.0,
                             "lowest": 0.0, "upper_spread": 0.02,
                             "all": {"mean": 1500.0, "std": 800.0, "percentile_00_5": 0.0, "percentile_99_5": 3600.0}}]}


def make_dataset(project, name: str, count: int, source=None):
    from backend.datasets.models import Dataset, Partition, PartitionMember, Sample

    dataset = Dataset.objects.create(
        project=project, name=name, status=Dataset.Status.READY, sample_count=count, patient_count=min(count, 2000),
        class_counts={label: count // len(LABELS) for label in LABELS}, channels=1, height=256, width=256, modalities="DX",
        fingerprint=FINGERPRINT)  # what the ingest job stores for 16-bit images; the arrays here are never written
    source = source or dataset
    batch = []
    for k in range(count):
        batch.append(Sample(
            dataset=dataset, source_dataset=source if k % 2 else dataset, label=LABELS[k % len(LABELS)],
            source_path=f"{LABELS[k % len(LABELS)]}/img_{k:06d}.dcm", files=[f"img_{k:06d}.dcm"],
            array=f"datasets/{dataset.pk}/arrays/{k:07d}.npy", original=f"datasets/{dataset.pk}/originals/{k:07d}.dcm",
            cache_index=k, height=256, width=256, channels=1, dtype="int16", modality="DX", patient=f"P-{k % 2000:06d}",
            spacing=[0.7, 0.7], meta={"rescale_slope": 1.0, "rescale_intercept": 0.0, "window_center": 40.0, "window_width": 400.0},
            sha256=f"{dataset.pk:08d}{k:056d}"))
        if len(batch) == 5000:
            Sample.objects.bulk_create(batch)
            batch = []
    Sample.objects.bulk_create(batch)
    partition = Partition.objects.create(dataset=dataset, name="70/15/15", train_percent=70, validation_percent=15,
                                         test_percent=15, seed=1)
    subsets = ["train"] * 14 + ["validation"] * 3 + ["test"] * 3
    ids = list(dataset.samples.values_list("id", flat=True))
    for start in range(0, len(ids), 5000):
        PartitionMember.objects.bulk_create([PartitionMember(partition=partition, sample_id=i, subset=subsets[i % 20])
                                             for i in ids[start:start + 5000]])
    return dataset, partition


def requests_of(project, dataset, partition, other) -> dict[str, str]:
    api = f"/api/datasets/{dataset.pk}"
    return {
        "project page (dataset list)": f"/projects/{project.pk}/",
        "API dataset list": f"/api/datasets/?project={project.pk}",
        "dataset page": f"/datasets/{dataset.pk}/",
        "API dataset (class balance)": f"{api}/",
        "grid first page": f"{api}/samples/?limit=48",
        "grid last page": f"{api}/samples/?limit=48&offset={max(dataset.sample_count - 48, 0)}",
        "grid by label": f"{api}/samples/?limit=48&label=covid",
        "grid by patient": f"{api}/samples/?limit=48&patient=P-000123",
        "grid by source": f"{api}/samples/?limit=48&source={other.pk}",
        "grid by subset": f"{api}/samples/?limit=48&partition={partition.pk}&subset=validation",
        "report, needing attention": f"{api}/report/?limit=50&status=rejected&status=quarantined&status=skipped",
    }


def main():
    from django.contrib.auth import get_user_model

    from backend.projects.models import Project

    setup_test_environment()
    own_test_database(connection, "large_dataset_pages")
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        project = Project.objects.create(owner=user, name="Bench")
        start = time.perf_counter()
        other, _ = make_dataset(project, "Hospital B", 10)
        large, large_partition = make_dataset(project, "Chest X-rays", SAMPLES, source=other)
        small, small_partition = make_dataset(project, "Pilot", SMALL, source=other)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("ANALYZE")
        built = time.perf_counter() - start
        client = Client()
        client.force_login(user)
        large_ms = median_request_ms(client, requests_of(project, large, large_partition, other), REPEATS)
        small_ms = median_request_ms(client, requests_of(project, small, small_partition, other), REPEATS)
    finally:
        connection.creation.destroy_test_db(database, verbosity=0)
    pages = {name: {"ms": round(large_ms[name], 1), "small_dataset_ms": round(small_ms[name], 1),
                    "ratio": round(large_ms[name] / small_ms[name], 2)} for name in large_ms}
    report("large_dataset_pages", {
        "database": connection.vendor, "samples": SAMPLES, "small_dataset_samples": SMALL, "repeats": REPEATS,
        "seconds_to_build": round(built, 1), "pages": pages, "slowest_ms": round(max(large_ms.values()), 1),
        "target_ms": TARGET_MS, "meets_target": max(large_ms.values()) < TARGET_MS,
    })


if __name__ == "__main__":
    main()

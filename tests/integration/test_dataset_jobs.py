"""Dataset jobs on a real worker process: a killed ingest resumes without loss or duplicates; merges index."""

from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.datasets.models import Dataset, IngestReportEntry, Sample
from tests.conftest import make_zip, png_bytes, start_worker, wait_for
from tests.factories import ready_dataset

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
FILES = 2400


def many_small_pngs() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    return {f"{'ab'[i % 2]}/img_{i:05d}.png": png_bytes(rng.integers(0, 255, (48, 48), dtype=np.uint8)) for i in range(FILES)}


def children_of(pid: int) -> list[int]:
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue  # gone while we looked
        if fields.get("PPid", "").strip() == str(pid):
            children.append(int(status.parent.name))
    return children


def test_killing_the_worker_mid_ingest_and_starting_another_finishes_with_nothing_lost_or_doubled(api, project, tmp_path):
    log = tmp_path / "workers.log"
    first = start_worker(log)
    response = api.post("/api/datasets/", {"project": project.pk, "name": "Big", "files": [SimpleUploadedFile("big.zip", make_zip(many_small_pngs()))]},
                        format="multipart")
    assert response.status_code == 202, response.content
    dataset_id = response.json()["id"]
    try:
        wait_for(lambda: IngestReportEntry.objects.filter(dataset_id=dataset_id).count() >= 200, 120, "the first journalled files",
                 interval=0.05)
        readers = children_of(first.pid)
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=30)
        assert readers, "the worker reads a large upload with a pool of processes"
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in readers), 10, "the pool's processes to die with the worker")
        killed_at = IngestReportEntry.objects.filter(dataset_id=dataset_id).count()
        assert Dataset.objects.get(pk=dataset_id).status == "ingesting", "killed before the ingest finished"
        assert killed_at < FILES, "the worker must die part-way for this test to mean anything"
        second = start_worker(log)
        try:
            dataset = wait_for(lambda: Dataset.objects.filter(pk=dataset_id, status__in=["ready", "failed"]).first(), 240,
                               "the resumed ingest to finish")
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert dataset.status == "ready", dataset.message + log.read_text()[-3000:]
    # The second worker has the first's name: at its start it takes back the job as its own, from before its restart.
    assert f"ingest {dataset_id} was running on this worker" in log.read_text(), log.read_text()[-3000:]
    assert "before it restarted; queued again (attempt 2 of 3)" in log.read_text()
    assert dataset.attempts == 2
    samples = Sample.objects.filter(dataset_id=dataset_id)
    assert samples.count() == FILES
    assert samples.values("source_path").distinct().count() == FILES, "no sample twice"
    assert IngestReportEntry.objects.filter(dataset_id=dataset_id).count() == FILES, "one outcome per file"
    assert sorted(samples.values_list("cache_index", flat=True)) == list(range(FILES))
    assert np.load(dataset.cache_path, mmap_mode="r").shape == (FILES, 1, 48, 48)
    assert dataset.class_counts == {"a": FILES // 2, "b": FILES // 2}
    assert not list(dataset.storage_dir.rglob("*.part")), "nothing half-written survives"
    print(f"killed after {killed_at} of {FILES} files were journalled")


def test_merge_indexes_the_samples_of_both_datasets_with_a_label_mapping(api, project, celery_worker_process):
    chest = ready_dataset(project, labels=("NORMAL", "PNEUMONIA"), per_class=6, name="Hospital A")
    other = ready_dataset(project, labels=("normal", "pneumonia"), per_class=4, name="Hospital B")
    files_before = sorted(p for p in project.storage_dir.rglob("*.npy"))
    response = api.post("/api/datasets/merge/", {"name": "Both", "datasets": [chest.pk, other.pk],
                                                 "label_mapping": {"NORMAL": "normal", "PNEUMONIA": "pneumonia"}}, format="json")
    assert response.status_code == 202, response.content
    merged = wait_for(lambda: Dataset.objects.filter(pk=response.json()["id"], status__in=["ready", "failed"]).first(), 120, "the merge")
    assert merged.status == "ready", merged.message
    assert merged.class_counts == {"normal": 10, "pneumonia": 10}
    assert set(merged.merged_from.values_list("pk", flat=True)) == {chest.pk, other.pk}
    by_source = {s.pk: s for s in Sample.objects.filter(dataset__in=[chest, other])}
    for sample in merged.samples.all():
        assert sample.source_dataset_id in (chest.pk, other.pk)
        assert sample.array.startswith(f"datasets/{sample.source_dataset_id}/"), "the merge points at the source's files"
    assert len(by_source) == 20
    new_arrays = sorted(set(project.storage_dir.rglob("*.npy")) - set(files_before) - {merged.cache_path})
    assert new_arrays == [], "no sample file was copied"
    assert np.load(merged.cache_path).shape == (20, 1, 64, 64)
    body = api.get(f"/api/datasets/{merged.pk}/samples/?source={other.pk}").json()
    assert body["count"] == 8
    refused = api.delete(f"/api/datasets/{chest.pk}/")
    assert refused.status_code == 409 and "Both" in refused.json()["message"]

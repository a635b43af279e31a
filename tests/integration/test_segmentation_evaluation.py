"""A segmentation run's evaluation (issue 23): a tiny 3D U-Net trained by the training job's own code on generated
anisotropic CT volumes whose masks hold the label value 2 ("tumour"), then the evaluation job on its test subset: each
case predicted, brought back to the sample's grid, scored there against the sample's own mask with its own spacing,
its label map kept (label values, uint8) for the overlay; the API lists the cases worst first or by a label's measure,
serves a case's mask as a PNG plane and as .npy, and the case table as CSV; a stop between cases keeps nothing."""
import csv
import hashlib
import io

import numpy as np
import pytest

from backend.datasets.models import Dataset, PartitionMember, Sample
from backend.datasets.services import create_partition
from backend.runs.models import Evaluation, SegmentationCase, TrainingRun
from backend.runs.services import launch_run
from workers.engine.observer import JobStopped
from workers.evaluation import EVALUATION, EVALUATIONS
from workers.training import RunReporter, train_and_store

pytestmark = pytest.mark.django_db(transaction=True)

SHAPE, TUMOUR = (16, 24, 24), 2


def spacing_of(index: int) -> list[float]:
    """Most volumes at 2 x 0.8 x 0.8 mm (the plan's spacing), every third at 0.9 mm in-plane: resampled for the model,
    and scored back on their own grid."""
    return [2.0, 0.9, 0.9] if index % 3 == 2 else [2.0, 0.8, 0.8]


def tumour_volumes(project, count=12) -> Dataset:
    """CT-like volumes (noise around 0 HU) each holding a bright box (200 HU) labelled 2 in its mask."""
    dataset = Dataset.objects.create(project=project, name="Tumours", status=Dataset.Status.READY, sample_count=count,
                                     task=Dataset.Task.SEGMENTATION, channels=1, height=SHAPE[1], width=SHAPE[2],
                                     modalities="CT", class_counts={"scan": count}, masked_count=count, mask_values=[0, TUMOUR],
                                     label_names={str(TUMOUR): "tumour"}, patient_count=count)
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    samples = []
    for index in range(count):
        mask = np.zeros(SHAPE, np.uint8)
        z, y, x = int(rng.integers(1, 8)), int(rng.integers(2, 12)), int(rng.integers(2, 12))
        mask[z:z + 6, y:y + 9, x:x + 9] = TUMOUR
        volume = (rng.normal(0, 20, SHAPE) + np.where(mask > 0, 200, 0)).astype(np.int16)
        np.save(arrays / f"{index:04d}.npy", volume)
        np.save(arrays / f"{index:04d}-mask.npy", mask)
        samples.append(Sample(dataset=dataset, source_dataset=dataset, label="scan", kind=Sample.Kind.VOLUME, modality="CT",
                              source_path=f"scan-{index}.nii.gz", files=[f"scan-{index}.nii.gz"],
                              array=f"datasets/{dataset.pk}/arrays/{index:04d}.npy",
                              mask=f"datasets/{dataset.pk}/arrays/{index:04d}-mask.npy", depth=SHAPE[0], height=SHAPE[1],
                              width=SHAPE[2], channels=1, dtype="int16", spacing=spacing_of(index), patient=f"P-{index:03d}",
                              sha256=hashlib.sha256(f"{dataset.pk} tumour {index}".encode()).hexdigest()))
    Sample.objects.bulk_create(samples)
    return dataset


@pytest.fixture
def trained_run(user, project, monkeypatch):
    """A segmentation run trained in this process (no broker: the jobs are called, not sent)."""
    monkeypatch.setattr("backend.runs.services.send_after_commit", lambda *args, **kwargs: None)
    dataset = tumour_volumes(project)
    partition = create_partition(user, dataset, "", 50, 25, 25, 7)
    run = launch_run(project, partition, {"epochs": 2, "batch_size": 2, "seed": 1}, user)
    assert run.spec["task"] == "segmentation"
    train_and_store(run, RunReporter(run))
    run.refresh_from_db()
    assert run.status == "succeeded", run.message
    return run


def test_a_segmentation_run_is_evaluated_case_by_case_on_each_samples_own_grid(api, outsider, trained_run):
    run = trained_run
    evaluation = Evaluation.objects.get(run=run, subset="test")  # queued by the training job
    EVALUATION.run(evaluation.pk, "here")
    evaluation.refresh_from_db()
    assert evaluation.status == "done", evaluation.message
    assert "mean foreground Dice" in evaluation.message

    test_samples = list(PartitionMember.objects.filter(partition=run.partition, subset="test"))
    cases = list(SegmentationCase.objects.filter(evaluation=evaluation).select_related("sample"))
    assert len(cases) == len(test_samples) >= 2
    for case in cases:
        predicted = np.load(run.project.storage_dir / case.mask)
        assert predicted.shape == SHAPE and predicted.dtype == np.uint8, "on the sample's own grid, as label values"
        assert set(np.unique(predicted)) <= {0, TUMOUR}
        reference = np.load(case.sample.project_dir / case.sample.mask) == TUMOUR
        ours = predicted == TUMOUR
        # The stored scores are the stored map's, against the sample's own mask, by hand.
        hand = 2 * (ours & reference).sum() / (ours.sum() + reference.sum()) if ours.sum() + reference.sum() else 1.0
        assert case.dice["tumour"] == pytest.approx(hand) and case.mean_dice == pytest.approx(hand)
        voxel = float(np.prod(case.sample.spacing)) / 1000
        assert case.reference_volume["tumour"] == pytest.approx(reference.sum() * voxel)
        assert case.predicted_volume["tumour"] == pytest.approx(ours.sum() * voxel)
        assert case.hd95["tumour"] >= 0 and 0 <= case.nsd["tumour"] <= 1 and case.patient == case.sample.patient

    results = api.get(f"/api/evaluations/{evaluation.pk}/").json()["results"]
    assert results["task"] == "segmentation" and results["classes"] == ["background", "tumour"]
    assert results["samples"] == len(cases) and results["volume_unit"] == "ml"
    dice = results["per_class"]["dice"][0]
    assert dice["class"] == "tumour" and dice["value"] == pytest.approx(np.mean([c.dice["tumour"] for c in cases]))
    assert dice["low"] <= dice["value"] <= dice["high"]
    assert {"dice", "iou", "hd95", "nsd", "predicted_volume", "reference_volume"} <= set(results["per_class"])

    listed = api.get(f"/api/evaluations/{evaluation.pk}/cases/").json()["results"]
    assert [row["mean_dice"] for row in listed] == sorted(c.mean_dice for c in cases), "worst first"
    by_distance = api.get(f"/api/evaluations/{evaluation.pk}/cases/?order=hd95&class=tumour").json()["results"]
    assert [row["hd95"]["tumour"] for row in by_distance] == sorted((c.hd95["tumour"] for c in cases), reverse=True)
    unknown = api.get(f"/api/evaluations/{evaluation.pk}/cases/?order=dice&class=liver")
    assert unknown.status_code == 400 and unknown.json()["field"] == "class"
    assert api.get(f"/api/evaluations/{evaluation.pk}/cases/?order=best").json()["field"] == "order"

    case = cases[0]
    plane = api.get(f"{listed[0]['mask_url']}?axis=coronal&index=5")
    assert plane.status_code == 200 and plane["Content-Type"] == "image/png"
    assert (plane["X-Plane-Index"], plane["X-Plane-Count"]) == ("5", str(SHAPE[1]))
    whole = api.get(f"/api/evaluations/{evaluation.pk}/cases/{case.sample_id}/mask/?file=npy")
    assert whole.status_code == 200
    assert np.array_equal(np.load(io.BytesIO(b"".join(whole.streaming_content))), np.load(run.project.storage_dir / case.mask))
    assert api.get(f"/api/evaluations/{evaluation.pk}/cases/999999/mask/").status_code == 404
    assert api.get(f"{listed[0]['mask_url']}?style=dots").json()["field"] == "style"

    table = api.get(f"/api/evaluations/{evaluation.pk}/export/?table=cases&file=csv")
    rows = list(csv.reader(io.StringIO(table.content.decode())))
    assert rows[0][:4] == ["sample", "file", "patient", "mean_dice"] and "hd95_mm(tumour)" in rows[0]
    assert len(rows) == len(cases) + 1 and [float(r[3]) for r in rows[1:]] == sorted(c.mean_dice for c in cases)
    metrics = api.get(f"/api/evaluations/{evaluation.pk}/export/?table=metrics&file=csv").content.decode()
    assert "hd95,tumour," in metrics and "mean_dice,," in metrics

    report = api.get(f"/api/runs/{run.pk}/report/")
    assert report.status_code == 200, "the run's report reads a segmentation's results"
    words = report.content.decode().split('<script id="spec"')[0]
    assert '<table id="report-labels">' in words and f"{dice['value']:.4f}" in words and 'id="report-confusion"' not in words
    assert "<li>tumour: " in words.split('<section id="postprocessing">')[1], "the trained run's postprocessing choice, in words"

    from rest_framework.test import APIClient
    stranger = APIClient()
    stranger.force_authenticate(outsider)
    assert stranger.get(f"/api/evaluations/{evaluation.pk}/cases/").status_code == 404
    refused = api.post("/api/evaluations/", {"run": run.pk, "dataset": run.partition.dataset_id}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "dataset"


class StopsAfter:
    """A job's reporter that asks to stop once `cases` cases were predicted (the store's own progress not counted)."""

    def __init__(self, cases):
        self.cases, self.reports = cases, []

    def progress(self, done, total, message=""):
        if message.startswith("Predicting"):
            self.reports.append((done, total, message))

    def should_stop(self):
        return len(self.reports) >= self.cases


def test_a_stop_between_cases_keeps_no_case_and_no_mask(trained_run):
    evaluation = Evaluation.objects.get(run=trained_run, subset="test")
    reporter = StopsAfter(1)
    with pytest.raises(JobStopped):
        EVALUATIONS["segmentation"].measure(evaluation, reporter)
    tested = PartitionMember.objects.filter(partition=trained_run.partition, subset="test").count()
    assert reporter.reports == [(1, tested, "Predicting and scoring the test cases")], "progress per case"
    assert len(list((evaluation.storage_dir / "masks").iterdir())) == 1, "the first case's map, written before the stop"
    EVALUATION.discard(evaluation, Evaluation.Status.STOPPED)
    assert not evaluation.cases.exists() and not evaluation.storage_dir.exists()
    assert TrainingRun.objects.filter(pk=trained_run.pk).exists()

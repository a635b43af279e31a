"""Aggregation pipelines (P2): measures per sample into a table, charts' data, CSV and XLSX exports."""
import csv
import io

import numpy as np
import pytest
from openpyxl import load_workbook

from backend.pipelines.models import Aggregation, Pipeline
from tests.conftest import wait_for
from tests.factories import ready_dataset, volumes_with_masks
from workers.aggregate import AGGREGATION, measure_dataset

pytestmark = pytest.mark.django_db
VOXEL_MM3 = 2.0 * 0.5 * 0.5
VOXELS = 6 * 16 * 16
EVERY_MEASURE = ["mean", "p95", "mask_volume", "lesion_area", "mask_mean", "histogram"]


def create(api, project, measures, steps=(), name="Measure"):
    return api.post("/api/pipelines/", {"project": project.pk, "name": name, "kind": "aggregation", "steps": list(steps),
                                        "measures": measures}, format="json")


def start(api, pipeline_id, dataset):
    response = api.post("/api/aggregations/", {"pipeline": pipeline_id, "dataset": dataset.pk}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


class Silent:
    """Stands in for the worker's observer when a test calls the job function directly."""

    def progress(self, done, total, message=""):
        pass

    def should_stop(self):
        return False


def test_the_measures_are_listed_with_their_units_and_checked_when_a_pipeline_is_saved(api, project):
    measures = {m["name"]: m for m in api.get("/api/measures/").json()}
    assert measures["mask_volume"] == {"name": "mask_volume", "title": "Mask volume", "unit": "ml", "needs_mask": True}
    assert measures["lesion_area"]["unit"] == "mm²" and "histogram" in measures and not measures["mean"]["needs_mask"]
    response = create(api, project, [])
    assert response.status_code == 400 and response.json()["field"] == "measures" and "at least one measure" in response.json()["message"]
    response = create(api, project, ["mean", "volume_in_litres"])
    assert response.status_code == 400 and "volume_in_litres" in response.json()["message"] and "mask_volume" in response.json()["message"]
    response = create(api, project, ["mean"], steps=[{"op": "additive_gaussian_noise"}])
    assert response.status_code == 400 and "cannot hold random operations" in response.json()["message"]
    response = api.post("/api/pipelines/", {"project": project.pk, "name": "Aug", "steps": [], "measures": ["mean"]}, format="json")
    assert response.status_code == 400 and "Only aggregation pipelines take measures" in response.json()["message"]
    body = create(api, project, ["mean", "mean", "std"], steps=[{"op": "rescale_to_hu"}]).json()
    assert body["versions"][0]["measures"] == ["mean", "std"], "each measure once, in the order chosen"
    versions = api.patch(f"/api/pipelines/{body['id']}/", {"measures": ["median"]}, format="json").json()["versions"]
    assert [(v["number"], v["measures"]) for v in versions] == [(1, ["median"])], "unused: changed in place"


def test_only_an_aggregation_pipeline_makes_a_table_and_only_of_a_ready_dataset(api, project):
    dataset = ready_dataset(project, per_class=2)
    augment = api.post("/api/pipelines/", {"project": project.pk, "name": "Aug", "steps": [{"op": "flip"}]}, format="json").json()
    response = api.post("/api/aggregations/", {"pipeline": augment["id"], "dataset": dataset.pk}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "pipeline" and "aggregation pipeline" in response.json()["message"]
    measure = create(api, project, ["mean"]).json()
    response = api.post(f"/api/pipelines/{measure['id']}/run/", {"dataset": dataset.pk}, format="json")
    assert response.status_code == 400 and "POST /api/aggregations/" in response.json()["message"]
    response = api.post("/api/aggregations/", {"pipeline": measure["id"], "dataset": 999999}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "dataset"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_measures_every_sample_and_the_table_exports_as_csv_and_xlsx(api, project, celery_worker_process):
    dataset = volumes_with_masks(project)
    pipeline = create(api, project, EVERY_MEASURE).json()
    table = start(api, pipeline["id"], dataset)
    assert table["status"] == "queued" and table["measures"] == EVERY_MEASURE
    done = wait_for(lambda: Aggregation.objects.filter(pk=table["id"], status__in=["ready", "failed"]).first(), 120, "the measures")
    assert done.status == "ready", done.message
    assert done.message == "4 of 4 samples measured."
    rows = api.get(f"/api/aggregations/{table['id']}/rows/?limit=10").json()["results"]
    assert [r["label"] for r in rows] == ["grade-0", "grade-0", "grade-1", "grade-1"]
    for row, voxels in zip(rows, [40, 120, 300]):
        values = row["values"]
        assert values["mask_volume"] == pytest.approx(voxels * VOXEL_MM3 / 1000), "ml from the voxel spacing"
        assert values["lesion_area"] == pytest.approx(min(voxels, 256) * 0.25), "largest slice, mm²"
        assert values["mask_mean"] == pytest.approx(100)
        assert values["mean"] == pytest.approx((100 * voxels - 50 * (VOXELS - voxels)) / VOXELS, rel=1e-5)
        assert sum(row["histogram"]) == VOXELS and row["problems"] == {}
    unmasked = rows[3]
    assert set(unmasked["problems"]) == {"mask_volume", "lesion_area", "mask_mean"} and "no mask" in unmasked["problems"]["mask_volume"]
    assert unmasked["values"]["mean"] == -50 and sum(unmasked["histogram"]) == VOXELS

    body = api.get(f"/api/aggregations/{table['id']}/").json()
    assert body["measured_count"] == 4 and body["progress"] == 1.0 and body["pipeline"]["name"] == "Measure"
    assert len(body["histogram_edges"]) == 65 and body["histogram_edges"][0] == -50 and body["histogram_edges"][-1] == 100
    assert sum(body["histograms"]["grade-1"]) == 2 * VOXELS and body["histograms"]["grade-1"][-1] == 300, "mask voxels in the top bin"
    volume = body["summary"]["mask_volume"]
    assert volume["labels"]["grade-0"]["box"]["median"] == pytest.approx(0.04) and volume["labels"]["grade-0"]["box"]["count"] == 2
    assert volume["labels"]["grade-1"]["box"]["count"] == 1, "the sample without a mask is left out of the volume charts only"
    assert body["summary"]["mean"]["labels"]["grade-1"]["box"]["count"] == 2
    assert [c["unit"] for c in body["columns"]][:3] == ["", "", "ml"]

    response = api.get(f"/api/aggregations/{table['id']}/export/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="Measure-v1-Volumes.csv"'
    exported = list(csv.reader(io.StringIO(response.content.decode())))
    assert exported[0] == ["sample", "label", "patient", "mean", "p95", "mask_volume (ml)", "lesion_area (mm²)", "mask_mean", "problems"]
    assert float(exported[3][5]) == pytest.approx(0.15) and exported[4][5] == "" and "mask_volume: this sample has no mask" in exported[4][8]
    histogram = list(csv.reader(io.StringIO(api.get(f"/api/aggregations/{table['id']}/export/?table=histogram").content.decode())))
    assert histogram[0] == ["bin start", "bin end", "grade-0", "grade-1"] and len(histogram) == 65
    workbook = load_workbook(io.BytesIO(api.get(f"/api/aggregations/{table['id']}/export/?file=xlsx").content))
    assert workbook.sheetnames == ["Values", "Histogram", "About"]
    values = list(workbook["Values"].values)
    assert values[0][5] == "mask_volume (ml)" and values[1][5] == pytest.approx(0.02) and values[4][5] is None
    assert ("pipeline", "Measure v1") in list(workbook["About"].values)
    # The version it used is frozen: changing the measures makes version 2.
    versions = api.patch(f"/api/pipelines/{pipeline['id']}/", {"measures": ["mean"]}, format="json").json()["versions"]
    assert [(v["number"], v["used"]) for v in versions] == [(1, True), (2, False)]


def test_steps_run_before_measuring_and_samples_they_cannot_take_say_why(project, user):
    version = Pipeline.objects.create(project=project, name="Iso", kind="aggregation").versions.create(
        number=1, steps=[{"op": "resample"}], measures=["mean", "histogram"])
    pictures = ready_dataset(project, per_class=2)  # PNG: no voxel spacing to resample from
    failed = Aggregation.objects.create(dataset=pictures, pipeline_version=version, name="t", measures=version.measures, status="running")
    measure_dataset(failed, Silent())
    failed.refresh_from_db()
    assert failed.status == "failed" and "could not take any sample" in failed.message
    assert failed.rows.count() == 4 and "voxel spacing" in failed.rows.first().problems["*"]

    volumes = volumes_with_masks(project)
    scaled = Pipeline.objects.create(project=project, name="Scaled", kind="aggregation").versions.create(
        number=1, steps=[{"op": "min_max"}], measures=["min", "max", "mask_volume"])
    table = Aggregation.objects.create(dataset=volumes, pipeline_version=scaled, name="t", measures=scaled.measures, status="running")
    measure_dataset(table, Silent())
    row = table.rows.get(index=0)
    assert (row.values["min"], row.values["max"]) == (0.0, 1.0), "measured after the steps"
    assert row.values["mask_volume"] == pytest.approx(0.02), "on the sample's own mask and spacing"


def test_a_stop_before_a_worker_starts_keeps_nothing_and_exports_wait_for_a_ready_table(api, project):
    dataset = volumes_with_masks(project)
    table = start(api, create(api, project, ["mean"]).json()["id"], dataset)
    response = api.get(f"/api/aggregations/{table['id']}/export/")
    assert response.status_code == 409 and "not ready" in response.json()["message"]
    assert api.delete(f"/api/aggregations/{table['id']}/").status_code == 409, "stop it first"
    assert api.post(f"/api/aggregations/{table['id']}/stop/").status_code == 202
    AGGREGATION.run(table["id"], "test")
    stopped = Aggregation.objects.get(pk=table["id"])
    assert stopped.status == "stopped" and stopped.rows.count() == 0
    assert api.delete(f"/api/aggregations/{table['id']}/").status_code == 204


def test_export_refuses_unknown_formats_and_a_histogram_never_measured(api, project):
    dataset = ready_dataset(project, per_class=2)
    version = Pipeline.objects.create(project=project, name="M", kind="aggregation").versions.create(number=1, steps=[], measures=["mean"])
    table = Aggregation.objects.create(dataset=dataset, pipeline_version=version, name="t", measures=["mean"], status="running")
    measure_dataset(table, Silent())
    url = f"/api/aggregations/{table.pk}/export/"
    for query, field in (("?file=pdf", "file"), ("?table=boxes", "table"), ("?table=histogram", "table")):
        response = api.get(url + query)
        assert response.status_code == 400 and response.json()["field"] == field, query
    assert "add the histogram measure" in api.get(url + "?table=histogram").json()["message"]
    assert api.get(url + "?file=xlsx").status_code == 200
    assert np.isclose(float(list(csv.reader(io.StringIO(api.get(url).content.decode())))[1][3]),
                      np.load(dataset.samples.first().project_dir / dataset.samples.first().array).mean(), rtol=1e-5)


def test_a_stop_during_the_measures_ends_the_job_before_the_next_sample(project):
    from workers.engine.observer import JobStopped

    class StopAfterTwo(Silent):
        def __init__(self):
            self.done = 0

        def progress(self, done, total, message=""):
            self.done = done

        def should_stop(self):
            return self.done >= 2

    dataset = volumes_with_masks(project)
    version = Pipeline.objects.create(project=project, name="M", kind="aggregation").versions.create(number=1, steps=[], measures=["mean"])
    table = Aggregation.objects.create(dataset=dataset, pipeline_version=version, name="t", measures=["mean"], status="running")
    observer = StopAfterTwo()
    with pytest.raises(JobStopped):
        measure_dataset(table, observer)
    assert observer.done == 2 and table.rows.count() == 0, "nothing is written before the end"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_table_whose_worker_died_is_measured_again_by_the_next_worker(project, celery_worker_process):
    dataset = volumes_with_masks(project)
    version = Pipeline.objects.create(project=project, name="M", kind="aggregation").versions.create(number=1, steps=[], measures=["mean"])
    # As a worker killed mid-job leaves it: running, claimed, silent.
    orphan = Aggregation.objects.create(dataset=dataset, pipeline_version=version, name="t", measures=["mean"], status="running",
                                        worker="celery@gone", heartbeat_at=None, attempts=1)
    done = wait_for(lambda: Aggregation.objects.filter(pk=orphan.pk, status__in=["ready", "failed"]).first(), 120, "the restarted job")
    assert done.status == "ready" and done.rows.count() == 4 and done.worker != "celery@gone"
    assert done.attempts == 2, "the next worker claimed it a second time"

"""Evaluation as a job (issue 22): a run that succeeds is evaluated on its test subset by a real worker; each
sample's prediction is stored and listed worst first; the results carry metrics with 95% intervals from a bootstrap
over patients; an owner evaluates another subset; bad requests are refused with the field."""
import pytest

from backend.runs.models import Evaluation, TrainingRun
from tests.conftest import demo_entries, wait_for
from tests.integration.test_volume_training import partition_of, ready_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def finished(model, pk, seconds=300):
    return wait_for(lambda: model.objects.filter(pk=pk, status__in=model.finished_statuses()).first(), seconds,
                    f"{model.__name__} {pk} to finish")


def test_a_succeeded_run_is_evaluated_on_its_test_subset_by_itself(api, project, celery_worker_process):
    dataset = ready_dataset(api, project, demo_entries(per_class=25), "Demo")
    partition = partition_of(api, dataset)
    response = api.post("/api/runs/", {"partition": partition, "model": {"architecture": "small_cnn"}, "epochs": 2}, format="json")
    assert response.status_code == 202, response.content
    run = finished(TrainingRun, response.json()["id"])
    assert run.status == "succeeded", run.message

    listed = api.get(f"/api/evaluations/?run={run.pk}").json()["results"]
    assert [e["subset"] for e in listed] == ["test"], "one evaluation, queued by the training job"
    evaluation = finished(Evaluation, listed[0]["id"])
    assert evaluation.status == "done", evaluation.message + celery_worker_process.log_path.read_text()[-3000:]
    results = api.get(f"/api/evaluations/{evaluation.pk}/").json()["results"]
    tested = sum(run.partition.counts["test"].values())
    assert results["samples"] == tested and results["patients"] == tested and results["resamples"] == 2000
    accuracy = results["metrics"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"] and accuracy["high"] - accuracy["low"] > 0
    assert {"auc", "balanced_accuracy", "mcc", "brier", "ece"} <= set(results["metrics"])
    assert sum(map(sum, results["confusion"]["counts"])) == tested and results["operating_points"]
    assert abs(accuracy["value"] - run.results["test"]["accuracy"]) < 1e-6, "the kept model, as the run measured it"

    rows = api.get(f"/api/evaluations/{evaluation.pk}/predictions/").json()["results"]
    assert len(rows) == tested
    assert [r["truth_probability"] for r in rows] == sorted(r["truth_probability"] for r in rows), "worst errors first"
    assert all(r["sample"] for r in rows) and {r["truth"] for r in rows} == {"lesion", "normal"}
    least = api.get(f"/api/evaluations/{evaluation.pk}/predictions/?order=least_confident&truth=lesion").json()["results"]
    assert least and all(r["truth"] == "lesion" for r in least)
    assert [r["confidence"] for r in least] == sorted(r["confidence"] for r in least)

    again = api.post("/api/evaluations/", {"run": run.pk, "subset": "validation"}, format="json")
    assert again.status_code == 202, again.content
    assert finished(Evaluation, again.json()["id"]).status == "done"
    refused = api.post("/api/evaluations/", {"run": run.pk, "subset": "train"}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "subset"
    unknown_order = api.get(f"/api/evaluations/{evaluation.pk}/predictions/?order=best")
    assert unknown_order.status_code == 400 and unknown_order.json()["field"] == "order"


def renamed(entries: dict[str, bytes], names: dict[str, str]) -> dict[str, bytes]:
    """The same kind of images under other class folders (another hospital's names for the classes)."""
    return {f"{names[path.split('/')[0]]}/{path.split('/', 1)[1]}": data for path, data in entries.items()}


def test_a_run_is_evaluated_on_another_dataset_with_its_classes_mapped(api, project, celery_worker_process):
    entries = demo_entries(per_class=15)
    dataset = ready_dataset(api, project, entries, "Demo")
    response = api.post("/api/runs/", {"partition": partition_of(api, dataset), "model": {"architecture": "small_cnn"},
                                       "epochs": 2}, format="json")
    run = finished(TrainingRun, response.json()["id"])
    assert run.status == "succeeded", run.message
    # Another site's copy of the same images, its classes named otherwise, and a class the model never saw: each
    # image must get the very probabilities it got in the run's own test evaluation, whatever the model's quality.
    other_entries = renamed(entries, {"lesion": "Lesion", "normal": "healthy"})
    other_entries.update({f"artefact/a_{i}.png": data for i, data in enumerate(list(demo_entries(per_class=2, seed=9).values()))})
    other = ready_dataset(api, project, other_entries, "Other site")

    facts = api.get(f"/api/evaluations/class-mapping/?run={run.pk}&dataset={other.pk}").json()
    assert facts["suggested"] == {"Lesion": "lesion", "artefact": None, "healthy": None}, "names matched ignoring case, others left to the user"
    assert facts["samples"] == {"Lesion": 15, "artefact": 4, "healthy": 15}

    unmapped = api.post("/api/evaluations/", {"run": run.pk, "dataset": other.pk}, format="json")
    assert unmapped.status_code == 400 and unmapped.json()["field"] == "class_mapping"
    assert "'artefact', 'healthy'" in unmapped.json()["message"] and unmapped.json()["mapping"]["Lesion"] == "lesion"
    wrong = api.post("/api/evaluations/", {"run": run.pk, "dataset": other.pk, "class_mapping": {"healthy": "tumour"}}, format="json")
    assert wrong.status_code == 400 and "'healthy': 'tumour'" in wrong.json()["message"]
    own = api.post("/api/evaluations/", {"run": run.pk, "dataset": dataset.pk}, format="json")
    assert own.status_code == 400 and own.json()["field"] == "dataset" and "test or validation subset" in own.json()["message"]
    assert not Evaluation.objects.filter(run=run, dataset__isnull=False).exists(), "nothing queued by a refusal"

    response = api.post("/api/evaluations/", {"run": run.pk, "dataset": other.pk,
                                              "class_mapping": {"healthy": "normal", "artefact": None}}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["subset"] == "all" and response.json()["dataset"] == other.pk
    external = finished(Evaluation, response.json()["id"])
    assert external.status == "done", external.message + celery_worker_process.log_path.read_text()[-3000:]
    assert external.results["samples"] == 30, "the artefact class left out"
    internal = finished(Evaluation, Evaluation.objects.get(run=run, subset="test").pk)

    def by_file(evaluation):
        return {prediction.sample.source_path.split("/")[-1]: prediction for prediction in evaluation.predictions.select_related("sample")}

    theirs, ours = by_file(external), by_file(internal)
    assert len(theirs) == 30 and set(ours) < set(theirs)
    for name, prediction in ours.items():
        assert theirs[name].truth == prediction.truth, f"{name}: the mapped class is the run's class"
        assert max(abs(a - b) for a, b in zip(theirs[name].probabilities, prediction.probabilities)) < 1e-5, name
    assert external.results["operating_points"], "chosen on the run's validation subset"

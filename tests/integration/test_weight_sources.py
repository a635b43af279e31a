"""Where a run's weights come from, through the API: ImageNet, or MedicalNet's for the 3D ResNets, only when its file
is on the server (a 400 saying which file to put where otherwise), an earlier run only when the user may read it and it kept a model of the same
architecture, a network that must take the dataset's images (or resize them inside), the lineage recorded at launch
and shown on the run page, and the list of runs a run can start from."""
import hashlib

import numpy as np
import pytest

from backend.datasets.models import Dataset, Sample
from backend.datasets.services import create_partition
from backend.projects.models import Project
from backend.runs.lineage import LINEAGE_CAP
from backend.runs.models import TrainingRun
from tests.factories import ready_dataset, training_spec
from tests.integration.test_api import assert_error
from workers.engine.zoo.registry import MODELS
from workers.engine.zoo.start import ModelStart
from workers.engine.zoo.weights import WeightsUnavailable
from workers.starting_weights import changes, model_start

pytestmark = pytest.mark.django_db

RESNET18_FILE = MODELS["resnet18"].weights_named("imagenet").filename


@pytest.fixture
def weights_folder(settings, tmp_path, monkeypatch):
    """An empty weights folder and an empty torchvision cache: what an offline server has before anyone adds a file."""
    settings.PRETRAINED_WEIGHTS_DIR = tmp_path / "weights"
    settings.PRETRAINED_WEIGHTS_DIR.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return settings.PRETRAINED_WEIGHTS_DIR


def a_partition(project, labels=("lesion", "normal"), size=64, name="X-rays"):
    return create_partition(project.owner, ready_dataset(project, labels=labels, size=size, name=name), "", 70, 15, 15, 1)


def launch(api, partition, **settings):
    return api.post("/api/runs/", {"partition": partition.pk, "epochs": 2, **settings}, format="json")


def finished_run(partition, architecture="small_cnn", name="Earlier", status="succeeded", with_weights=True, **fields) -> TrainingRun:
    """A run as a worker leaves it: its kept weights on disk (what a new run reads at its start), its classes and kept epoch."""
    run = TrainingRun.objects.create(project=partition.dataset.project, partition=partition, name=name, status=status,
                                     spec=training_spec(model={"architecture": architecture}),
                                     results={"classes": partition.dataset.labels, "kept": {"epoch": 2}, "test": {"accuracy": 0.8}},
                                     **fields)
    if with_weights:
        run.storage_dir.mkdir(parents=True, exist_ok=True)
        run.weights_path.write_bytes(b"weights")
    return run


def from_run(run_id, architecture="small_cnn"):
    return {"model": {"architecture": architecture, "weights": "run", "start_run": run_id}}


# ---- ImageNet ---------------------------------------------------------------------------------------------------------

def test_imagenet_without_its_file_is_refused_with_which_file_to_put_where(api, project, weights_folder):
    response = launch(api, a_partition(project), model={"architecture": "resnet18", "weights": "imagenet"})
    assert_error(response, 400, "model.weights", RESNET18_FILE, str(weights_folder), f"https://download.pytorch.org/models/{RESNET18_FILE}",
                 "or start from random weights")
    assert response.json()["code"] == "weights_unavailable"
    assert not TrainingRun.objects.exists()


def test_imagenet_with_its_file_launches_and_records_the_file_in_the_lineage(api, project, weights_folder):
    (weights_folder / RESNET18_FILE).write_bytes(b"found by name; the worker checks the hash when it reads it")
    response = launch(api, a_partition(project), model={"architecture": "resnet18", "weights": "imagenet"})
    assert response.status_code == 202, response.content
    imagenet = {"weights": "imagenet", "title": "ImageNet (torchvision)", "filename": RESNET18_FILE, "sha256_prefix": "f37072fd",
                "imagenet_top1": 69.758}
    assert response.json()["provenance"]["started_from"] == imagenet
    assert response.json()["provenance"]["lineage"] == [imagenet]


def test_torchvisions_own_cache_counts_as_having_the_file(api, project, weights_folder, tmp_path):
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / RESNET18_FILE).write_bytes(b"x")
    assert launch(api, a_partition(project), model={"architecture": "resnet18", "weights": "imagenet"}).status_code == 202


def test_the_training_options_say_which_weights_this_server_has(api, weights_folder):
    def available():
        architectures = api.get("/api/training/").json()["architectures"]
        return {a["name"]: a["weights_available"] for a in architectures}

    before = available()
    assert before["small_cnn"] == {}, "no pretrained weights exist for it"
    assert before["resnet18"]["imagenet"]["available"] is False
    assert RESNET18_FILE in before["resnet18"]["imagenet"]["message"] and str(weights_folder) in before["resnet18"]["imagenet"]["message"]
    (weights_folder / RESNET18_FILE).write_bytes(b"x")
    after = available()
    assert after["resnet18"]["imagenet"] == {"available": True, "filename": RESNET18_FILE, "message": ""}
    assert after["resnet50"]["imagenet"]["available"] is False
    assert api.get("/api/training/").json()["imported_models"] == "/api/imported-models/", "the form lists imported models from there"


def test_the_spec_refuses_imagenet_for_a_network_that_has_none(api, project, weights_folder):
    assert_error(launch(api, a_partition(project), model={"architecture": "small_cnn", "weights": "imagenet"}), 400, "model.weights",
                 "Small CNN has no imagenet weights")


# ---- MedicalNet (the 3D ResNets) ---------------------------------------------------------------------------------------

MEDICALNET_18 = MODELS["resnet18_3d"].weights_named("medicalnet").filename  # resnet_18_23dataset.pth


def a_partition_of_volumes(project, per_class=5, shape=(16, 24, 24)):
    """A ready classification dataset of CT volumes (Hounsfield units), stored as the ingest stores them, and a partition."""
    labels = ("lesion", "normal")
    dataset = Dataset.objects.create(project=project, name="CT volumes", status=Dataset.Status.READY, sample_count=2 * per_class,
                                     class_counts={label: per_class for label in labels}, channels=1, height=shape[1],
                                     width=shape[2], modalities="CT")
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(dataset.pk)
    samples = []
    for index in range(2 * per_class):
        label = labels[index // per_class]
        np.save(arrays / f"{index:07d}.npy", (rng.normal(40 if label == "lesion" else 0, 10, shape)).astype(np.int16))
        samples.append(Sample(
            dataset=dataset, source_dataset=dataset, label=label, kind=Sample.Kind.VOLUME, modality="CT",
            source_path=f"{label}/{index}.nii.gz", files=[f"{label}/{index}.nii.gz"], array=f"datasets/{dataset.pk}/arrays/{index:07d}.npy",
            cache_index=index, depth=shape[0], height=shape[1], width=shape[2], channels=1, dtype="int16", spacing=[2.0, 0.8, 0.8],
            patient=f"P-{index:04d}", sha256=hashlib.sha256(f"{dataset.pk} volume {index}".encode()).hexdigest()))
    Sample.objects.bulk_create(samples)
    return create_partition(project.owner, dataset, "", 60, 20, 20, 7)


def test_medicalnet_without_its_file_is_refused_saying_where_to_put_it_and_where_it_is_published(api, project, weights_folder):
    response = launch(api, a_partition_of_volumes(project), model={"architecture": "resnet18_3d", "weights": "medicalnet"})
    assert_error(response, 400, "model.weights", f"weights file {MEDICALNET_18} is not on this machine",
                 f"put it at {weights_folder / MEDICALNET_18}", "published at https://github.com/Tencent/MedicalNet")
    assert response.json()["code"] == "weights_unavailable"
    assert not TrainingRun.objects.exists()


def test_medicalnet_with_its_file_launches_and_the_lineage_names_it(api, project, weights_folder, client, user):
    (weights_folder / MEDICALNET_18).write_bytes(b"found by name; the worker checks its tensors when it reads it")
    response = launch(api, a_partition_of_volumes(project), model={"architecture": "resnet18_3d", "weights": "medicalnet"})
    assert response.status_code == 202, response.content
    step = {"weights": "medicalnet", "title": "MedicalNet (Tencent, 23 datasets)", "filename": MEDICALNET_18,
            "url": "https://github.com/Tencent/MedicalNet", "network": "ResNet-18"}
    assert response.json()["provenance"]["lineage"] == [step] and response.json()["provenance"]["started_from"] == step
    client.force_login(user)
    page = client.get(f"/runs/{response.json()['id']}/").content.decode()
    assert f"MedicalNet&#x27;s ResNet-18 weights (Tencent, {MEDICALNET_18})" in page
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert model_start(run) == ModelStart(str(weights_folder)), "the worker finds the file again"
    (weights_folder / MEDICALNET_18).unlink()
    with pytest.raises(WeightsUnavailable, match=f"{MEDICALNET_18} is not on this machine"):
        model_start(run)


@pytest.mark.parametrize("architecture, words", [
    ("resnet18", ["ResNet-18 has no medicalnet weights (only the 3D networks ResNet-18 (3D), ResNet-50 (3D) have)"]),
    ("densenet121_3d", ["DenseNet-121 (3D) has no medicalnet weights", "ResNet-18 (3D), ResNet-50 (3D)"]),
])
def test_the_spec_refuses_medicalnet_for_a_network_without_it(api, project, weights_folder, architecture, words):
    partition = a_partition(project) if architecture == "resnet18" else a_partition_of_volumes(project)
    assert_error(launch(api, partition, model={"architecture": architecture, "weights": "medicalnet"}), 400, "model.weights", *words)


def test_the_training_options_list_medicalnet_for_the_3d_resnets(api, weights_folder):
    architectures = {a["name"]: a for a in api.get("/api/training/").json()["architectures"]}
    assert set(architectures["resnet18_3d"]["weights_available"]) == {"medicalnet"}
    assert architectures["resnet50_3d"]["weights_available"]["medicalnet"]["filename"] == "resnet_50_23dataset.pth"
    absent = architectures["resnet18_3d"]["weights_available"]["medicalnet"]
    assert absent["available"] is False and str(weights_folder / MEDICALNET_18) in absent["message"]
    assert architectures["densenet121_3d"]["weights_available"] == {}
    (weights_folder / MEDICALNET_18).write_bytes(b"x")
    after = {a["name"]: a for a in api.get("/api/training/").json()["architectures"]}["resnet18_3d"]["weights_available"]
    assert after["medicalnet"] == {"available": True, "filename": MEDICALNET_18, "message": ""}
    weights_param = next(p for p in api.get("/api/training/").json()["sections"]["model"]["params"] if p["name"] == "weights")
    assert "medicalnet" in weights_param["choices"]


# ---- the dataset's images and the network's input ---------------------------------------------------------------------

@pytest.mark.parametrize("architecture, size, words", [
    ("inception_v3", 64, ["Inception-v3 takes images of at least 75×75 pixels; this dataset's are 64×64.",
                          "Set the input size to 75 or more (images are resized inside the network)", "Resize step"]),
    ("lenet5", 64, ["LeNet-5 is built for images of 32×32 pixels at most; this dataset's are 64×64.", "Set the input size to 32 ("]),
    ("alexnet", 32, ["AlexNet takes images of at least 63×63 pixels", "63 or more"]),
])
def test_a_network_that_cannot_take_the_datasets_images_is_refused_with_the_size_that_fits(api, project, architecture, size, words):
    partition = a_partition(project, size=size)
    assert_error(launch(api, partition, model={"architecture": architecture}), 400, "model.input_size", *words)
    fitting = {"inception_v3": 75, "lenet5": 32, "alexnet": 63}[architecture]
    resized = launch(api, partition, model={"architecture": architecture, "input_size": fitting})
    assert resized.status_code == 202, resized.content
    assert resized.json()["spec"]["model"]["input_size"] == fitting


def test_a_chosen_input_size_the_network_cannot_take_is_refused_with_its_sizes(api, project):
    assert_error(launch(api, a_partition(project), model={"architecture": "inception_v3", "input_size": 64}), 400, "model.input_size",
                 "at least 75×75", "75×75 or larger")


def test_the_rate_search_and_the_curve_make_the_same_checks(api, project, weights_folder):
    partition = a_partition(project)
    body = {"partition": partition.pk, "model": {"architecture": "resnet18", "weights": "imagenet"}}
    assert_error(api.post("/api/rate-searches/", body, format="json"), 400, "model.weights", RESNET18_FILE)
    assert_error(api.post("/api/runs/schedule/", {**body, **from_run(99999)}, format="json"), 400, "model.start_run", "no run 99999")


# ---- an earlier run ---------------------------------------------------------------------------------------------------

def test_a_run_starts_from_an_earlier_run_and_its_lineage_goes_back_to_random(api, project, user):
    xrays = a_partition(project)
    earlier = finished_run(xrays, name="Lesions")
    three = a_partition(project, labels=("a", "b", "c"), name="Three classes")
    response = launch(api, three, **from_run(earlier.pk))
    assert response.status_code == 202, response.content
    run = response.json()
    assert run["spec"]["model"] == {"architecture": "small_cnn", "weights": "run", "input_size": 0, "train_frozen_batchnorm": False,
                                    "start_run": earlier.pk}
    step = {"weights": "run", "run": earlier.pk, "name": "Lesions", "project": {"id": project.pk, "name": "Chest"},
            "dataset": {"id": xrays.dataset_id, "name": "X-rays"}, "partition": {"id": xrays.pk, "name": xrays.name},
            "architecture": "small_cnn", "classes": ["lesion", "normal"], "channels": 1, "kept_epoch": 2, "test_accuracy": 0.8}
    assert run["provenance"]["lineage"] == [step, {"weights": "random"}]
    assert run["provenance"]["started_from"] == {**step, "started_from": {"weights": "random"}}

    # A third generation: the chain grows from the recorded one, newest first, and nests as deep.
    second = TrainingRun.objects.get(pk=run["id"])
    TrainingRun.objects.filter(pk=second.pk).update(status="succeeded", results={"classes": ["a", "b", "c"], "kept": {"epoch": 1}})
    second.storage_dir.mkdir(parents=True, exist_ok=True)
    second.weights_path.write_bytes(b"weights")
    third = launch(api, xrays, **from_run(second.pk)).json()
    lineage = third["provenance"]["lineage"]
    assert [s.get("run") for s in lineage] == [second.pk, earlier.pk, None] and lineage[-1] == {"weights": "random"}
    assert third["provenance"]["started_from"]["started_from"]["started_from"] == {"weights": "random"}
    assert third["provenance"]["started_from"]["started_from"]["run"] == earlier.pk


def test_a_chain_back_to_imagenet_names_the_file_at_its_end(api, project, weights_folder):
    (weights_folder / RESNET18_FILE).write_bytes(b"x")
    partition = a_partition(project)
    first = launch(api, partition, model={"architecture": "resnet18", "weights": "imagenet"}).json()
    TrainingRun.objects.filter(pk=first["id"]).update(status="succeeded")
    earlier = TrainingRun.objects.get(pk=first["id"])
    earlier.storage_dir.mkdir(parents=True, exist_ok=True)
    earlier.weights_path.write_bytes(b"weights")
    lineage = launch(api, partition, **from_run(earlier.pk, "resnet18")).json()["provenance"]["lineage"]
    assert [s["weights"] for s in lineage] == ["run", "imagenet"] and lineage[1]["filename"] == RESNET18_FILE


def test_a_long_chain_is_kept_to_its_cap(api, project):
    partition = a_partition(project)
    ancestors = [{"weights": "run", "run": 1000 + n, "name": f"generation {n}"} for n in range(LINEAGE_CAP + 5)] + [{"weights": "random"}]
    earlier = finished_run(partition, provenance={"lineage": ancestors})
    lineage = launch(api, partition, **from_run(earlier.pk)).json()["provenance"]["lineage"]
    assert len(lineage) == LINEAGE_CAP and lineage[0]["run"] == earlier.pk and lineage[1]["run"] == 1000
    assert lineage[-1] == {"weights": "truncated", "steps": len(ancestors) + 1 - (LINEAGE_CAP - 1)}


def test_runs_of_other_projects_can_be_started_from_only_when_the_user_may_read_them(api, project, outsider):
    theirs = Project.objects.create(owner=outsider, name="Theirs")
    private = finished_run(a_partition(theirs, name="Their X-rays"), name="Private")
    partition = a_partition(project)
    assert_error(launch(api, partition, **from_run(private.pk)), 400, "model.start_run", f"no run {private.pk} that you can read",
                 "public one")
    TrainingRun.objects.filter(pk=private.pk).update(public=True)
    response = launch(api, partition, **from_run(private.pk))
    assert response.status_code == 202, response.content
    assert response.json()["provenance"]["lineage"][0]["project"] == {"id": theirs.pk, "name": "Theirs"}


@pytest.mark.parametrize("state, words", [
    ({"status": "failed", "with_weights": False}, ["has no kept model to start from (it is failed)", "stopped after its first epoch"]),
    ({"status": "running", "with_weights": False}, ["(it is running)"]),
    ({"status": "succeeded", "with_weights": False}, ["(its model file is missing)"]),
])
def test_a_run_without_a_kept_model_cannot_be_started_from(api, project, state, words):
    partition = a_partition(project)
    earlier = finished_run(partition, **state)
    assert_error(launch(api, partition, **from_run(earlier.pk)), 400, "model.start_run", f"Run {earlier.pk} 'Earlier'", *words)


def test_a_stopped_run_with_a_kept_model_can_be_started_from(api, project):
    partition = a_partition(project)
    assert launch(api, partition, **from_run(finished_run(partition, status="stopped").pk)).status_code == 202


def test_a_run_of_another_architecture_is_refused_with_the_one_to_choose(api, project):
    partition = a_partition(project)
    earlier = finished_run(partition, architecture="resnet18")
    assert_error(launch(api, partition, **from_run(earlier.pk, "small_cnn")), 400, "model.start_run",
                 "trained a ResNet-18, not a Small CNN: choose ResNet-18 as the model to start from it")


def test_the_start_run_is_named_exactly_when_the_weights_are_a_run(api, project):
    partition = a_partition(project)
    assert_error(launch(api, partition, model={"weights": "run"}), 400, "model.start_run", "needs its id")
    assert_error(launch(api, partition, model={"weights": "random", "start_run": 3}), 400, "model.start_run", "only when the weights are 'run'")


def test_a_run_others_will_start_from_is_not_deleted_before_they_have(api, project):
    partition = a_partition(project)
    earlier = finished_run(partition)
    later = launch(api, partition, **from_run(earlier.pk)).json()
    assert_error(api.delete(f"/api/runs/{earlier.pk}/"), 409, None, f"Run {later['id']}", "starts from this run's model")
    api.post(f"/api/runs/{later['id']}/stop/")
    assert api.delete(f"/api/runs/{earlier.pk}/").status_code == 204


# ---- the list of runs to start from -----------------------------------------------------------------------------------

def test_starting_points_are_the_readable_runs_with_a_kept_model_of_the_architecture(api, project, outsider):
    partition = a_partition(project)
    mine = finished_run(partition, name="Mine")
    finished_run(partition, name="Failed", status="failed", with_weights=False)
    finished_run(partition, name="Lost file", with_weights=False)
    resnet = finished_run(partition, name="ResNet", architecture="resnet18")
    theirs = Project.objects.create(owner=outsider, name="Theirs")
    hidden = finished_run(a_partition(theirs), name="Hidden")
    shared = finished_run(a_partition(theirs), name="Shared", public=True)

    listed = api.get("/api/runs/starting-points/?architecture=small_cnn")
    assert listed.status_code == 200, listed.content
    assert [run["id"] for run in listed.json()] == [shared.pk, mine.pk], "newest first"
    entry = listed.json()[1]
    assert entry == {**entry, "name": "Mine", "project": {"id": project.pk, "name": "Chest"}, "architecture": "small_cnn",
                     "dataset": {"id": partition.dataset_id, "name": "X-rays"}, "classes": ["lesion", "normal"], "channels": 1,
                     "test_accuracy": 0.8, "kept_epoch": 2, "status": "succeeded"}
    assert {run["id"] for run in api.get("/api/runs/starting-points/").json()} == {shared.pk, resnet.pk, mine.pk}
    assert hidden.pk not in {run["id"] for run in api.get("/api/runs/starting-points/").json()}
    assert_error(api.get("/api/runs/starting-points/?architecture=gpt"), 400, "architecture", "no architecture 'gpt'")


# ---- the run page -----------------------------------------------------------------------------------------------------

def test_the_run_page_shows_the_lineage_linking_only_runs_the_reader_may_open(client, user, project, outsider):
    theirs = Project.objects.create(owner=outsider, name="Theirs")
    grandparent = finished_run(a_partition(theirs, name="Their scans"), name="Theirs, private")
    mine = finished_run(a_partition(project), name="ResNet-18 on chest X-rays",
                        provenance={"lineage": [{"weights": "run", "run": grandparent.pk, "name": "Theirs, private",
                                                 "dataset": {"id": 1, "name": "Their scans"}, "partition": {"id": 1, "name": "p"}},
                                                {"weights": "imagenet", "filename": RESNET18_FILE}]})
    child = TrainingRun.objects.create(project=project, partition=mine.partition, name="Child", spec=training_spec(),
                                       provenance={"lineage": [{"weights": "run", "run": mine.pk, "name": mine.name,
                                                                "dataset": {"id": 1, "name": "X-rays"}, "partition": {"id": 2, "name": "70/15/15"}},
                                                               *mine.provenance["lineage"]]})
    client.force_login(user)
    page = client.get(f"/runs/{child.pk}/").content.decode()
    assert (f'Started from:\n    <span class="lineage-step"><a href="/runs/{mine.pk}/">run #{mine.pk} &#x27;ResNet-18 on chest X-rays&#x27;</a> '
            "(dataset X-rays, partition 70/15/15)</span>") in page
    assert f"run #{grandparent.pk} &#x27;Theirs, private&#x27; (dataset Their scans, partition p)" in page
    assert f'href="/runs/{grandparent.pk}/"' not in page, "a run the reader may not open is named, not linked"
    assert f"ImageNet (torchvision, {RESNET18_FILE})" in page


def test_a_run_launched_before_lineage_was_recorded_shows_its_specs_source(client, user, project):
    old = TrainingRun.objects.create(project=project, partition=a_partition(project), name="Old", spec=training_spec(), provenance={})
    client.force_login(user)
    assert '<span class="lineage-step">random weights</span>' in client.get(f"/runs/{old.pk}/").content.decode()


# ---- the worker finds what the launch checked -------------------------------------------------------------------------

def test_the_worker_finds_the_earlier_runs_weights_or_says_what_went(project, settings):
    partition = a_partition(project)
    earlier = finished_run(partition)
    run = TrainingRun(spec=from_run(earlier.pk))
    assert model_start(run) == ModelStart(str(settings.PRETRAINED_WEIGHTS_DIR), str(earlier.weights_path),
                                          classes=tuple(earlier.results.get("classes") or partition.dataset.labels))
    assert model_start(TrainingRun(spec={"model": {"weights": "imagenet"}})) == ModelStart(str(settings.PRETRAINED_WEIGHTS_DIR))
    earlier.weights_path.unlink()
    with pytest.raises(WeightsUnavailable, match="kept model of run .* is missing"):
        model_start(run)
    earlier.delete()
    with pytest.raises(WeightsUnavailable, match="was deleted after this run was launched"):
        model_start(run)


def test_the_start_note_says_a_head_is_kept_only_for_the_same_classes():
    assert changes(2, ["0", "1"], 1, ["5", "6"], 1).startswith(
        "its head (classes 0, 1) is replaced by a new one for this run's classes (5, 6), as many but others")
    assert changes(2, ["normal", "lesion"], 1, ["lesion", "normal"], 1).startswith(
        "its head is kept, its outputs put in this run's order of the classes (lesion, normal)")
    assert changes(2, ["lesion", "normal"], 1, ["lesion", "normal"], 3) == (
        "its head is kept (the same classes); its first layer is adapted from 1 to 3 channels; everything else is carried over.")

"""The model zoo's API: the networks with whether their weights are on this server, and a network's layer summary
for typed images or a readable dataset, answered by the engine in a child process (no mock: each new question
imports torch there). Every refusal is a 400 that says why and what the network takes; logging in is required."""
import pytest

from backend.core.zoo import engine_summary
from backend.datasets.models import Dataset
from backend.projects.models import Project
from tests.factories import ready_dataset
from workers.engine.zoo.registry import MODELS

pytestmark = pytest.mark.django_db
SUMMARY = "/api/architectures/{}/summary/"


def assert_error(response, status, field, *words):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["field"] == field, body
    for word in words:
        assert word in body["message"], body["message"]


@pytest.fixture
def weights_folder(settings, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / MODELS["resnet18"].weights[0].filename).write_bytes(b"only its name is looked at")
    settings.PRETRAINED_WEIGHTS_DIR = folder
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def test_the_zoo_needs_a_login(client):
    assert client.get("/api/architectures/").status_code == 401
    assert client.get(SUMMARY.format("resnet18")).status_code == 401
    assert client.get("/zoo/").status_code == 302


def test_architectures_say_whether_their_weights_are_on_this_server(api, weights_folder):
    listed = {entry["name"]: entry for entry in api.get("/api/architectures/").json()}
    assert list(listed) == list(MODELS)
    present, = listed["resnet18"]["weights"]
    assert present["available"] is True and present["where"] == f"Found at {weights_folder / 'resnet18-f37072fd.pth'}."
    assert present["imagenet_top1"] == 69.758 and present["sha256_prefix"] == "f37072fd"
    absent, = listed["resnet50"]["weights"]
    assert absent["available"] is False
    assert "resnet50-0676ba61.pth is not on this machine" in absent["where"] and str(weights_folder) in absent["where"]
    assert listed["small_cnn"]["weights"] == [] and listed["lenet5"]["accepted_sizes"] == "32×32"
    assert listed["densenet121_3d"]["dims"] == 3 and listed["densenet121_3d"]["accepted_sizes"] == "29×29×29 or larger"
    assert listed["resnet18_3d"]["source"] == "monai"
    medicalnet, = listed["resnet18_3d"]["weights"]
    assert medicalnet["name"] == "medicalnet" and medicalnet["filename"] == "resnet_18_23dataset.pth"
    assert medicalnet["imagenet_top1"] is None and medicalnet["sha256_prefix"] is None and medicalnet["available"] is False
    assert f"put it at {weights_folder / 'resnet_18_23dataset.pth'}" in medicalnet["where"]
    assert "https://github.com/Tencent/MedicalNet" in medicalnet["where"]


def test_a_summary_for_typed_images_and_the_phase_settings(api):
    query = "?channels=1&height=64&width=64&classes=3"
    whole = api.get(SUMMARY.format("resnet18") + query)
    assert whole.status_code == 200, whole.content
    body = whole.json()
    assert body["input"] == {"channels": 1, "height": 64, "width": 64, "classes": 3, "dataset": None, "input_size": 0,
                             "network_input": [1, 64, 64], "accepted_sizes": "1×1 or larger"}
    assert next(b for b in body["blocks"] if b["modules"] == ["layer4"])["output_shape"] == [512, 2, 2]
    assert not any(layer["frozen"] for layer in body["layers"])
    assert body["totals"]["trainable_parameters"] == body["totals"]["parameters"] == 11_689_512 - 2 * 64 * 49 - 997 * 513

    asked = engine_summary.cache_info().misses
    two = api.get(SUMMARY.format("resnet18") + query + "&frozen_blocks=2").json()
    assert engine_summary.cache_info().misses == asked, "another phase setting is answered from the kept answer"
    assert two["phase"] == {"train": "all", "frozen_blocks": 2, "frozen_block_count": 2}
    assert [b["frozen"] for b in two["blocks"]] == [True, True, False, False, False, False]
    frozen = {layer["name"] for layer in two["layers"] if layer["frozen"]}
    assert {"conv1", "bn1", "maxpool", "layer1.1.conv2"} <= frozen and "layer2.0.conv1" not in frozen
    assert two["totals"]["frozen_parameters"] == 64 * 49 + 128 + 147_968

    head = api.get(SUMMARY.format("resnet18") + query + "&train=head").json()
    assert [layer["name"] for layer in head["layers"] if layer["trainable"]] == ["fc"]
    assert head["totals"]["trainable_parameters"] == 512 * 3 + 3


def test_a_summary_for_a_dataset_and_for_images_resized_inside_the_network(api, project):
    dataset = ready_dataset(project, per_class=2, size=64, name="X-rays")
    body = api.get(SUMMARY.format("inception_v3") + f"?dataset={dataset.pk}&input_size=299").json()
    assert body["input"]["dataset"] == {"id": dataset.pk, "name": "X-rays"}
    assert body["input"]["network_input"] == [1, 299, 299] and body["output_shape"] == [2]
    assert_error(api.get(SUMMARY.format("inception_v3") + f"?dataset={dataset.pk}"), 400, "dataset",
                 "Inception-v3 takes images of at least 75×75 pixels; these are 64×64", "It takes 75×75 or larger")
    # One side given: square images.
    assert api.get(SUMMARY.format("small_cnn") + "?height=64&channels=1").json()["input"]["network_input"] == [1, 64, 64]


def test_a_summary_of_a_3d_network_for_volumes(api, project):
    """A 3D network's volumes have a depth: given, or the height's (a cube); with a dataset, given beside it."""
    cube = api.get(SUMMARY.format("small_cnn_3d") + "?channels=1&height=32&classes=3").json()
    assert cube["input"]["network_input"] == [1, 32, 32, 32] and cube["input"]["depth"] == 32
    assert cube["input"]["accepted_sizes"] == "8×8×8 or larger" and cube["output_shape"] == [3]
    conv = next(layer for layer in cube["layers"] if layer["name"] == "block1.0")
    assert conv["type"] == "Conv3d" and conv["output_shape"] == [16, 32, 32, 32] and conv["detail"] == "3×3×3, 1 → 16 channels"
    box = api.get(SUMMARY.format("small_cnn_3d") + "?channels=2&height=32&width=48&depth=16&classes=3").json()
    assert box["input"]["network_input"] == [2, 16, 32, 48]
    assert next(b for b in box["blocks"] if b["modules"] == ["block3"])["output_shape"] == [64, 2, 4, 6]
    resized = api.get(SUMMARY.format("small_cnn_3d") + "?height=32&depth=16&input_size=24").json()
    assert resized["input"]["network_input"] == [3, 24, 24, 24]
    dataset = ready_dataset(project, per_class=2, size=64, name="Slices")
    on_dataset = api.get(SUMMARY.format("small_cnn_3d") + f"?dataset={dataset.pk}&depth=8").json()
    assert on_dataset["input"]["network_input"] == [1, 8, 64, 64] and on_dataset["input"]["dataset"]["name"] == "Slices"
    assert_error(api.get(SUMMARY.format("densenet121_3d") + "?height=64&depth=16"), 400, "height",
                 "DenseNet-121 (3D) takes volumes of at least 29×29×29 voxels; these are 16×64×64", "29×29×29 or larger")
    assert_error(api.get(SUMMARY.format("resnet18") + "?height=64&depth=16"), 400, "depth", "ResNet-18 takes 2D images")
    assert_error(api.get(SUMMARY.format("small_cnn_3d") + "?depth=0"), 400, "depth", "1 to 1024 slices")


@pytest.mark.parametrize("name, query, status, field, words", [
    ("inception_v3", "?height=64&width=64", 400, "height", ["at least 75×75 pixels", "75×75 or larger"]),
    ("inception_v3", "?height=299&input_size=64", 400, "input_size", ["at least 75×75"]),
    ("lenet5", "?height=64", 400, "height", ["LeNet-5 is built for images of 32×32 pixels at most", "It takes 32×32"]),
    ("alexnet", "?height=32&width=300", 400, "height", ["AlexNet takes images of at least 63×63"]),
    ("vgg16", "?channels=0", 400, "channels", ["1 to 64 channels"]),
    ("vgg16", "?channels=65", 400, "channels", ["1 to 64 channels"]),
    ("vgg16", "?channels=three", 400, "channels", ["1 to 64 channels", "whole number"]),
    ("vgg16", "?height=5000", 400, "height", ["1 to 1024 pixels a side"]),
    ("vgg16", "?width=99999999999999999999999", 400, "width", ["1 to 1024 pixels a side"]),
    ("vgg16", "?classes=1", 400, "classes", ["2 to 1000 classes"]),
    ("vgg16", "?train=backbone", 400, "train", ["all (the whole network) or head"]),
    ("vgg16", "?frozen_blocks=-1", 400, "frozen_blocks", ["0 or more"]),
    ("vgg16", "?dataset=1&channels=3", 400, "dataset", ["a dataset or channels, height, width and classes, not both"]),
    ("no_such_net", "", 404, None, ["There is no architecture 'no_such_net'", "resnet18"]),
])
def test_what_a_summary_cannot_be_asked_for(api, name, query, status, field, words):
    assert_error(api.get(SUMMARY.format(name) + query), status, field, *words)


def test_a_dataset_must_be_readable_ready_and_have_classes(api, project, outsider):
    foreign = ready_dataset(Project.objects.create(owner=outsider, name="Theirs"), name="Private")
    assert_error(api.get(SUMMARY.format("small_cnn") + f"?dataset={foreign.pk}"), 400, "dataset",
                 f"No dataset with id {foreign.pk} exists in your projects")
    busy = Dataset.objects.create(project=project, name="Busy", status=Dataset.Status.INGESTING)
    assert_error(api.get(SUMMARY.format("small_cnn") + f"?dataset={busy.pk}"), 400, "dataset", "'Busy' is not ready (ingesting)")
    single = ready_dataset(project, labels=("lesion",), per_class=2, name="One class")
    assert_error(api.get(SUMMARY.format("small_cnn") + f"?dataset={single.pk}"), 400, "dataset", "has 1 class;", "two or more")


def test_the_zoo_page_lists_the_users_ready_datasets(client, user, project, outsider):
    ready_dataset(project, name="X-rays")
    ready_dataset(Project.objects.create(owner=outsider, name="Theirs"), name="Private")
    client.force_login(user)
    page = client.get("/zoo/").content.decode()
    assert 'label="Chest"' in page and "X-rays (1 channel, 64×64 px, 2 classes)" in page and "Private" not in page


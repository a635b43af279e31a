"""MedicalNet's published 3D ResNets (Chen, Ma and Zheng 2019) as a start for resnet18_3d and resnet50_3d: a file
made here in MedicalNet's exact format ({"state_dict": {"module.…"}} with a `conv_seg` segmentation head, from a
MONAI ResNet built as MedicalNet builds it, never a download) lands in the model, its head new and its first layer
adapted to the channels; another depth's file, or a file that is no checkpoint, is refused naming the file; a missing
file says where to put it and where it is published; the spec refuses `medicalnet` for networks without it."""
import pytest
import torch
from monai.networks.nets import resnet18, resnet50

from workers.engine.training.spec import WEIGHT_SOURCES, SpecInvalid, resolve_spec
from workers.engine.zoo.networks import build_network, parameter_count
from workers.engine.zoo.registry import MEDICALNET_URL, MODELS, VOLUME_MEAN, VOLUME_STD
from workers.engine.zoo.start import ModelStart, starting_model
from workers.engine.zoo.weights import WeightsUnavailable, find_weights, read_pretrained
from workers.starting_weights import start_note

# As MedicalNet built them (monai's get_medicalnet_pretrained_resnet_args and resnet_params): one channel, no classifier.
MEDICALNET_BUILD = {18: (resnet18, "A", True), 50: (resnet50, "B", False)}
SEGMENTATION_HEAD = {"conv_seg.0.weight": (512, 32, 2, 2, 2), "conv_seg.0.bias": (32,), "conv_seg.1.weight": (32,),
                     "conv_seg.1.bias": (32,), "conv_seg.1.running_mean": (32,), "conv_seg.1.running_var": (32,),
                     "conv_seg.3.weight": (32, 32, 3, 3, 3), "conv_seg.4.weight": (32,), "conv_seg.4.bias": (32,),
                     "conv_seg.6.weight": (2, 32, 1, 1, 1)}


def medicalnet_backbone(depth: int, seed: int = 7) -> dict:
    """The backbone's tensors as MedicalNet's file holds them, drawn from `seed` (BatchNorm statistics too, so that a
    tensor that lands can be told from a fresh one)."""
    build, shortcut, bias = MEDICALNET_BUILD[depth]
    torch.manual_seed(seed)
    network = build(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type=shortcut, bias_downsample=bias,
                    conv1_t_stride=2)
    state = network.state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif value.is_floating_point():
            value.normal_(0, 0.1)
    return state


def write_medicalnet_file(folder, depth: int, seed: int = 7, filename: str | None = None) -> tuple[dict, object]:
    """A file in MedicalNet's format: a DataParallel checkpoint of the segmentation network. Returns the backbone."""
    backbone = medicalnet_backbone(depth, seed)
    head = {key: torch.randn(shape) for key, shape in SEGMENTATION_HEAD.items()}
    if depth == 50:
        head["conv_seg.0.weight"] = torch.randn(2048, 32, 2, 2, 2)
    path = folder / (filename or f"resnet_{depth}_23dataset.pth")
    torch.save({"state_dict": {f"module.{key}": value for key, value in {**backbone, **head}.items()}}, path)
    return backbone, path


@pytest.fixture
def weights_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "weights"
    folder.mkdir()
    return folder


def test_the_3d_resnets_have_medicalnets_files_and_no_imagenet_figures():
    assert "medicalnet" in WEIGHT_SOURCES
    having = [name for name, entry in MODELS.items() if entry.weights_named("medicalnet")]
    assert having == ["resnet18_3d", "resnet50_3d"]
    for name, depth in (("resnet18_3d", 18), ("resnet50_3d", 50)):
        weights = MODELS[name].weights_named("medicalnet")
        assert weights.filename == f"resnet_{depth}_23dataset.pth" and weights.url == MEDICALNET_URL
        assert weights.sha256_prefix is None and weights.accuracy is None and weights.size is None
        assert (weights.mean, weights.std) == (VOLUME_MEAN, VOLUME_STD) and "non-zero voxels" in weights.description
        described = weights.describe()
        assert described["imagenet_top1"] is None and described["sha256_prefix"] is None
    assert MODELS["resnet18"].weights_named("imagenet").describe()["sha256_prefix"] == "f37072fd", "ImageNet's unchanged"


@pytest.mark.parametrize("name, depth", [("resnet18_3d", 18), ("resnet50_3d", 50)])
def test_the_zoos_3d_resnets_are_built_as_medicalnets_files_need(name, depth):
    """Shortcut, downsampling bias and first convolution as MedicalNet's: the file's backbone has exactly the tensors,
    by name and shape, of ours but the classifier head; the registry's parameter count stays true."""
    with torch.device("meta"):
        ours = build_network(name, 1, 2).network.state_dict()
        theirs = {key: value.shape for key, value in medicalnet_backbone(depth).items()}
    assert {key: value.shape for key, value in ours.items() if not key.startswith("fc.")} == theirs
    with torch.device("meta"):
        assert parameter_count(build_network(name, 3, 1000)) == MODELS[name].parameters


def test_medicalnets_weights_land_in_the_model_with_a_new_head_and_the_first_layer_adapted(weights_folder):
    backbone, _ = write_medicalnet_file(weights_folder, 18)
    model = starting_model({"architecture": "resnet18_3d", "weights": "medicalnet"}, 2, 3, ModelStart(str(weights_folder)))
    loaded = model.network.state_dict()
    torch.testing.assert_close(loaded["layer3.1.conv2.weight"], backbone["layer3.1.conv2.weight"])
    torch.testing.assert_close(loaded["layer4.0.bn1.running_var"], backbone["layer4.0.bn1.running_var"])
    carried = [key for key in backbone if key != "conv1.weight" and not key.endswith("num_batches_tracked")]
    assert all(torch.equal(loaded[key], backbone[key]) for key in carried)
    # Two channels: the one-channel filters spread over both and halved (a volume repeated over both answers the same).
    assert model.network.conv1.weight.shape == (64, 2, 7, 7, 7)
    torch.testing.assert_close(model.network.conv1.weight, backbone["conv1.weight"].repeat(1, 2, 1, 1, 1) / 2)
    assert model.network.fc.weight.shape == (3, 512), "a new head for 3 classes"
    assert not any(key.startswith("conv_seg") for key in loaded), "MedicalNet's segmentation head is dropped"
    assert model.mean.flatten().tolist() == [0.0, 0.0] and model.std.flatten().tolist() == [1.0, 1.0]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 2, 16, 16, 16)).shape == (1, 3)
    # One channel, as MedicalNet: its first layer as it was.
    grey = starting_model({"architecture": "resnet18_3d", "weights": "medicalnet"}, 1, 2, ModelStart(str(weights_folder)))
    torch.testing.assert_close(grey.network.conv1.weight, backbone["conv1.weight"])


def test_resnet50s_file_loads_onto_resnet50_3d(weights_folder):
    backbone, _ = write_medicalnet_file(weights_folder, 50)
    model = starting_model({"architecture": "resnet50_3d", "weights": "medicalnet"}, 1, 2, ModelStart(str(weights_folder)))
    torch.testing.assert_close(model.network.layer2[0].downsample[0].weight, backbone["layer2.0.downsample.0.weight"])
    assert model.network.fc.weight.shape == (2, 2048)


def test_another_depths_file_is_refused_naming_the_file(weights_folder):
    _, path = write_medicalnet_file(weights_folder, 50, filename="resnet_18_23dataset.pth")  # ResNet-50's, under 18's name
    with pytest.raises(WeightsUnavailable) as refused:
        starting_model({"architecture": "resnet18_3d", "weights": "medicalnet"}, 1, 2, ModelStart(str(weights_folder)))
    message = str(refused.value)
    assert f"{path} is not MedicalNet's weights for ResNet-18 (3D) (resnet_18_23dataset.pth)" in message
    assert "unexpected: layer1.0.bn3." in message and "of another shape: layer1.0.conv1.weight (64, 64, 1, 1, 1)" in message
    assert MEDICALNET_URL in message


@pytest.mark.parametrize("content, words", [
    ({"layer1.0.conv1.weight": torch.zeros(1)}, "it holds no 'state_dict'"),
    ({"state_dict": {"module.conv1.weight": torch.zeros(64, 1, 7, 7, 7)}}, "missing: bn1.bias"),
])
def test_a_file_that_is_not_medicalnets_checkpoint_is_refused(weights_folder, content, words):
    torch.save(content, weights_folder / "resnet_18_23dataset.pth")
    with pytest.raises(WeightsUnavailable, match=words):
        read_pretrained(MODELS["resnet18_3d"], MODELS["resnet18_3d"].weights_named("medicalnet"), weights_folder)
    (weights_folder / "resnet_18_23dataset.pth").write_bytes(b"half a download")
    with pytest.raises(WeightsUnavailable, match="torch cannot read it as weights"):
        read_pretrained(MODELS["resnet18_3d"], MODELS["resnet18_3d"].weights_named("medicalnet"), weights_folder)


def test_a_missing_file_says_where_to_put_it_and_where_it_is_published(weights_folder):
    with pytest.raises(WeightsUnavailable) as missing:
        find_weights(MODELS["resnet50_3d"].weights_named("medicalnet"), weights_folder)
    assert str(missing.value) == (
        "The MedicalNet (Tencent, 23 datasets) weights file resnet_50_23dataset.pth is not on this machine. It is published "
        f"at https://github.com/Tencent/MedicalNet: download it (on any computer with internet access) and put it at "
        f"{weights_folder / 'resnet_50_23dataset.pth'}; or start from random weights.")
    cache = weights_folder.parent / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet_50_23dataset.pth").write_bytes(b"x")
    with pytest.raises(WeightsUnavailable):
        find_weights(MODELS["resnet50_3d"].weights_named("medicalnet"), weights_folder)  # not torchvision's: its cache is not searched


@pytest.mark.parametrize("architecture, words", [
    ("resnet18", "ResNet-18 has no medicalnet weights (only the 3D networks ResNet-18 (3D), ResNet-50 (3D) have)"),
    ("small_cnn_3d", "Small 3D CNN has no medicalnet weights (only the ResNet-18 (3D), ResNet-50 (3D) have)"),
    ("densenet121_3d", "DenseNet-121 (3D) has no medicalnet weights"),
])
def test_the_spec_refuses_medicalnet_for_a_network_without_its_weights(architecture, words):
    with pytest.raises(SpecInvalid) as refused:
        resolve_spec({"model": {"architecture": architecture, "weights": "medicalnet"}})
    assert list(refused.value.errors) == ["model.weights"] and words in refused.value.errors["model.weights"]
    assert resolve_spec({"model": {"architecture": "resnet18_3d", "weights": "medicalnet"}})["model"]["weights"] == "medicalnet"


def test_the_start_note_names_medicalnets_file_the_new_head_and_the_adapted_layer():
    spec = {"seed": 0, "model": {"architecture": "resnet18_3d", "weights": "medicalnet"}}
    note = start_note(spec, {"weights": "medicalnet", "filename": "resnet_18_23dataset.pth"}, ["lesion", "normal"], 2)
    assert note == ("Starting from MedicalNet's ResNet-18 weights (resnet_18_23dataset.pth, trained to segment 23 datasets): its "
                    "segmentation head is dropped and a new head made for this run's 2 classes (lesion, normal); its first "
                    "layer is adapted from 1 to 2 channels; everything else is carried over.")
    assert "first layer" not in start_note(spec, {"weights": "medicalnet"}, ["a", "b"], 1)

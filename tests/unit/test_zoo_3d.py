"""The zoo's 3D networks (volumes): each builds for any channel count and runs on its smallest cube; its input
handling broadcasts over (N, C, D, H, W) and resizes to a cube; a 3D first layer is fitted to other channel counts
keeping its response; an earlier 3D model starts a run of other channels and classes; freezing keeps BatchNorm3d's
statistics; and the zoo page's layer summary speaks of volumes. The registry-wide checks (parameter counts, blocks,
the smallest size) are tests/unit/test_zoo.py's, for every network.

Fast on two CPU cores: the small 3D CNN runs for real on small cubes; MONAI's networks run on PyTorch's meta
device (shapes only) except once each at its smallest cube."""
import numpy as np
import pytest
import torch
from torch import nn

from backend.core.zoo import summary_for_phase
from workers.engine.call import Refusal
from workers.engine.data import CachedImages
from workers.engine.training.callbacks import default_callbacks
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData
from workers.engine.zoo.inputs import SummaryInput, usual_size
from workers.engine.zoo.networks import ZooModel, build_network, first_conv, fit_first_layer, parameter_count
from workers.engine.zoo.registry import MODELS
from workers.engine.zoo.start import from_earlier_model
from workers.engine.zoo.summary import layer_summary
from workers.engine.zoo.transfer import block_prefixes, freeze, frozen_prefixes, in_block

VOLUMES = [name for name, entry in MODELS.items() if entry.dims == 3 and entry.task == "classification"]
FROM_MONAI = [name for name in VOLUMES if MODELS[name].source == "monai"]


def test_the_3d_networks_are_in_the_registry_as_volumes():
    assert VOLUMES == ["small_cnn_3d", "resnet18_3d", "resnet50_3d", "seresnet50_3d", "densenet121_3d"]
    assert FROM_MONAI == VOLUMES[1:]
    for name in VOLUMES:
        entry = MODELS[name]
        assert entry.task == "classification" and entry.max_size is None
        # MedicalNet's weights for the 3D ResNets (tests/unit/test_medicalnet.py); no ImageNet weights for volumes.
        assert [w.name for w in entry.weights] == (["medicalnet"] if name in ("resnet18_3d", "resnet50_3d") else [])
        assert entry.defaults["batch_size"] <= 8, "a few volumes a batch"
    assert MODELS["densenet121_3d"].accepted_sizes() == "29×29×29 or larger"
    assert MODELS["densenet121_3d"].size_problem(64, 64, 16) == "DenseNet-121 (3D) takes volumes of at least 29×29×29 voxels"
    assert MODELS["small_cnn_3d"].size_problem(8, 8, 8) == ""
    assert usual_size(MODELS["small_cnn_3d"]) == 64


@pytest.mark.parametrize("name", VOLUMES)
def test_every_3d_network_builds_for_1_3_and_5_channels_and_runs_on_its_smallest_cube(name):
    side = MODELS[name].min_size
    for channels in (1, 3, 5):
        with torch.device("meta"):
            model = build_network(name, channels, 2).eval()
            assert model(torch.zeros(2, channels, side, side, side)).shape == (2, 2), (name, channels)
    model = build_network(name, 1, 2).eval()  # once for real: the numbers, not only the shapes
    with torch.no_grad():
        scores = model(torch.randn(1, 1, side, side, side))
    assert scores.shape == (1, 2) and torch.isfinite(scores).all()
    assert isinstance(first_conv(model.network)[1], nn.Conv3d)


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_the_small_3d_cnn_runs_for_real_on_a_small_cube(channels):
    model = build_network("small_cnn_3d", channels, 4).eval()
    with torch.no_grad():
        scores = model(torch.randn(3, channels, 8, 12, 16))  # any box of 8 voxels a side or more
    assert scores.shape == (3, 4) and torch.isfinite(scores).all()


def test_a_3d_zoo_model_normalises_over_every_voxel_and_resizes_to_a_cube():
    seen = []
    network = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
    network.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].clone()))
    model = ZooModel(network, [0.5, 1.0], [2.0, 4.0], input_size=6, dims=3)
    assert model.mean.shape == model.std.shape == (1, 2, 1, 1, 1)
    volumes = torch.rand(4, 2, 9, 7, 5)
    assert model(volumes).shape == (4, 3)
    resized = nn.functional.interpolate(volumes, size=(6, 6, 6), mode="trilinear", align_corners=False)
    expected = (resized - torch.tensor([0.5, 1.0]).view(1, 2, 1, 1, 1)) / torch.tensor([2.0, 4.0]).view(1, 2, 1, 1, 1)
    torch.testing.assert_close(seen[0], expected)
    assert set(model.state_dict()) == {"mean", "std", "network.1.weight", "network.1.bias"}


def test_a_3d_network_takes_volumes_as_the_data_path_normalised_them():
    """Volumes come normalised by modality, so a 3D network's own mean and std are 0 and 1 for every channel."""
    model = build_network("small_cnn_3d", 3, 2)
    assert model.dims == 3
    torch.testing.assert_close(model.mean, torch.zeros(1, 3, 1, 1, 1))
    torch.testing.assert_close(model.std, torch.ones(1, 3, 1, 1, 1))


def test_fitting_a_3d_first_layer_keeps_the_response_to_a_grey_volume():
    """The 2D rule for 3D filters: summed for one channel (a grey volume repeated over 3 channels gets the same
    response), spread over N channels and scaled by 3/N."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv3d(3, 4, 3, stride=2, padding=1, bias=True), nn.ReLU())
    rgb = network[0].weight.detach().clone()
    volume = torch.rand(2, 1, 9, 9, 9)
    expected = network(volume.repeat(1, 3, 1, 1, 1))
    fit_first_layer(network, 1)
    fitted = network[0]
    assert isinstance(fitted, nn.Conv3d) and fitted.in_channels == 1
    assert (fitted.kernel_size, fitted.stride, fitted.padding) == ((3, 3, 3), (2, 2, 2), (1, 1, 1))
    torch.testing.assert_close(network(volume), expected)
    fit_first_layer(network, 6)
    torch.testing.assert_close(network(volume.repeat(1, 6, 1, 1, 1)), expected)
    network = nn.Sequential(nn.Conv3d(3, 4, 3))
    rgb = network[0].weight.detach().clone()
    fit_first_layer(network, 5)
    torch.testing.assert_close(network[0].weight, rgb[:, [0, 1, 2, 0, 1]] * 3 / 5)


def test_an_earlier_3d_model_starts_a_run_of_other_channels_and_classes():
    torch.manual_seed(3)
    earlier = build_network("small_cnn_3d", 2, 3)
    with torch.no_grad():
        earlier.mean.fill_(0.25)
        earlier.std.fill_(2.0)
    state = {key: value.clone() for key, value in earlier.state_dict().items()}
    model = from_earlier_model("small_cnn_3d", state, 1, 5, input_size=16)
    assert model.dims == 3 and model.input_size == 16
    assert model.mean.shape == (1, 1, 1, 1, 1) and model.mean.item() == 0.25 and model.std.item() == 2.0
    assert model.network.block1[0].in_channels == 1 and model.network.head.out_features == 5
    torch.testing.assert_close(model.network.block1[0].weight, state["network.block1.0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.network.block2[0].weight, state["network.block2.0.weight"])
    assert model.eval()(torch.rand(2, 1, 20, 20, 20)).shape == (2, 5)
    # Its own channels and classes: every weight as it was.
    same = from_earlier_model("small_cnn_3d", state, 2, 3)
    assert all(torch.equal(value, state[key]) for key, value in same.state_dict().items())


@pytest.mark.parametrize("name", FROM_MONAI)
@pytest.mark.filterwarnings("ignore:for (mean|std). copying from a non-meta parameter")  # meta: shapes only, as meant
def test_an_earlier_monai_model_is_rebuilt_from_its_5d_filters(name):
    statistics = {"mean": torch.zeros(1, 2, 1, 1, 1), "std": torch.ones(1, 2, 1, 1, 1)}  # read as numbers: not on meta
    with torch.device("meta"):
        state = {**build_network(name, 2, 3).state_dict(), **statistics}
        model = from_earlier_model(name, state, 4, 7)
    assert first_conv(model.network)[1].in_channels == 4
    assert model.network.get_submodule(MODELS[name].head).out_features == 7
    assert model.mean.shape == (1, 4, 1, 1, 1)


def tiny_volumes(folder, size: int = 16, count: int = 24) -> TrainingData:
    """Random one-channel cubes with a class-dependent brightness: 16 to train, 8 to validate."""
    rng = np.random.default_rng(0)
    targets = np.arange(count) % 2
    voxels = rng.integers(0, 160, (count, 1, size, size, size)) + (targets * 60)[:, None, None, None, None]
    np.save(folder / "cubes.npy", voxels.astype(np.uint8))
    subset = lambda rows: CachedImages(folder / "cubes.npy", rows, targets[rows].tolist())  # noqa: E731
    return TrainingData(subset(list(range(16))), subset(list(range(16, count))), 1, ["a", "b"], dims=3)


def test_freezing_the_first_blocks_of_a_3d_network_keeps_their_weights_and_batchnorm3d_statistics(tmp_path):
    spec = resolve_spec({"model": {"architecture": "small_cnn_3d"}, "phases": [{"epochs": 1, "frozen_blocks": 2}],
                         "batch_size": 8})
    trainer = Trainer(spec, tiny_volumes(tmp_path), callbacks=default_callbacks(spec))
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    for key in before:
        if key.startswith(("network.block1.", "network.block2.")):
            assert torch.equal(before[key], after[key]), f"frozen: {key}"
        elif key.startswith(("network.block3.", "network.head.")) and not key.endswith("num_batches_tracked"):
            assert not torch.equal(before[key], after[key]), f"learns: {key}"
    assert trainer.model.network.block1[1].__class__ is nn.BatchNorm3d


@pytest.mark.parametrize("name", VOLUMES)
def test_a_head_only_phase_on_a_3d_network_keeps_every_batchnorm3d_but_the_heads_in_eval_mode(name):
    with torch.device("meta"):
        model = build_network(name, 1, 2).train()
    freeze(model, frozen_prefixes(model, name, "head", 0))
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm3d)]
    assert norms and not any(module.training for module in norms)
    head = block_prefixes(model, name)[-1]
    assert all(parameter.requires_grad == in_block(key, head) for key, parameter in model.named_parameters())


@pytest.fixture(scope="module")
def small_cnn_3d_at_32():
    return layer_summary("small_cnn_3d", 1, 32, 32, 3, depth=32)


def test_the_summary_of_the_small_3d_cnn_at_32_voxels(small_cnn_3d_at_32):
    answer = small_cnn_3d_at_32
    layers = {layer["name"]: layer for layer in answer["layers"]}
    assert layers["block1.0"] == {"name": "block1.0", "type": "Conv3d", "detail": "3×3×3, 1 → 16 channels",
                                  "output_shape": [16, 32, 32, 32], "parameters": 16 * 27,
                                  "multiply_accumulates": 16 * 32 ** 3 * 27, "block": 0}
    assert layers["block1.1"]["type"] == "BatchNorm3d"
    assert layers["block1.3"]["detail"] == "2×2×2, stride 2" and layers["block1.3"]["output_shape"] == [16, 16, 16, 16]
    assert [block["output_shape"] for block in answer["blocks"]] == [[16, 16, 16, 16], [32, 8, 8, 8], [64, 4, 4, 4], [3]]
    assert answer["parameters"] == parameter_count(build_network("small_cnn_3d", 1, 3))
    images = {"channels": 1, "depth": 32, "height": 32, "width": 32, "classes": 3, "dataset": None}
    shown = summary_for_phase(MODELS["small_cnn_3d"], answer, images, 0, "all", 2)
    assert shown["input"]["network_input"] == [1, 32, 32, 32] and shown["phase"]["frozen_block_count"] == 2
    resized = summary_for_phase(MODELS["small_cnn_3d"], answer, images, 24, "head", 0)
    assert resized["input"]["network_input"] == [1, 24, 24, 24]


@pytest.mark.parametrize("name", FROM_MONAI)
def test_the_summary_of_a_monai_network_counts_what_a_run_builds(name):
    side = max(MODELS[name].min_size, 32)
    answer = layer_summary(name, 2, side, side, 4, depth=side)
    with torch.device("meta"):
        built = build_network(name, 2, 4)
    assert answer["parameters"] == parameter_count(built) == sum(layer["parameters"] for layer in answer["layers"])
    assert answer["output_shape"] == [4] and len(answer["blocks"]) == len(MODELS[name].blocks)
    convolutions = [layer for layer in answer["layers"] if layer["type"] == "Conv3d"]
    assert convolutions[0]["detail"].startswith("7×7×7, 2 → 64 channels")
    assert all(len(layer["output_shape"]) == 4 for layer in convolutions)


def test_a_3d_summary_input_names_the_depth():
    assert SummaryInput("small_cnn_3d", 1, 32, 48, 2, 16).sides == (16, 32, 48)
    assert SummaryInput("small_cnn_3d", 1, 32, 32, 2, 0).problem_and_field()[1] == "depth"
    assert SummaryInput("resnet18", 1, 32, 32, 2, 8).problem_and_field()[1] == "depth"
    assert SummaryInput("small_cnn_3d", 1, 4, 32, 2, 32).problem_and_field() == (
        "Small 3D CNN takes volumes of at least 8×8×8 voxels; these are 32×4×32. It takes 8×8×8 or larger: resize the "
        "volumes inside the network (the run's input size) or choose another network.", "size")
    with pytest.raises(Refusal, match="Small 3D CNN takes volumes: give their depth"):
        layer_summary("small_cnn_3d", 1, 32, 32, 2)

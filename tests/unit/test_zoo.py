"""The model zoo (workers/engine/zoo): every network builds for any channel count and runs at its smallest size;
the registry's figures are torchvision's own, so they cannot drift; the blocks share the parameters out exactly;
fitting the first layer to other channel counts keeps the pretrained response; and the layer summary the zoo page
shows (shapes, parameters, multiply-adds, frozen flags) agrees with the networks and with what training freezes.

Big networks are built on PyTorch's meta device wherever only shapes and counts matter (no memory, no time). The 3D
networks (volumes) share the registry-wide checks here; what is theirs alone is in tests/unit/test_zoo_3d.py."""
import re

import pytest
import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from backend.core.zoo import summary_for_phase
from workers.engine.zoo.inputs import SummaryInput
from workers.engine.zoo.networks import build_network, fit_first_layer, parameter_count
from workers.engine.zoo.registry import HASH_IN_FILENAME, IMAGENET_MEAN, IMAGENET_STD, MODELS
from workers.engine.zoo.summary import layer_summary, output_shapes
from workers.engine.zoo.transfer import block_prefixes, freeze, frozen_prefixes, in_block

ALL = list(MODELS)
# Classifiers (one vector of scores per image); the segmentation networks' own checks are tests/unit/test_segmentation.py's.
CLASSIFIERS = [name for name, entry in MODELS.items() if entry.task == "classification"]
IMAGES = [name for name in CLASSIFIERS if MODELS[name].dims == 2]  # the 3D ones run on volumes: test_zoo_3d.py
PRETRAINED = [name for name, entry in MODELS.items() if entry.weights_named("imagenet")]  # MedicalNet's: test_medicalnet.py


def meta_model(name: str, channels: int = 3, classes: int = 1000):
    with torch.device("meta"):
        return build_network(name, channels, classes).eval()


def smallest_side(name: str) -> int:
    entry = MODELS[name]
    return entry.max_size or entry.min_size  # LeNet-5: built for 32 only


def summary_input(name: str, channels: int, side: int, classes: int) -> SummaryInput:
    """A square image, or for a 3D network a cube, of `side`."""
    return SummaryInput(name, channels, side, side, classes, side if MODELS[name].dims == 3 else 0)


def meta_input(name: str, channels: int, side: int) -> torch.Tensor:
    return torch.zeros(1, channels, *(side,) * MODELS[name].dims, device="meta")


@pytest.mark.parametrize("name", IMAGES)
def test_every_network_builds_for_1_3_and_5_channels_and_runs_at_its_smallest_size(name):
    side = smallest_side(name)
    for channels in (1, 3, 5):
        model = build_network(name, channels, 2).eval()
        with torch.no_grad():
            scores = model(torch.rand(1, channels, side, side))
        assert scores.shape == (1, 2) and torch.isfinite(scores).all(), (name, channels)


# A network whose sides must be multiples of a divisor (the segmentation U-Nets, V-Net, SegResNet, UNETR) may run on
# other sizes and give a map of another size: the divisor refuses those (tests/unit/test_segmentation.py).
@pytest.mark.parametrize("name", [name for name in ALL if MODELS[name].min_size > 1 and MODELS[name].divisor == 1])
def test_the_smallest_size_is_the_smallest_the_network_takes(name):
    model, side = meta_model(name, 1, 2), MODELS[name].min_size
    output_shapes(model, meta_input(name, 1, side), summary_input(name, 1, side, 2))
    with pytest.raises(RuntimeError):
        model(meta_input(name, 1, side - 1))


@pytest.mark.parametrize("name", ALL)
def test_parameter_counts_are_the_registrys_for_3_channels_and_1000_classes(name):
    assert parameter_count(meta_model(name)) == MODELS[name].parameters


@pytest.mark.parametrize("name", PRETRAINED)
def test_the_registrys_imagenet_figures_are_torchvisions(name):
    entry, ours = MODELS[name], MODELS[name].weights[0]
    theirs = get_model_weights(name).IMAGENET1K_V1
    preprocessing = theirs.transforms()
    assert ours.url == theirs.url and ours.filename == theirs.url.rsplit("/", 1)[1]
    assert ours.sha256_prefix == HASH_IN_FILENAME.search(theirs.url).group(1)
    assert ours.size == preprocessing.crop_size[0]
    assert ours.accuracy == theirs.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert (entry.min_size, entry.min_size) == theirs.meta["min_size"]
    if name == "inception_v3":
        # Built without the auxiliary classifier (it is dropped once the weights are in); mean and std checked below.
        assert entry.parameters == theirs.meta["num_params"] - auxiliary_parameters()
        assert (tuple(preprocessing.mean), tuple(preprocessing.std)) == (IMAGENET_MEAN, IMAGENET_STD)
    else:
        assert entry.parameters == theirs.meta["num_params"]
        assert (ours.mean, ours.std) == (tuple(preprocessing.mean), tuple(preprocessing.std))


def auxiliary_parameters() -> int:
    with torch.device("meta"):
        network = get_model("inception_v3", weights=None, aux_logits=True, init_weights=False)
    return parameter_count(network.AuxLogits)


def test_inceptions_mean_and_std_of_one_half_are_what_torchvisions_transform_input_does():
    """torchvision feeds Google's weights ImageNet-normalised images and maps them to [-1, 1] inside the network
    (transform_input, for RGB only); the registry's 0.5 / 0.5 gets the same input for any channel count."""
    network = get_model("inception_v3", weights=None, aux_logits=False, init_weights=False, transform_input=True)
    images = torch.rand(2, 3, 8, 8)
    normalised = (images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    weights = MODELS["inception_v3"].weights[0]
    assert weights.mean == weights.std == (0.5, 0.5, 0.5)
    torch.testing.assert_close(network._transform_input(normalised), (images - 0.5) / 0.5)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_the_head_and_the_grad_cam_layer_exist(name):
    entry = MODELS[name]
    model = meta_model(name, 1, 4)
    head = model.network.get_submodule(entry.head)
    assert isinstance(head, nn.Linear) and head.out_features == 4
    assert entry.blocks[-1] == (entry.head,), "the head is the last block: what a head-only phase trains"
    side = max(entry.min_size, 32)
    shapes = output_shapes(model, meta_input(name, 1, side), summary_input(name, 1, side, 4))
    assert len(shapes[f"network.{entry.gradcam_layer}"]) == 1 + entry.dims, \
        "Grad-CAM needs a map: channels × height × width (channels × depth × height × width for a volume)"


@pytest.mark.parametrize("name", ALL)
def test_blocks_hold_every_parameter_once_in_input_to_output_order(name):
    model = meta_model(name)
    blocks = block_prefixes(model, name)
    for prefixes in blocks:
        for prefix in prefixes:
            model.get_submodule(prefix)  # every name is a module of the network
    owners = [[index for index, prefixes in enumerate(blocks) if in_block(parameter, prefixes)]
              for parameter, _ in model.named_parameters()]
    assert all(len(found) == 1 for found in owners), [p for (p, _), found in zip(model.named_parameters(), owners) if len(found) != 1]
    first_seen = [next(number for number, found in enumerate(owners) if found == [index]) for index in range(len(blocks))]
    assert first_seen == sorted(first_seen)


def random_rgb_state(name: str) -> dict:
    """A state dict shaped like torchvision's pretrained one (3 channels, 1000 classes), drawn at random."""
    torch.manual_seed(7)
    return get_model(name, weights=None, num_classes=1000).state_dict()


def assert_same_response(fitted: torch.Tensor, rgb: torch.Tensor) -> None:
    assert rgb.abs().max() > 0.1, "a response this small would hide any difference"
    torch.testing.assert_close(fitted, rgb, rtol=1e-4, atol=1e-5)


# Networks whose random weights still give responses of a useful size (MobileNet's and EfficientNet's fade to 1e-10).
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_pretrained_filters_fitted_to_other_channels_keep_the_response(name):
    """Sum rule: a grey image through the 1-channel model is the RGB model on it repeated 3 times. 3/N rule: for
    N = 6, an image of equal channels, and an RGB image repeated twice, get the RGB model's response.
    (Plain 0.5 normalisation, the same for every channel, so that only the first layer differs.)"""
    state = random_rgb_state(name)
    rgb, grey, six = (build_network(name, channels, 1000, pretrained=state).eval() for channels in (3, 1, 6))
    image, colour = torch.rand(2, 1, 48, 48), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert_same_response(grey(image), rgb(image.repeat(1, 3, 1, 1)))
        assert_same_response(six(image.repeat(1, 6, 1, 1)), rgb(image.repeat(1, 3, 1, 1)))
        assert_same_response(six(colour.repeat(1, 2, 1, 1)), rgb(colour))


def test_fitting_the_first_layer_keeps_its_bias_and_spreads_its_filters_over_n_channels():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.ReLU())
    rgb = network[0].weight.detach().clone()
    image = torch.rand(1, 1, 9, 9)
    expected = network(image.repeat(1, 3, 1, 1))
    fit_first_layer(network, 1)
    torch.testing.assert_close(network(image), expected)
    fit_first_layer(network, 5)  # from the 1-channel layer: its summed filter, spread over 5 channels
    torch.testing.assert_close(network[0].weight, rgb.sum(dim=1, keepdim=True).repeat(1, 5, 1, 1) / 5)
    torch.testing.assert_close(network(image.repeat(1, 5, 1, 1)), expected)
    # From RGB to 5 channels: the filters in turn (R G B R G) scaled by 3/5; exact for equal channels only when N is a
    # multiple of 3, as in timm's adapt_input_conv.
    network = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True))
    rgb = network[0].weight.detach().clone()
    fit_first_layer(network, 5)
    torch.testing.assert_close(network[0].weight, rgb[:, [0, 1, 2, 0, 1]] * 3 / 5)


@pytest.fixture(scope="module")
def resnet18_at_64():
    return layer_summary("resnet18", 1, 64, 64, 3)


def test_the_summary_of_resnet18_at_64_pixels(resnet18_at_64):
    answer = resnet18_at_64
    layers = {layer["name"]: layer for layer in answer["layers"]}
    blocks = {tuple(block["modules"]): block for block in answer["blocks"]}
    assert blocks[("layer4",)]["output_shape"] == [512, 2, 2]
    assert layers["layer4.1.bn2"]["output_shape"] == [512, 2, 2] and layers["avgpool"]["output_shape"] == [512, 1, 1]
    assert layers["conv1"] == {"name": "conv1", "type": "Conv2d", "detail": "7×7, 1 → 64 channels, stride 2",
                               "output_shape": [64, 32, 32], "parameters": 64 * 7 * 7, "multiply_accumulates": 64 * 32 * 32 * 7 * 7,
                               "block": 0}
    assert layers["fc"]["output_shape"] == answer["output_shape"] == [3]
    assert layers["fc"]["parameters"] == 512 * 3 + 3 and layers["fc"]["block"] == 5
    assert layers["maxpool"]["block"] == 0, "a layer without parameters goes with the block before it"
    assert answer["parameters"] == parameter_count(build_network("resnet18", 1, 3))
    assert sum(layer["parameters"] for layer in layers.values()) == sum(block["parameters"] for block in blocks.values()) == answer["parameters"]
    assert [block["title"] for block in answer["blocks"]] == ["Block 1", "Block 2", "Block 3", "Block 4", "Block 5", "Head"]
    assert answer["freezes"] == {"head": [0, 1, 2, 3, 4], "first_blocks": [[], [0], [0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4]]}


@pytest.mark.parametrize("name", PRETRAINED)
def test_multiply_accumulates_are_torchvisions_operation_counts(name):
    size = MODELS[name].weights[0].size
    answer = layer_summary(name, 3, size, size, 1000)
    assert round(answer["multiply_accumulates"] / 1e9, 3) == get_model_weights(name).IMAGENET1K_V1.meta["_ops"]


@pytest.mark.parametrize("train, frozen_blocks", [("all", 0), ("all", 2), ("all", 99), ("head", 0)])
def test_the_frozen_flags_are_what_training_freezes(resnet18_at_64, train, frozen_blocks):
    """The page's frozen / trainable flags against transfer.freeze on the real network: the same parameters."""
    images = {"channels": 1, "height": 64, "width": 64, "classes": 3, "dataset": None}
    shown = summary_for_phase(MODELS["resnet18"], resnet18_at_64, images, 0, train, frozen_blocks)
    model = build_network("resnet18", 1, 3)
    freeze(model, frozen_prefixes(model, "resnet18", train, frozen_blocks))
    learning = {name.rpartition(".")[0].removeprefix("network.") for name, p in model.named_parameters() if p.requires_grad}
    assert {layer["name"] for layer in shown["layers"] if layer["trainable"]} == learning
    assert shown["totals"]["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert shown["totals"]["frozen_parameters"] == sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert shown["phase"]["frozen_block_count"] == {("all", 0): 0, ("all", 2): 2, ("all", 99): 5, ("head", 0): 5}[train, frozen_blocks]


@pytest.mark.parametrize("arguments, message", [
    (("inception_v3", 1, 64, 64, 2), "Inception-v3 takes images of at least 75×75 pixels; these are 64×64. It takes 75×75 or larger"),
    (("lenet5", 1, 64, 64, 2), "LeNet-5 is built for images of 32×32 pixels at most; these are 64×64. It takes 32×32:"),
    (("vgg16", 0, 64, 64, 2), "Images have 1 to 64 channels"),
    (("vgg16", 65, 64, 64, 2), "Images have 1 to 64 channels"),
    (("vgg16", 3, 64, 2048, 2), "Images of up to 1024×1024 pixels"),
    (("vgg16", 3, 64, 64, 1), "A classifier has 2 to 1000 classes"),
    (("no_such_net", 3, 64, 64, 2), "There is no architecture 'no_such_net'"),
    (("densenet121_3d", 1, 64, 64, 2, 16),
     "DenseNet-121 (3D) takes volumes of at least 29×29×29 voxels; these are 16×64×64. It takes 29×29×29 or larger"),
    (("small_cnn_3d", 1, 64, 64, 2), "Small 3D CNN takes volumes: give their depth, 1 to 1024 slices"),
    (("small_cnn_3d", 1, 64, 2048, 2, 64), "Volumes of up to 1024×1024×1024 voxels"),
    (("resnet18", 1, 64, 64, 2, 64), "ResNet-18 takes 2D images, which have no depth"),
])
def test_the_summary_refuses_what_a_network_cannot_take(arguments, message):
    from workers.engine.call import Refusal

    with pytest.raises(Refusal, match=re.escape(message)):
        layer_summary(*arguments)

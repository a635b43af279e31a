"""Building the zoo's networks (torch; in the worker): the torchvision model, its first layer fitted to the
images' channels, its head to the classes, and the input handling (resize, normalisation) in front."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .registry import PLAIN_MEAN, PLAIN_STD, ModelEntry, WeightsEntry, model_entry

NETWORK = "network"  # ZooModel's attribute holding the network: registry module paths are under it


class ZooModel(nn.Module):
    """A network with its input handling in front: images in [0, 1] (any size the network accepts) are resized
    to the run's input size when it has one and normalised with the weights' mean and std. Being part of the
    module, both are part of the exported ONNX graph, so the file takes plain images outside the toolkit."""

    def __init__(self, network: nn.Module, mean, std, input_size: int = 0):
        super().__init__()
        channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))
        self.input_size = input_size
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_size and tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.network((images - self.mean) / self.std)


class SmallCNN(nn.Sequential):
    """Three conv blocks and global pooling: trains in seconds on a CPU, any input size >= 8."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(OrderedDict([
            ("block1", conv_block(in_channels, 16)),
            ("block2", conv_block(16, 32)),
            ("block3", conv_block(32, 64)),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("dropout", nn.Dropout(0.2)),
            ("head", nn.Linear(64, num_classes)),
        ]))


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class LeNet5(nn.Sequential):
    """LeCun et al. 1998 for 32×32 images (ReLU and max pooling in place of the original's squashing and
    subsampling units). Neither torchvision nor MONAI has it, hence our own."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 6, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * 5 * 5, 120)), ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()),
            ("head", nn.Linear(84, num_classes)),
        ]))


OWN_NETWORKS = {"small_cnn": SmallCNN, "lenet5": LeNet5}


def torchvision_network(entry: ModelEntry, pretrained: bool) -> nn.Module:
    """torchvision's network with its 1000-class ImageNet head (weights are loaded onto it before the head is replaced)."""
    from torchvision.models import get_model

    options = {}
    if entry.name == "inception_v3":
        # Google's weights expect inputs in [-1, 1]: the weights entry's mean and std do it (transform_input would,
        # for RGB only). The auxiliary classifier is in the file; it is dropped once the weights are loaded.
        options = {"aux_logits": pretrained, "transform_input": False, "init_weights": not pretrained}
    return get_model(entry.name, weights=None, num_classes=1000, **options)


def build_network(name: str, in_channels: int, num_classes: int, pretrained: dict | None = None,
                  weights: WeightsEntry | None = None, input_size: int = 0) -> ZooModel:
    """The zoo's network `name` for images of `in_channels` channels and `num_classes` classes.

    `pretrained` (a torchvision state dict, with `weights` its entry) is loaded before the first layer is fitted
    to the channels (its RGB filters summed or spread, never thrown away) and the head replaced."""
    entry = model_entry(name)
    if name in OWN_NETWORKS:
        network = OWN_NETWORKS[name](in_channels, num_classes)
    else:
        network = torchvision_network(entry, pretrained is not None)
        if pretrained is not None:
            network.load_state_dict(pretrained)
            if name == "inception_v3":
                network.aux_logits, network.AuxLogits = False, None
        fit_first_layer(network, in_channels)
        replace_head(network, entry.head, num_classes)
    mean, std = (weights.mean, weights.std) if weights else (PLAIN_MEAN, PLAIN_STD)
    return ZooModel(network, per_channel(mean, in_channels), per_channel(std, in_channels), input_size)


def per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    """RGB statistics for `channels` channels: their average for one, repeated in turn for more."""
    if len(values) == channels:
        return list(values)
    if channels == 1:
        return [sum(values) / len(values)]
    return [values[i % len(values)] for i in range(channels)]


def first_conv(network: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((name, module) for name, module in network.named_modules() if isinstance(module, nn.Conv2d))


def fit_first_layer(network: nn.Module, in_channels: int) -> None:
    """The first convolution made to take `in_channels` channels. Its RGB filters are kept: summed for one
    channel (a grey image is R = G = B, so the response is unchanged), repeated in turn and scaled by 3/N for
    N channels (so the response to an image of equal channels keeps its size)."""
    name, conv = first_conv(network)
    if conv.in_channels == in_channels:
        return
    fitted = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                       conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        rgb = conv.weight
        if in_channels == 1:
            fitted.weight.copy_(rgb.sum(dim=1, keepdim=True))
        else:
            fitted.weight.copy_(rgb[:, [i % rgb.shape[1] for i in range(in_channels)]] * rgb.shape[1] / in_channels)
        if conv.bias is not None:
            fitted.bias.copy_(conv.bias)
    set_module(network, name, fitted)


def replace_head(network: nn.Module, head: str, num_classes: int) -> None:
    layer = network.get_submodule(head)
    if layer.out_features != num_classes:
        set_module(network, head, nn.Linear(layer.in_features, num_classes))


def set_module(network: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, name, module)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

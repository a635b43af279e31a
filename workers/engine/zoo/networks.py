"""Building the zoo's networks (torch; in the worker): the torchvision or MONAI model, its first layer fitted to
the images' channels, its head to the classes, and the input handling (resize, normalisation) in front."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .registry import PLAIN_MEAN, PLAIN_STD, VOLUME_MEAN, VOLUME_STD, ModelEntry, WeightsEntry, model_entry
from .segmentation import SEGMENTATION_NETWORKS
from .weights import first_layer_channels

NETWORK = "network"  # ZooModel's attribute holding the network: registry module paths are under it
RESIZING = {2: "bilinear", 3: "trilinear"}
CONVOLUTIONS = (nn.Conv2d, nn.Conv3d)  # what a first layer may be: fitted to the channels in the same class


class ZooModel(nn.Module):
    """A network with its input handling in front: images in [0, 1] (any size the network accepts) are resized
    to the run's input size when it has one and normalised with the weights' mean and std. Being part of the
    module, both are part of the exported ONNX graph, so the file takes plain images outside the toolkit.
    `dims` 3: volumes (N, C, D, H, W), resized to a cube."""

    def __init__(self, network: nn.Module, mean, std, input_size: int = 0, dims: int = 2):
        super().__init__()
        shape = (1, len(mean)) + (1,) * dims  # broadcasts over the batch and every spatial axis
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))
        self.input_size = input_size
        self.dims = dims
        self.network = network

    @property
    def takes_normalised_input(self) -> bool:
        return bool((self.mean == 0).all() and (self.std == 1).all())

    def take_plain_images(self) -> None:
        """Images in [0, 1] centred as the zoo's networks without pretrained weights centre them (PLAIN_MEAN, PLAIN_STD):
        for a model that learnt on plan-normalised images and now starts a run on 8-bit ones."""
        self.mean.fill_(PLAIN_MEAN[0])
        self.std.fill_(PLAIN_STD[0])

    def take_normalised_input(self) -> None:
        """The data path normalises the samples already (a plan's: HU windows, z-scores): the model takes them as they
        are, whatever statistics its starting weights came with."""
        self.mean.zero_()
        self.std.fill_(1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        side = (self.input_size,) * self.dims
        if self.input_size and tuple(images.shape[-self.dims:]) != side:
            images = F.interpolate(images, size=side, mode=RESIZING[self.dims], align_corners=False)
        return self.network((images - self.mean) / self.std)


# The layers of a small network, by spatial dimensions: convolution, BatchNorm, max pooling, global pooling.
LAYERS_BY_DIMS = {2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
                  3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)}


class SmallCNN(nn.Sequential):
    """Three conv blocks and global pooling: trains in seconds on a CPU, any input size >= 8."""

    dims = 2

    def __init__(self, in_channels: int, num_classes: int):
        pool = LAYERS_BY_DIMS[self.dims][3]
        super().__init__(OrderedDict([
            ("block1", conv_block(in_channels, 16, self.dims)),
            ("block2", conv_block(16, 32, self.dims)),
            ("block3", conv_block(32, 64, self.dims)),
            ("pool", pool(1)),
            ("flatten", nn.Flatten()),
            ("dropout", nn.Dropout(0.2)),
            ("head", nn.Linear(64, num_classes)),
        ]))


class SmallCNN3d(SmallCNN):
    """SmallCNN for volumes (3×3×3 filters), any box of 8 voxels a side or more: a training step on eight 32³ volumes
    takes about 0.4 s on two CPU cores (an epoch of 100 volumes, 5 s), so a first try on volumes or a test needs no GPU."""

    dims = 3


def conv_block(cin: int, cout: int, dims: int = 2) -> nn.Sequential:
    conv, norm, pool, _ = LAYERS_BY_DIMS[dims]
    return nn.Sequential(conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True), pool(2))


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


OWN_NETWORKS = {"small_cnn": SmallCNN, "lenet5": LeNet5, "small_cnn_3d": SmallCNN3d}


def monai_densenet121(in_channels: int, num_classes: int) -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=num_classes)


# Shortcut, downsampling bias and a first convolution of stride 2 as in MedicalNet's published weights (monai's
# get_medicalnet_pretrained_resnet_args: shortcut A for 18 and 34, whose downsampling has no weights, so its bias
# setting is moot; B without bias for 50), so that MedicalNet's files load onto these networks (weights "medicalnet").
# MedicalNet's own layer3 and layer4 keep their resolution (stride 1, dilation 2 and 4) where MONAI's halve it (stride
# 2): the tensors are the same, the receptive field is not, which fine-tuning adapts to. Stride 2 also makes the first layer's output an eighth of stride 1's: ResNet-18 at 64^3 takes 4.9 instead of
# 31 G multiply-adds, the difference between minutes and an hour an epoch on a CPU.
def monai_resnet18(in_channels: int, num_classes: int) -> nn.Module:
    from monai.networks.nets import resnet18

    return resnet18(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes, shortcut_type="A",
                    bias_downsample=False, conv1_t_stride=2)


def monai_resnet50(in_channels: int, num_classes: int) -> nn.Module:
    from monai.networks.nets import resnet50

    return resnet50(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes, shortcut_type="B",
                    bias_downsample=False, conv1_t_stride=2)


def monai_seresnet50(in_channels: int, num_classes: int) -> nn.Module:
    from monai.networks.nets import SEResNet50

    return SEResNet50(spatial_dims=3, in_channels=in_channels, num_classes=num_classes)


# MONAI's networks are built for the channels and classes directly; one that starts from MedicalNet's weights is built
# for the file's channels, loaded, and its first layer fitted.
MONAI_NETWORKS = {"densenet121_3d": monai_densenet121, "resnet18_3d": monai_resnet18, "resnet50_3d": monai_resnet50,
                  "seresnet50_3d": monai_seresnet50}


def bare_network(entry: ModelEntry, in_channels: int, num_classes: int) -> nn.Module:
    """A MONAI network as built for these channels and classes, without weights loaded or input handling."""
    return MONAI_NETWORKS[entry.name](in_channels, num_classes)


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
                  weights: WeightsEntry | None = None, input_size: int = 0, plan: dict | None = None) -> ZooModel:
    """The zoo's network `name` for images of `in_channels` channels and `num_classes` classes (a segmentation
    network's: labels, the background's included).

    `pretrained` (a torchvision state dict, or a MedicalNet backbone's, with `weights` its entry) is loaded before the
    first layer is fitted to the channels (its RGB filters summed or spread, never thrown away) and the head replaced.
    `plan`: the run's plan, which shapes the networks built from it (DynUNet's depth and kernels, UNETR's input size)."""
    entry = model_entry(name)
    if name in SEGMENTATION_NETWORKS:
        # A network that supervises deeply (the entry says so) is built with its coarser decoder outputs.
        supervision = {"deep_supervision": True} if entry.deep_supervision else {}
        network = SEGMENTATION_NETWORKS[name](in_channels, num_classes, plan, **supervision)
    elif name in OWN_NETWORKS:
        network = OWN_NETWORKS[name](in_channels, num_classes)
    elif name in MONAI_NETWORKS and pretrained is None:
        network = MONAI_NETWORKS[name](in_channels, num_classes)
    elif name in MONAI_NETWORKS:
        # MedicalNet's backbone (weights.medicalnet_state checked that it fits and dropped every head): the classifier
        # head, built for the classes, is the only part not loaded.
        network = MONAI_NETWORKS[name](first_layer_channels(pretrained), num_classes)
        network.load_state_dict(pretrained, strict=False)
        fit_first_layer(network, in_channels)
    else:
        network = torchvision_network(entry, pretrained is not None)
        if pretrained is not None:
            network.load_state_dict(pretrained)
            if name == "inception_v3":
                network.aux_logits, network.AuxLogits = False, None
        fit_first_layer(network, in_channels)
        replace_head(network, entry.head, num_classes)
    mean, std = (weights.mean, weights.std) if weights else input_statistics(entry)
    return ZooModel(network, per_channel(mean, in_channels), per_channel(std, in_channels), input_size, entry.dims)


def input_statistics(entry: ModelEntry) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a network without pretrained weights normalises by: images in [0, 1] are centred; volumes
    come normalised by the data path (by modality), so they pass as they are."""
    return (VOLUME_MEAN, VOLUME_STD) if entry.dims == 3 else (PLAIN_MEAN, PLAIN_STD)


def per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    """RGB statistics for `channels` channels: their average for one, repeated in turn for more."""
    if len(values) == channels:
        return list(values)
    if channels == 1:
        return [sum(values) / len(values)]
    return [values[i % len(values)] for i in range(channels)]


def first_conv(network: nn.Module) -> tuple[str, nn.Conv2d | nn.Conv3d]:
    return next((name, module) for name, module in network.named_modules() if isinstance(module, CONVOLUTIONS))


def fit_first_layer(network: nn.Module, in_channels: int) -> None:
    """The first convolution made to take `in_channels` channels. Its RGB filters are kept: summed for one
    channel (a grey image is R = G = B, so the response is unchanged), repeated in turn and scaled by 3/N for
    N channels (so the response to an image of equal channels keeps its size). A 3D convolution likewise."""
    name, conv = first_conv(network)
    if conv.in_channels == in_channels:
        return
    fitted = type(conv)(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
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

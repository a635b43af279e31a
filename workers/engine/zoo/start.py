"""The model a run starts from: random, pretrained (ImageNet), or an earlier model's weights (an earlier run,
an imported ONNX or safetensors file), fitted to this run's channels and classes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..tasks import TASKS
from .networks import NETWORK, ZooModel, build_network, first_conv, fit_first_layer, per_channel, replace_head, set_module
from .registry import model_entry
from .weights import read_pretrained


@dataclass(frozen=True)
class ModelStart:
    """Where the worker found what the spec's `model.weights` names (plain values: sent to every training process)."""
    weights_folder: str | None = None   # the toolkit's folder of pretrained files (settings.PRETRAINED_WEIGHTS_DIR)
    state_path: str | None = None       # an earlier model's weights (.pt written by the toolkit, or .safetensors)
    classes: tuple[str, ...] | None = None  # the earlier model's class names in its output order (None: not known)
    # An imported model converted from ONNX (architecture "imported"): its network is rebuilt from the file with
    # onnx2torch at each use, never pickled; mean and std are the normalisation given at import (None: none).
    onnx_path: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def starting_model(model_settings: dict, in_channels: int, num_classes: int, start: ModelStart, seed: int = 0,
                   classes: Sequence[str] | None = None, plan: dict | None = None) -> ZooModel:
    """The spec's model section made real; new layers (first layer, head) drawn from `seed`. `classes`: this run's
    class names, which an earlier model's head is matched against; `plan`: the run's plan (a network built from it)."""
    torch.manual_seed(seed)
    name, weights = model_settings["architecture"], model_settings.get("weights", "random")
    input_size = model_settings.get("input_size", 0)
    if weights == "imported" and start.onnx_path:
        return from_onnx(start, in_channels, num_classes, input_size)
    if weights in ("run", "imported"):
        if not start.state_path:
            raise ValueError(f"the run starts from an earlier model ({weights}) but the worker found no weights for it")
        if TASKS[model_entry(name).task].spatial_output:
            return from_earlier_map_model(name, read_state(start.state_path), in_channels, num_classes, plan,
                                          its_classes=start.classes, classes=classes)
        return from_earlier_model(name, read_state(start.state_path), in_channels, num_classes, input_size,
                                  its_classes=start.classes, classes=classes)
    if weights == "random":
        return build_network(name, in_channels, num_classes, input_size=input_size, plan=plan)
    entry = model_entry(name)
    pretrained = entry.weights_named(weights)
    if pretrained is None:
        raise ValueError(f"{entry.title} has no '{weights}' weights; it has {', '.join(entry.weight_choices)}")
    return build_network(name, in_channels, num_classes, read_pretrained(entry, pretrained, start.weights_folder), pretrained,
                         input_size)


def read_state(path: str | Path) -> dict:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def as_zoo_state(state: dict) -> dict:
    """Weights saved before models carried their input handling (keys without the `network.` prefix) read as today's."""
    if any(key.startswith(f"{NETWORK}.") for key in state):
        return state
    return {f"{NETWORK}.{key}": value for key, value in state.items()}


def from_earlier_model(name: str, state: dict, in_channels: int, num_classes: int, input_size: int = 0, *,
                       its_classes: Sequence[str] | None = None, classes: Sequence[str] | None = None) -> ZooModel:
    """An earlier model of architecture `name` (its own channels and classes) fitted to this run's: the first
    layer's filters adapted, the head fitted to the classes (`fit_head`); everything else carried over."""
    state = as_zoo_state(state)
    entry = model_entry(name)
    head_weight = state[f"{NETWORK}.{entry.head}.weight"]
    # The first convolution's filters: (out, in, H, W) in a 2D network, (out, in, D, H, W) in a 3D one.
    filter_rank = entry.dims + 2
    conv_weights = [value for key, value in state.items() if key.endswith(".weight") and value.dim() == filter_rank]
    its_channels, its_class_count = conv_weights[0].shape[1], head_weight.shape[0]
    mean, std = input_statistics(state, its_channels)
    model = build_network(name, its_channels, its_class_count)
    model.load_state_dict(with_statistics(state, mean, std, entry.dims))
    fit_first_layer(model.network, in_channels)
    fit_head(model.network, entry.head, num_classes, its_classes, classes)
    fitted = ZooModel(model.network, per_channel(tuple(mean), in_channels), per_channel(tuple(std), in_channels), input_size,
                      entry.dims)
    return fitted


def input_statistics(state: dict, channels: int) -> tuple[list[float], list[float]]:
    """The mean and std an earlier model's input was normalised by; weights saved before models carried them took
    images as they are (0 and 1)."""
    mean = state.get("mean", torch.zeros(channels)).flatten().tolist()
    std = state.get("std", torch.ones(channels)).flatten().tolist()
    return mean, std


def with_statistics(state: dict, mean: list[float], std: list[float], dims: int) -> dict:
    """The state, given the mean and std shaped as a ZooModel of `dims` spatial dimensions holds them where it has none."""
    shape = (1, -1) + (1,) * dims
    return {"mean": torch.tensor(mean).view(shape), "std": torch.tensor(std).view(shape), **state}


def from_earlier_map_model(name: str, state: dict, in_channels: int, num_classes: int, plan: dict | None = None, *,
                           its_classes: Sequence[str] | None = None, classes: Sequence[str] | None = None) -> ZooModel:
    """An earlier segmentation model (a map per label; of architecture `name`, built from the same `plan` where the
    network is shaped by one) fitted to this run's channels and labels: the first layer's filters adapted; with the
    same labels in the same order everything carried over, else every tensor shaped by the label count (the output
    convolution, and a deeply supervised network's side outputs: no single "head" to name) drawn anew and the rest
    carried over. A map model's output layers are convolutions spread over the decoder, so they are found by building
    the network for two label counts and comparing shapes."""
    state = as_zoo_state(state)
    entry = model_entry(name)
    filter_rank = entry.dims + 2
    its_channels = next(value for key, value in state.items() if key.endswith(".weight") and value.dim() == filter_rank).shape[1]
    by_labels = label_shaped_keys(name, plan)
    its_count = len(its_classes) if its_classes else label_count_of(state, by_labels)
    earlier = build_network(name, its_channels, its_count, plan=plan)
    mean, std = input_statistics(state, its_channels)
    earlier.load_state_dict(with_statistics(state, mean, std, entry.dims))
    fit_first_layer(earlier.network, in_channels)
    same_labels = its_classes is not None and classes is not None and list(its_classes) == list(classes)
    fitted = build_network(name, in_channels, num_classes, plan=plan)
    shapes = {key: value.shape for key, value in fitted.network.state_dict().items()}
    # Also drawn anew: a tensor the first layer's adaptation does not reach (a residual unit's shortcut from the input).
    carried = {key: value for key, value in earlier.network.state_dict().items()
               if (same_labels or key not in by_labels) and value.shape == shapes[key]}
    fitted.network.load_state_dict(carried, strict=False)
    return ZooModel(fitted.network, per_channel(tuple(mean), in_channels), per_channel(tuple(std), in_channels), 0, entry.dims)


def label_shaped_keys(name: str, plan: dict | None) -> dict[str, int]:
    """{state key: the axis that follows the label count} of a segmentation network's tensors shaped by it."""
    two, three = (build_network(name, 1, count, plan=plan).network.state_dict() for count in (2, 3))
    return {key: next(axis for axis, (a, b) in enumerate(zip(value.shape, three[key].shape)) if a != b)
            for key, value in two.items() if value.shape != three[key].shape}


def label_count_of(state: dict, by_labels: dict[str, int]) -> int:
    """How many labels an earlier model outputs, read off a tensor shaped by the label count."""
    key, axis = sorted(by_labels.items())[0]
    return int(state[f"{NETWORK}.{key}"].shape[axis])  # the earlier model's state, with ZooModel's prefix


def fit_head(network: nn.Module, head: str, num_classes: int, its_classes: Sequence[str] | None = None,
             classes: Sequence[str] | None = None) -> None:
    """The earlier model's head made this run's. The same classes in another order: its rows reordered. Other
    classes, even as many (digits 0-4 for digits 5-9): a new layer, since a head that has learnt to call some
    pattern "0" only misleads a run where that output means "5" (a small CNN from digits 0-4 fine-tuned on 50
    images of 5-9 with the fine-tune preset: 62% test accuracy with the old head kept, 83% with a new one;
    bench/transfer_evidence.py).
    Class names not known: replaced when the counts differ."""
    layer = network.get_submodule(head)
    if its_classes is None or classes is None or list(its_classes) == list(classes):
        replace_head(network, head, num_classes)
    elif sorted(its_classes) == sorted(classes) and len(set(classes)) == len(classes):
        order = [list(its_classes).index(name) for name in classes]
        with torch.no_grad():
            layer.weight.copy_(layer.weight[order])
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[order])
    else:
        set_module(network, head, nn.Linear(layer.in_features, num_classes))


def from_onnx(start: ModelStart, in_channels: int, num_classes: int, input_size: int = 0) -> ZooModel:
    """An imported ONNX model converted by onnx2torch (its own layers, whatever they are), fitted to this run's
    channels (its first convolution) and classes (its last dense layer, the head)."""
    from .conversion import last_linear, onnx_network

    network = onnx_network(start.onnx_path)
    conv = first_conv(network)[1]
    channels, dims = conv.in_channels, len(conv.kernel_size)
    mean = start.mean or (0.0,) * channels
    std = start.std or (1.0,) * channels
    fit_first_layer(network, in_channels)
    head = last_linear(network)
    if head is None:
        raise ValueError("the imported model has no dense layer to serve as its head")
    replace_head(network, head, num_classes)
    return ZooModel(network, per_channel(tuple(mean), in_channels), per_channel(tuple(std), in_channels), input_size, dims)

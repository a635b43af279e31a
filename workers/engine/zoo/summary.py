"""A zoo network's layers as a table: the engine's answer to the web tier's `layer_summary` question (the zoo
page, GET /api/architectures/<name>/summary/), for images or, for a 3D network, volumes. For each layer: its
type, output shape, parameters, multiply-accumulates and the block it belongs to; for each block its parameters
and output; and, for each phase setting (train the head only, or freeze the first n blocks), the blocks
transfer.frozen_prefixes freezes, so the web tier can mark frozen layers for any setting from one answer.

The network is built and run on PyTorch's meta device: its tensors have shapes but no memory and no
arithmetic, so VGG-16 at 1024×1024 answers as fast as LeNet and no 500 MB of weights are drawn at random.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..call import Refusal, question
from .inputs import SummaryInput
from .networks import NETWORK, ZooModel, build_network
from .registry import MODELS
from .transfer import block_prefixes, frozen_prefixes, in_block

Shape = list[int] | None  # an output's shape without the batch dimension; None for a layer the forward pass never ran


@question
def layer_summary(architecture: str, channels: int, height: int, width: int, classes: int, depth: int = 0) -> dict:
    """The network `architecture` for `channels` × `height` × `width` images (`channels` × `depth` × `height` × `width`
    volumes, for a 3D network) and `classes` classes, layer by layer."""
    if architecture not in MODELS:
        raise Refusal(f"There is no architecture '{architecture}'; choose one of {', '.join(MODELS)}.")
    request = SummaryInput(architecture, channels, height, width, classes, depth)
    if problem := request.problem():
        raise Refusal(problem)
    model = meta_model(request)
    outputs = output_shapes(model, torch.zeros(1, channels, *request.sides, device="meta"), request)
    blocks = block_prefixes(model, architecture)
    layers = layer_rows(model, outputs, blocks)
    return {
        "architecture": architecture,
        "blocks": block_rows(blocks, layers, outputs),
        "layers": layers,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "multiply_accumulates": sum(layer["multiply_accumulates"] for layer in layers),
        "output_shape": outputs[""],
        "freezes": phase_freezes(model, architecture, blocks),
    }


def meta_model(request: SummaryInput) -> ZooModel:
    """The network as a run would build it from random weights (the first layer fitted, the head replaced), on the
    meta device; in eval mode, as a batch of one image would upset BatchNorm's training statistics."""
    entry = request.entry
    # A network built from a plan (DynUNet, UNETR) is built for the size asked, at 1 mm: as a run on such samples would.
    plan = {"patch_size": list(request.sides), "target_spacing": [1.0] * entry.dims} if entry.planned else None
    with torch.device("meta"):
        return build_network(request.architecture, request.channels, request.classes, plan=plan).eval()


def output_shapes(model: nn.Module, images: torch.Tensor, request: SummaryInput) -> dict[str, Shape]:
    """Every module's output shape (its first call's: a module called twice, like ResNet's ReLU, keeps its shape)."""
    shapes: dict[str, Shape] = {}

    def recorder(name: str):
        def record(module, inputs, output):
            if name not in shapes:
                shapes[name] = list(output.shape[1:]) if isinstance(output, torch.Tensor) else None
        return record

    hooks = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules()]
    try:
        with torch.no_grad():
            model(images)
    except RuntimeError as error:
        # The registry's sizes are checked against torchvision's by tests/unit/test_zoo.py, so this is unexpected;
        # still the user's input, answered with torch's reason rather than a server error.
        things = "volumes" if request.depth else "images"
        raise Refusal(f"{request.entry.title} cannot take {request.channels}×{request.shown_size} {things}: "
                      f"{str(error).splitlines()[0]}") from error
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def is_layer(module: nn.Module) -> bool:
    """A row of the table: a module with no modules inside, or one holding parameters of its own."""
    return not any(True for _ in module.children()) or any(True for _ in module.parameters(recurse=False))


def shown_name(name: str) -> str:
    """Module names as the registry writes them (without ZooModel's `network.`)."""
    return name.removeprefix(f"{NETWORK}.")


def layer_rows(model: nn.Module, outputs: dict[str, Shape], blocks: list[tuple[str, ...]]) -> list[dict]:
    """The layers in the network's order. A layer with parameters belongs to the block that names it (one no block
    names joins the head's, as transfer.parameter_groups does); a layer without parameters between blocks (a
    ReLU, a pooling) is shown with the block before it."""
    rows, block = [], 0
    for name, module in model.named_modules():
        if name in ("", NETWORK) or not is_layer(module):
            continue
        parameters = sum(parameter.numel() for parameter in module.parameters(recurse=False))
        named = next((index for index, prefixes in enumerate(blocks) if in_block(name, prefixes)), None)
        block = named if named is not None else (len(blocks) - 1 if parameters else block)
        rows.append({"name": shown_name(name), "type": type(module).__name__, "detail": detail(module),
                     "output_shape": outputs.get(name), "parameters": parameters,
                     "multiply_accumulates": multiply_accumulates(module, outputs.get(name)), "block": block})
    return rows


def block_rows(blocks: list[tuple[str, ...]], layers: list[dict], outputs: dict[str, Shape]) -> list[dict]:
    """Each block: its modules, its parameters and the output of its last module; the last block is the head."""
    return [{"index": index, "title": "Head" if index == len(blocks) - 1 else f"Block {index + 1}",
             "modules": [shown_name(prefix) for prefix in prefixes],
             "parameters": sum(layer["parameters"] for layer in layers if layer["block"] == index),
             "output_shape": outputs.get(prefixes[-1])}
            for index, prefixes in enumerate(blocks)]


def multiply_accumulates(module: nn.Module, output: Shape) -> int:
    """Multiply-accumulates of convolutions and dense layers for one image (the rest is small beside them)."""
    if output is None:
        return 0
    if isinstance(module, nn.modules.conv._ConvNd):
        return math.prod(output) * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return math.prod(output) * module.in_features
    return 0


def detail(module: nn.Module) -> str:
    """The settings that tell two layers of one type apart: a convolution's kernel and stride, a dense layer's sizes."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        kernel = "×".join(map(str, module.kernel_size))
        stride = f", stride {module.stride[0]}" if module.stride[0] > 1 else ""
        per_channel = ", one filter per channel" if module.groups > 1 and module.groups == module.in_channels else ""
        return f"{kernel}, {module.in_channels} → {module.out_channels} channels{stride}{per_channel}"
    if isinstance(module, nn.Linear):
        return f"{module.in_features} → {module.out_features}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool3d, nn.AvgPool3d)):
        kernel, stride = (value if isinstance(value, int) else value[0] for value in (module.kernel_size, module.stride))
        dims = 3 if isinstance(module, (nn.MaxPool3d, nn.AvgPool3d)) else 2
        return f"{'×'.join([str(kernel)] * dims)}, stride {stride}"
    if isinstance(module, nn.Dropout):
        return f"drops {module.p:.0%}"
    return ""


def phase_freezes(model: nn.Module, architecture: str, blocks: list[tuple[str, ...]]) -> dict:
    """The blocks (by index) a phase freezes: "head" for a head-only phase; "first_blocks"[n] for one that freezes
    the first n blocks (n past the list's end: its last entry, as the head always trains)."""
    index = {prefixes: number for number, prefixes in enumerate(blocks)}

    def frozen(train: str, count: int) -> list[int]:
        return [index[prefixes] for prefixes in frozen_prefixes(model, architecture, train, count)]

    return {"head": frozen("head", 0), "first_blocks": [frozen("all", count) for count in range(len(blocks))]}

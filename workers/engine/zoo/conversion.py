"""An imported ONNX file made into something the toolkit can train (the worker's part of an import).

First the graph is normalised (normalise.py: weights listed among the inputs, Constant nodes and constant
subgraphs, a fixed batch, a [N, C, 1, 1] output; each step checked against onnxruntime on the original graph), then,
in order, the first that works:

1. **A zoo network** (`weights_copied`): each of the zoo's networks whose convolution and dense layer shapes are
   the file's is built for the file's channels and classes, and the file's weights are copied onto it, matched
   by name (our own exports keep PyTorch's names, `network.layer1.0.conv1.weight`) or else by order and shape
   (convolutions, BatchNorm, dense layers, in the graph's order). Exporters fold BatchNorm into the convolution
   before it (both torch.onnx exporters do in eval mode): such a convolution's bias becomes its BatchNorm's
   shift, the BatchNorm an identity in eval mode, so the network computes what the file computes. A
   normalisation at the graph's start (`(x - mean) / std`, or any chain of per-channel Sub/Add/Mul/Div
   constants) becomes the ZooModel's mean and std.
2. **onnx2torch** (`converted`): the graph as a torch.fx module, after bringing its opset into 13..17
   (onnx.version_converter). It is rebuilt from the stored file at each use (normalised the same way), never
   pickled. A 1×1 convolution or a MatMul by a constant as its last weighted layer, where it has no dense layer,
   becomes one (the head a run replaces).
3. Otherwise **prediction only**, through onnxruntime, with the reason (the operation onnx2torch lacks and the node,
   the converter that failed and where ...).

Whatever a model becomes, it is believed only once it gives onnxruntime's outputs on random images:
the largest difference at most VERIFY_TOLERANCE of the outputs' scale.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .imports import runtime_message
from .networks import NETWORK, ZooModel, build_network, per_channel, set_module
from .normalise import Normalised, normalise_graph
from .registry import MODELS

VERIFY_TOLERANCE = 1e-4      # relative to the largest output (and at least 1e-4 absolute)
VERIFY_BATCH = 2
VERIFY_SEED = 1234
CONVERTIBLE_OPSETS = (13, 17)  # onnx2torch's range that the version converter brings a file into
WEIGHTED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
AFFINE_OPS = ("Sub", "Add", "Mul", "Div")
NAME_PREFIXES = ("module.", "model.", "_orig_mod.")


class ImportFailed(ValueError):
    """The file cannot be used at all (onnxruntime cannot run it); the message says why."""


@dataclass
class ImportResult:
    mode: str                      # "weights_copied" | "converted" | "prediction_only"
    reason: str
    architecture: str = ""         # the zoo network for weights_copied; "imported" for converted
    state: dict | None = None      # the ZooModel's state dict (weights_copied)
    details: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- the graph's side


@dataclass
class Item:
    """One node of the graph that holds weights, in the graph's order."""
    kind: str                 # "conv" | "bn" | "linear"
    tensors: list[np.ndarray]  # conv [W] or [W, B]; bn [scale, shift, mean, var]; linear [W (out, in)] or [W, B]
    name: str                 # the first weight's initializer name
    epsilon: float = 1e-5


def constants_of(graph) -> dict[str, np.ndarray]:
    """Every value of the graph known without running it: initializers, Constant nodes, and Identity of either
    (the TorchScript exporter shares equal tensors through Identity nodes)."""
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    found[node.output[0]] = numpy_helper.to_array(attribute.t)
        elif node.op_type == "Identity" and node.input and node.input[0] in found:
            found[node.output[0]] = found[node.input[0]]
    return found


def attribute(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def graph_items(graph, constants: dict) -> list[Item] | None:
    """The weight-holding nodes in graph order; None when some weights are not plain constants (quantised ...)."""
    items: list[Item] = []
    users = consumers(graph)

    def const(name):
        value = constants.get(name)
        return None if value is None else np.asarray(value, dtype=np.float32)

    for node in graph.node:
        op = node.op_type
        if op == "Conv":
            weight = const(node.input[1])
            bias = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if weight is None or (len(node.input) > 2 and node.input[2] and bias is None):
                return None
            items.append(Item("conv", [weight] + ([bias] if bias is not None else []), node.input[1]))
        elif op == "BatchNormalization":
            tensors = [const(name) for name in node.input[1:5]]
            if any(t is None for t in tensors):
                return None
            items.append(Item("bn", tensors, node.input[1], float(attribute(node, "epsilon", 1e-5))))
        elif op == "Gemm":
            weight = const(node.input[1])
            if weight is None or weight.ndim != 2 or attribute(node, "transA", 0):
                return None
            weight = (weight if attribute(node, "transB", 0) else weight.T) * float(attribute(node, "alpha", 1.0))
            tensors = [weight]
            if len(node.input) > 2 and node.input[2]:
                bias = const(node.input[2])
                if bias is None or bias.size != weight.shape[0]:
                    return None
                tensors.append(bias.reshape(-1) * float(attribute(node, "beta", 1.0)))
            items.append(Item("linear", tensors, node.input[1]))
        elif op == "MatMul":
            weight = const(node.input[1])
            if weight is None:
                continue  # activations times activations: no weights here
            if weight.ndim != 2:
                return None
            tensors = [weight.T]
            adds = [n for n in users.get(node.output[0], []) if n.op_type == "Add"]
            for add in adds[:1]:
                other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
                bias = const(other)
                if bias is not None and bias.size == weight.shape[1]:
                    tensors.append(bias.reshape(-1))
            items.append(Item("linear", tensors, node.input[1]))
    return items


def input_normalisation(model, constants: dict, channels: int) -> tuple[list[float], list[float], int, int]:
    """(mean, std, steps, resize side) of the chain of per-channel Sub/Add/Mul/Div constants at the graph's start,
    so that the chain is (x - mean) / std; ([0]*C, [1]*C, 0, side) when there is none. A Resize first (a ZooModel
    with an input size) is stepped over, and its output side returned."""
    graph = model.graph
    users = consumers(graph)
    current = real_input_name(graph)
    scale, shift = np.ones(channels), np.zeros(channels)
    steps, resize_side = 0, 0
    while True:
        following = users.get(current, [])
        if len(following) != 1:
            break
        node = following[0]
        if node.op_type == "Resize" and steps == 0 and not resize_side:
            side = shapes_of(model).get(node.output[0])
            if not side or len(side) != 4 or not side[2] or side[2] != side[3]:
                break
            resize_side, current = side[2], node.output[0]
            continue
        if node.op_type not in AFFINE_OPS or len(node.input) != 2:
            break
        first = node.input[0] == current
        value = per_channel_constant(constants.get(node.input[1] if first else node.input[0]), channels)
        if value is None:
            break
        if node.op_type == "Sub" and first:
            shift = shift - value
        elif node.op_type == "Add":
            shift = shift + value
        elif node.op_type == "Mul":
            scale, shift = scale * value, shift * value
        elif node.op_type == "Div" and first and np.all(value != 0):
            scale, shift = scale / value, shift / value
        else:
            break
        steps += 1
        current = node.output[0]
    if not steps or np.any(scale == 0):
        return [0.0] * channels, [1.0] * channels, 0, resize_side
    std = 1.0 / scale
    return [float(v) for v in -shift * std], [float(v) for v in std], steps, resize_side


def real_input_name(graph) -> str:
    weights = {t.name for t in graph.initializer}
    return next((value.name for value in graph.input if value.name not in weights), "")


def per_channel_constant(value, channels: int) -> np.ndarray | None:
    """A constant that broadcasts over (N, C, H, W) one value per channel: a scalar, (C, 1, 1) or (1, C, 1, 1)."""
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]))
    if value.size == channels and value.ndim in (3, 4) and value.shape[-3] == channels:
        return value.reshape(-1)
    return None


def shapes_of(model) -> dict[str, list]:
    """Static shapes of the graph's values by ONNX shape inference ({} when it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    return shapes


# ----------------------------------------------------------------------------------------------- matching a zoo network


def weighted_modules(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Conv, BatchNorm and Linear layers in registration order; None if other layers hold parameters too."""
    modules = [(name, module) for name, module in model.named_modules() if isinstance(module, WEIGHTED)]
    covered = sum(p.numel() for _, m in modules for p in m.parameters(recurse=False))
    if covered != sum(p.numel() for p in model.parameters()):
        return None
    return modules


def layer_shapes(items: list[Item]) -> list[tuple]:
    return sorted(tuple(item.tensors[0].shape) for item in items if item.kind in ("conv", "linear"))


def module_shapes(modules) -> list[tuple]:
    return sorted(tuple(m.weight.shape) for _, m in modules if isinstance(m, nn.Conv2d | nn.Linear))


def normalised_name(name: str, module_names: set[str]) -> str | None:
    """The module an initializer named like `network.layer1.0.conv1.weight` belongs to, if the model has it."""
    stem = name.removesuffix(".weight")
    if stem == name:
        return None
    candidates = [stem, f"{NETWORK}.{stem}"]
    for prefix in NAME_PREFIXES:
        if stem.startswith(prefix):
            candidates += [stem.removeprefix(prefix), f"{NETWORK}.{stem.removeprefix(prefix)}"]
    return next((c for c in candidates if c in module_names), None)


def ordered_by_name(modules, items: list[Item]) -> list[Item] | None:
    """The items in the modules' order when every item's name names a module (our own exports); else None."""
    names = {name for name, _ in modules}
    by_module = {}
    for item in items:
        module = normalised_name(item.name, names)
        if module is None or module in by_module:
            return None
        by_module[module] = item
    return [by_module[name] for name, _ in modules if name in by_module]


def aligned(modules, items: list[Item]) -> dict | None:
    """{state key: tensor} for every weighted module, walking modules and items together; None on any mismatch.
    A convolution without bias whose graph node has one, followed by a BatchNorm with no node of its own, is
    a folded pair: the BatchNorm becomes identity-with-shift."""
    state, folded = {}, 0
    i = j = 0
    while i < len(modules):
        name, module = modules[i]
        if j >= len(items):
            return None
        item = items[j]
        if isinstance(module, nn.Conv2d):
            if item.kind != "conv" or item.tensors[0].shape != tuple(module.weight.shape):
                return None
            state[f"{name}.weight"] = item.tensors[0]
            bias = item.tensors[1] if len(item.tensors) > 1 else None
            following = modules[i + 1][1] if i + 1 < len(modules) else None
            if module.bias is not None:
                state[f"{name}.bias"] = bias if bias is not None else np.zeros(module.out_channels, np.float32)
            elif (isinstance(following, nn.BatchNorm2d) and following.num_features == module.out_channels
                  and (has_shift(bias) or not next_is_batchnorm(items, j + 1, module.out_channels))):
                # the BatchNorm after it is folded into this convolution by the exporter: the node has a bias the
                # layer has not, or (a zero shift) no BatchNorm node of its size comes next
                bn = modules[i + 1][0]
                state[f"{bn}.weight"] = np.ones(module.out_channels, np.float32)
                state[f"{bn}.bias"] = bias if bias is not None else np.zeros(module.out_channels, np.float32)
                state[f"{bn}.running_mean"] = np.zeros(module.out_channels, np.float32)
                state[f"{bn}.running_var"] = np.full(module.out_channels, 1.0 - following.eps, np.float32)
                folded += 1
                i += 1
            elif has_shift(bias):
                return None
        elif isinstance(module, nn.BatchNorm2d):
            if item.kind != "bn" or any(t.shape != (module.num_features,) for t in item.tensors):
                return None
            scale, shift, mean, var = item.tensors
            state[f"{name}.weight"], state[f"{name}.bias"], state[f"{name}.running_mean"] = scale, shift, mean
            state[f"{name}.running_var"] = (var + item.epsilon - module.eps).astype(np.float32)  # the same sqrt(var + eps)
        else:  # nn.Linear
            if item.kind != "linear" or item.tensors[0].shape != tuple(module.weight.shape):
                return None
            state[f"{name}.weight"] = item.tensors[0]
            bias = item.tensors[1] if len(item.tensors) > 1 else None
            if module.bias is not None:
                state[f"{name}.bias"] = bias if bias is not None else np.zeros(module.out_features, np.float32)
            elif bias is not None and np.any(bias != 0):
                return None
        i += 1
        j += 1
    if j != len(items):
        return None
    state["__folded__"] = folded
    return state


def has_shift(bias) -> bool:
    return bias is not None and bool(np.any(bias != 0))


def next_is_batchnorm(items: list[Item], j: int, features: int) -> bool:
    return j < len(items) and items[j].kind == "bn" and items[j].tensors[0].shape == (features,)


def candidate_architectures(items: list[Item], channels: int, classes: int, hint: str = "") -> list[str]:
    """Zoo networks whose convolution and dense layer shapes are the file's (compared on meta-device models)."""
    wanted = layer_shapes(items)
    found = []
    names = sorted(MODELS, key=lambda n: n != hint)
    for name in names:
        if MODELS[name].dims != 2:
            continue
        try:
            with torch.device("meta"):
                model = build_network(name, channels, classes)
        except Exception:
            continue
        modules = weighted_modules(model)
        if modules is not None and module_shapes(modules) == wanted:
            found.append(name)
    return found


# ----------------------------------------------------------------------------------------------- checking against onnxruntime


@dataclass
class Reference:
    """onnxruntime's outputs on seeded random images in [0, 1]: what any PyTorch version of the file must give."""
    images: torch.Tensor
    outputs: np.ndarray
    session: object
    input_name: str

    def difference(self, model: nn.Module) -> float:
        with torch.no_grad():
            got = model.eval()(self.images).float().numpy()
        if got.shape != self.outputs.shape:
            return math.inf
        return float(np.abs(got - self.outputs).max())

    @property
    def tolerance(self) -> float:
        return VERIFY_TOLERANCE * max(1.0, float(np.abs(self.outputs).max()))

    def squeezed(self) -> Reference:
        """The same outputs with their trailing singleton sides dropped ([N, C, 1, 1] -> [N, C]), as the normalised
        graph gives them."""
        return Reference(self.images, self.outputs.reshape(self.outputs.shape[:2]), self.session, self.input_name)


def verification_size(facts: dict, architecture: str = "") -> tuple[int, int]:
    height, width = facts.get("height") or 0, facts.get("width") or 0
    if height and width:
        return height, width
    entry = MODELS.get(architecture)
    side = (entry.max_size or max(entry.min_size, 64)) if entry else 64
    return height or side, width or side


def reference_outputs(path: Path, facts: dict, mean, std, size: tuple[int, int]) -> Reference:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ImportFailed(f"onnxruntime cannot load this model: {runtime_message(error)}.") from None
    shape = facts["inputs"][0]["shape"]
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else VERIFY_BATCH
    generator = torch.Generator().manual_seed(VERIFY_SEED)
    images = torch.rand(batch, facts["channels"], *size, generator=generator)
    given = images.numpy()
    if mean and std:
        given = (given - np.asarray(mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    name = session.get_inputs()[0].name
    try:
        outputs = session.run(None, {name: given.astype(np.float32)})[0]
    except Exception as error:
        raise ImportFailed(f"onnxruntime cannot run this model on {facts['channels']}×{size[0]}×{size[1]} images: "
                           f"{runtime_message(error)}.") from None
    return Reference(images, np.asarray(outputs, dtype=np.float32), session, name)


def short(error: Exception, limit: int = 400) -> str:
    text = " ".join(str(error).split())
    return (text[:limit] + "…") if len(text) > limit else (text or type(error).__name__)


# ----------------------------------------------------------------------------------------------- the import


def combined(outer_mean, outer_std, inner_mean, inner_std) -> tuple[list[float], list[float]]:
    """One (x - m) / s for the user's normalisation (before the file) followed by the file's own."""
    if not (outer_mean and outer_std):
        return list(inner_mean), list(inner_std)
    mean = [om + im * os_ for om, os_, im in zip(outer_mean, outer_std, inner_mean)]
    return mean, [os_ * is_ for os_, is_ in zip(outer_std, inner_std)]


def import_onnx(path: str | Path, facts: dict, mean=None, std=None) -> ImportResult:
    """What the file becomes (see the module's docstring); ImportFailed when onnxruntime cannot run it at all."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    channels = facts["channels"]
    mean = per_channel(tuple(mean), channels) if mean else None
    std = per_channel(tuple(std), channels) if std else None
    out_shape = facts["outputs"][0].get("shape") or []
    hint = facts.get("architecture_hint", "")
    size = verification_size(facts, hint)
    reference = reference_outputs(path, facts, mean, std, size)
    details = {"verified_on": list(reference.images.shape), "tolerance": reference.tolerance}
    # Old-style graphs (weights among the inputs, Constant nodes, a fixed batch, [N, C, 1, 1] outputs) made plain,
    # each step checked against onnxruntime on the original (normalise.py); what follows reads the plain graph.
    normalised = normalise_graph(model, size, reference.session)
    details["normalisation"] = normalised.details()
    plain = normalised.model
    if normalised.squeezed and reference.outputs.ndim > 2:
        reference = reference.squeezed()
    if reference.outputs.ndim != 2:
        why = normalised.not_used.get("squeeze_spatial_output")
        squeeze = f" (squeezing its trailing sides was not used: {why})" if why else ""
        return ImportResult("prediction_only", f"Its output has shape {list(reference.outputs.shape)}, not one row of class scores "
                                               f"per image{squeeze}, so it cannot be fine-tuned as a classifier. It can predict "
                                               "through onnxruntime.", details=details)
    classes = reference.outputs.shape[1]
    tried = []
    copied = copy_onto_zoo(plain, facts, classes, mean, std, reference, tried)
    if copied is not None:
        copied.details = {**details, **copied.details}
        copied.reason = with_normalisation(copied.reason, normalised)
        return copied
    not_zoo = ("; ".join(tried) + ". ") if tried else "It is not one of the zoo's networks. "
    result = convert_with_onnx2torch(plain, path, reference, mean, std, out_shape)
    result.details = {**details, **result.details}
    result.reason = with_normalisation(not_zoo + result.reason, normalised)
    return result


def with_normalisation(reason: str, normalised: Normalised) -> str:
    summary = normalised.summary()
    return f"{reason} {summary}" if summary else reason


def copy_onto_zoo(model, facts: dict, classes: int, mean, std, reference: Reference, tried: list[str]) -> ImportResult | None:
    constants = constants_of(model.graph)
    items = graph_items(model.graph, constants)
    if not items:
        return None
    channels = facts["channels"]
    inner_mean, inner_std, steps, resize_side = input_normalisation(model, constants, channels)
    candidates = candidate_architectures(items, channels, classes, facts.get("architecture_hint", ""))
    zoo_mean, zoo_std = combined(mean, std, inner_mean, inner_std)
    for name in candidates:
        title = MODELS[name].title
        torch.manual_seed(0)
        built = build_network(name, channels, classes, input_size=resize_side)
        modules = weighted_modules(built)
        template = {key: value.clone() for key, value in built.state_dict().items()}
        for how, ordered in (("by name", ordered_by_name(modules, items)), ("by order and shape", items)):
            if ordered is None:
                continue
            state = aligned(modules, ordered)
            if state is None:
                continue
            folded = state.pop("__folded__")
            full = dict(template)
            full.update({key: torch.tensor(np.asarray(value, dtype=np.float32)) for key, value in state.items()})
            full["mean"] = torch.tensor(zoo_mean, dtype=torch.float32).view(1, channels, 1, 1)
            full["std"] = torch.tensor(zoo_std, dtype=torch.float32).view(1, channels, 1, 1)
            built.load_state_dict(full)
            difference = reference.difference(built)
            if difference <= reference.tolerance:
                folding = (f" {folded} BatchNorm layer(s) had been folded into the convolution before them by the exporter: "
                           "they start as identities holding the folded shift, so fine-tuning re-learns their scale "
                           "(a head-only phase keeps them as they are)." if folded else "")
                reason = (f"Recognised as {title}: its {len(items)} weighted layers were copied onto the toolkit's {title} "
                          f"(matched {how}) and it gives onnxruntime's outputs on random images (largest difference "
                          f"{difference:.1e}).{folding} It can be fine-tuned like any {title}.")
                return ImportResult("weights_copied", reason, name, {k: v.clone() for k, v in built.state_dict().items()},
                                    {"matched": how, "folded_batchnorm": folded, "max_difference": difference,
                                     "normalisation_in_file": {"mean": inner_mean, "std": inner_std} if steps else None})
            tried.append(f"its layers fit {title}'s ({how}) but the copy's outputs differ from onnxruntime's by {difference:.1e}")
    return None


def prepared_for_onnx2torch(model) -> tuple[onnx.ModelProto, str]:
    """The model with its opset brought into CONVERTIBLE_OPSETS, and Reshape's allowzero=1 (which onnx2torch
    lacks) dropped where the target shape has no zero (where it means the same)."""
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    low, high = CONVERTIBLE_OPSETS
    note = ""
    if opset is not None and not low <= opset <= high:
        target = min(max(opset, low), high)
        model = version_converter.convert_version(model, target)
        note = f"opset {opset} converted to {target}"
    materialise_constants(model)
    constants = constants_of(model.graph)
    for node in model.graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in constants and 0 not in constants[node.input[1]]:
            for a in node.attribute:
                if a.name == "allowzero":
                    a.i = 0
    return model, note


def materialise_constants(model) -> None:
    """Constant nodes and Identity nodes of initializers become initializers: onnx2torch reads a Conv's or Gemm's
    weights only from initializers."""
    graph = model.graph
    known = {t.name for t in graph.initializer}
    kept = []
    for node in graph.node:
        value = None
        if node.op_type == "Constant" and len(node.output) == 1:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                value = numpy_helper.to_array(value)
        elif node.op_type == "Identity" and node.input and node.input[0] in known:
            value = numpy_helper.to_array(next(t for t in graph.initializer if t.name == node.input[0]))
        if value is None or node.output[0] in {o.name for o in graph.output}:
            kept.append(node)
            continue
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), node.output[0]))
        known.add(node.output[0])
    del graph.node[:]
    graph.node.extend(kept)


def onnx_network(path: str | Path) -> nn.Module:
    """The file as a PyTorch module (torch.fx, by onnx2torch): rebuilt from the file each time it is needed, through
    the same normalisation as its import (the same checks on the same images, hence the same steps)."""
    from .imports import onnx_facts

    model = onnx.load(str(path), load_external_data=False)
    facts = onnx_facts(model)
    plain = normalise_graph(model, verification_size(facts, facts.get("architecture_hint", ""))).model
    prepared, _ = prepared_for_onnx2torch(plain)
    return converted_network(prepared)


def converted_network(prepared) -> nn.Module:
    """onnx2torch's module for a prepared graph, made exportable again after fine-tuning (constant Reshape targets
    and Dropout ratios made plain) and given a dense head where its last weighted layer can be one (dense_head)."""
    import onnx2torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = onnx2torch.convert(prepared)
    return dense_head(constant_dropouts(constant_reshapes(module)))


def constant_reshapes(module):
    """onnx2torch's Reshape reads its target shape when it runs, behind a data-dependent branch that torch.export
    cannot trace (a fine-tuned converted model could not be exported again): a target shape that is a constant
    without zeros becomes a plain torch.reshape to that shape."""
    from onnx2torch.node_converters.reshape import OnnxReshape

    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(module.get_submodule(node.target), OnnxReshape):
            continue
        if len(node.args) != 2 or getattr(node.args[1], "op", "") != "get_attr":
            continue
        shape = attribute_tensor(module, node.args[1])
        if shape.dim() != 1 or not bool((shape != 0).all()):
            continue
        with module.graph.inserting_before(node):
            plain = module.graph.call_function(torch.reshape, (node.args[0], tuple(int(v) for v in shape.tolist())))
        node.replace_all_uses_with(plain)
        module.graph.erase_node(node)
        changed = True
    if changed:
        module.graph.eliminate_dead_code()
        module.recompile()
    return module


def attribute_tensor(module, node) -> torch.Tensor:
    """The tensor a get_attr node of a torch.fx module reads (a buffer of a submodule, or the module's own)."""
    return module.get_buffer(node.target) if "." in node.target else getattr(module, node.target)


def constant_dropouts(module):
    """onnx2torch's Dropout for opsets 12 and up (every old file's Dropout once brought into 13: its ratio attribute
    became an input) passes the ratio tensor to F.dropout, which torch.export cannot trace (a fine-tuned model could
    not be exported again): a constant ratio makes it a plain nn.Dropout with that ratio. Like onnx2torch's, it drops
    in training only, whatever the graph's training_mode says."""
    from onnx2torch.node_converters.dropout import OnnxDropoutDynamic

    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(module.get_submodule(node.target), OnnxDropoutDynamic):
            continue
        ratio = node.args[1] if len(node.args) > 1 else node.kwargs.get("ratio")
        if ratio is None:
            value = 0.5
        elif getattr(ratio, "op", "") == "get_attr":
            tensor = attribute_tensor(module, ratio)
            if tensor.numel() != 1:
                continue
            value = float(tensor.reshape(-1)[0])
        else:
            continue
        set_module(module, node.target, nn.Dropout(p=value))
        node.args, node.kwargs = (node.args[0],), {}
        changed = True
    if changed:
        module.graph.eliminate_dead_code()
        module.recompile()
    return module


def dense_head(module):
    """A network without dense layers whose last weighted layer can be one gets it as an nn.Linear: the same
    computation, and a head that a run replaces for its classes like any other (networks.replace_head makes a new
    nn.Linear). Two such layers:

    - a 1×1 convolution (SqueezeNet's conv10 before its global pooling; the Caffe2 DenseNet's head, a 1×1
      convolution on the pooled features): a dense layer over each position's channels, channels moved last and back;
    - a MatMul by a constant matrix, with the Add of a constant vector after it (how torch.export writes a dense layer
      on more than two dimensions, such as the one above once a fine-tuned model is exported: imported again, it
      would otherwise have no head)."""
    from onnx2torch.node_converters.matmul import OnnxMatMul

    if any(isinstance(m, nn.Linear) for m in module.modules()):
        return module
    weighted = [node for node in module.graph.nodes if node.op == "call_module" and (
        isinstance(module.get_submodule(node.target), nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.BatchNorm2d | nn.ConvTranspose2d)
        or (isinstance(module.get_submodule(node.target), OnnxMatMul) and constant_arg(module, node, 1) is not None))]
    if not weighted:
        return module
    node = weighted[-1]
    layer = module.get_submodule(node.target)
    if isinstance(layer, OnnxMatMul):
        return matmul_as_linear(module, node)
    if (type(layer) is nn.Conv2d and layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.dilation == (1, 1)
            and layer.groups == 1 and layer.padding in ((0, 0), "valid") and len(node.args) == 1 and not node.kwargs):
        return pointwise_as_linear(module, node, layer)
    return module


def constant_arg(module, node, index: int):
    """The constant tensor a node's argument reads (an initializer of onnx2torch's), or None."""
    if len(node.args) <= index or getattr(node.args[index], "op", "") != "get_attr":
        return None
    target = node.args[index].target
    try:
        return module.get_buffer(target) if "." in target else getattr(module, target)
    except AttributeError:
        return None


def pointwise_as_linear(module, node, conv: nn.Conv2d):
    dense = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    with torch.no_grad():
        dense.weight.copy_(conv.weight[:, :, 0, 0])
        if conv.bias is not None:
            dense.bias.copy_(conv.bias)
    set_module(module, node.target, dense)
    graph = module.graph
    with graph.inserting_before(node):
        channels_last = graph.call_function(torch.movedim, (node.args[0], 1, -1))
    node.args = (channels_last,)
    with graph.inserting_after(node):
        channels_first = graph.call_function(torch.movedim, (node, -1, 1))
    node.replace_all_uses_with(channels_first, delete_user_cb=lambda user: user is not channels_first)
    module.recompile()
    return module


def matmul_as_linear(module, node):
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation

    weight = constant_arg(module, node, 1)
    if weight is None or weight.dim() != 2 or not weight.is_floating_point():
        return module
    users = list(node.users)
    bias = None
    if len(users) == 1 and users[0].op == "call_module":
        add = module.get_submodule(users[0].target)
        if (isinstance(add, OnnxBinaryMathOperation) and add.math_op_function is torch.add and add.broadcast is None
                and len(users[0].args) == 2):
            other = 1 if users[0].args[0] is node else 0
            value = constant_arg(module, users[0], other)
            if value is not None and value.dim() == 1 and value.numel() == weight.shape[1] and value.is_floating_point():
                bias = value
    dense = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
    with torch.no_grad():
        dense.weight.copy_(weight.T)
        if bias is not None:
            dense.bias.copy_(bias)
    set_module(module, node.target, dense)
    node.args = (node.args[0],)
    if bias is not None:
        users[0].replace_all_uses_with(node)
        module.graph.erase_node(users[0])
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


def last_linear(network: nn.Module) -> str | None:
    """The name of the network's last dense layer: its head, replaced for new classes."""
    names = [name for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def unconvertible_operation(error: Exception) -> str:
    """"onnx2torch has no converter for the operation 'Loop'" from onnx2torch's NotImplementedError, or the error in words."""
    text = str(error)
    if "operation_type=" in text:
        operation = text.split("operation_type=", 1)[1].split(",", 1)[0].strip("'\" )")
        return f"onnx2torch has no converter for the operation '{operation}'"
    return f"onnx2torch could not convert it ({type(error).__name__}: {short(error, 200)})"


def conversion_failure(prepared, error: Exception) -> str:
    """Why onnx2torch could not convert the graph, naming the operation and the node it stopped at: its nodes are
    converted again one by one (only after a failure) to find it; else the error in words."""
    return failing_node(prepared) or unconvertible_operation(error)


def failing_node(prepared) -> str:
    try:
        from onnx2torch.node_converters import get_converter
        from onnx2torch.onnx_graph import OnnxGraph
        from onnx2torch.utils.safe_shape_inference import safe_shape_inference

        inferred = safe_shape_inference(prepared)
    except Exception:
        return ""
    weights = {t.name for t in inferred.graph.initializer}
    kept = [value for value in inferred.graph.input if value.name not in weights]
    del inferred.graph.input[:]
    inferred.graph.input.extend(kept)
    opsets = {o.domain: o.version for o in inferred.opset_import}
    graph = OnnxGraph(inferred.graph)
    for unique, node in graph.nodes.items():
        operation, where = node.operation_type, f"node '{node.name or unique}'"
        version = opsets.get(node.domain, opsets.get("ai.onnx" if node.domain == "" else node.domain, 0))
        try:
            converter = get_converter(domain=node.domain, operation_type=operation, version=version)
        except NotImplementedError:
            return f"onnx2torch has no converter for the operation '{operation}' (opset {version}, {where})"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                converter(node, graph)
        except KeyError as missing:
            name = missing.args[0] if missing.args else ""
            if name in node.input_values:
                return (f"onnx2torch's converter for '{operation}' ({where}) needs its input '{name}' as a constant weight "
                        "(an initializer), and the graph computes it")
            return f"onnx2torch's converter for '{operation}' failed at {where} (KeyError: {short(missing, 200)})"
        except Exception as failure:
            return f"onnx2torch's converter for '{operation}' failed at {where} ({type(failure).__name__}: {short(failure, 200)})"
    return ""


def convert_with_onnx2torch(model, path: Path, reference: Reference, mean, std, out_shape: list) -> ImportResult:
    predict_only = " It can still predict through onnxruntime."
    try:
        prepared, note = prepared_for_onnx2torch(model)
    except Exception as error:
        return ImportResult("prediction_only", f"Its opset could not be brought into {CONVERTIBLE_OPSETS[0]}..{CONVERTIBLE_OPSETS[1]} "
                                               f"for onnx2torch ({short(error, 200)}), so it cannot be fine-tuned.{predict_only}")
    try:
        network = converted_network(prepared)
    except Exception as error:
        return ImportResult("prediction_only", f"It cannot be fine-tuned: {conversion_failure(prepared, error)}.{predict_only}",
                            details={"opset_conversion": note})
    channels = reference.images.shape[1]
    wrapped = ZooModel(network, per_channel(tuple(mean), channels) if mean else [0.0] * channels,
                       per_channel(tuple(std), channels) if std else [1.0] * channels)
    try:
        difference = reference.difference(wrapped)
    except Exception as error:
        return ImportResult("prediction_only", f"onnx2torch converted it, but the converted model fails on images "
                                               f"({type(error).__name__}: {short(error, 200)}), so it cannot be fine-tuned.{predict_only}")
    details = {"opset_conversion": note, "max_difference": difference}
    if not difference <= reference.tolerance:
        return ImportResult("prediction_only", f"onnx2torch converted it, but the converted model's outputs differ from "
                                               f"onnxruntime's by {difference:.1e}, so it cannot be fine-tuned.{predict_only}",
                            details=details)
    if not any(True for _ in network.parameters()):
        return ImportResult("prediction_only", f"onnx2torch converted it, but the converted model has no trainable weights.{predict_only}",
                            details=details)
    if last_linear(network) is None:
        return ImportResult("prediction_only", "onnx2torch converted it, but it does not end in a dense layer whose classes a "
                                               f"run could replace, so it cannot be fine-tuned.{predict_only}", details=details)
    other_batch = reference.images.shape[0] + 1
    try:
        with torch.no_grad():
            wrapped.eval()(torch.rand(other_batch, *reference.images.shape[1:]))
    except Exception:
        return ImportResult("prediction_only", f"onnx2torch converted it, but the converted model only takes batches of "
                                               f"{reference.images.shape[0]} image(s) (the file fixes it), so it cannot be "
                                               f"fine-tuned.{predict_only}", details=details)
    converted = f" ({note})" if note else ""
    return ImportResult("converted", f"Converted to PyTorch with onnx2torch{converted}; it gives onnxruntime's outputs on random "
                                     f"images (largest difference {difference:.1e}). Fine-tuning rebuilds it from the file; its "
                                     "last dense layer is the head.", "imported", details=details)


# ----------------------------------------------------------------------------------------------- safetensors


def import_safetensors(path: str | Path, architecture: str, mean=None, std=None, input_size: int = 0) -> ImportResult:
    """Weights of a zoo network (checked against it on upload) loaded onto it: read by the safetensors library (raw
    tensors, no code), keys as a ZooModel's. Its normalisation: the one given at import, else the file's own (a
    toolkit's ZooModel keeps `mean` and `std`), else the zoo's plain one."""
    from safetensors.torch import load_file

    from .imports import first_and_head_keys, zoo_keys
    from .registry import PLAIN_MEAN, PLAIN_STD

    raw = load_file(str(path))
    mapped = zoo_keys(raw, architecture)
    state = {mapped[name]: tensor for name, tensor in raw.items() if name in mapped}
    first_key, head_key, _ = first_and_head_keys(architecture)
    channels, classes = state[first_key].shape[1], state[head_key].shape[0]
    model = build_network(architecture, channels, classes, input_size=input_size)
    if mean and std:
        norm, source = (per_channel(tuple(mean), channels), per_channel(tuple(std), channels)), "the mean and std given at import"
    elif "mean" in state and "std" in state:
        norm, source = (state["mean"].float().reshape(-1).tolist(), state["std"].float().reshape(-1).tolist()), "the file's own mean and std"
    else:
        norm, source = (per_channel(PLAIN_MEAN, channels), per_channel(PLAIN_STD, channels)), "the zoo's plain normalisation (0.5, 0.5)"
    full = model.state_dict()
    for key, tensor in state.items():
        if key in full and key not in ("mean", "std"):
            full[key] = tensor.to(full[key].dtype)
    full["mean"] = torch.tensor(per_channel(tuple(norm[0]), channels), dtype=torch.float32).view(1, channels, 1, 1)
    full["std"] = torch.tensor(per_channel(tuple(norm[1]), channels), dtype=torch.float32).view(1, channels, 1, 1)
    model.load_state_dict(full)
    title = MODELS[architecture].title
    reason = (f"The weights load onto the toolkit's {title} ({channels} channel(s), {classes} outputs), normalised with {source}. "
              f"It can be fine-tuned like any {title}, and predicts through onnxruntime (exported on import).")
    return ImportResult("weights_copied", reason, architecture, {k: v.clone() for k, v in model.state_dict().items()},
                        {"normalisation": {"mean": full["mean"].flatten().tolist(), "std": full["std"].flatten().tolist(), "from": source}})


def zoo_model_from_state(architecture: str, state: dict, input_size: int = 0) -> ZooModel:
    """The ZooModel a copied state dict (mean, std, network.*) belongs to, for this state's channels and classes."""
    from .imports import first_and_head_keys

    first_key, head_key, _ = first_and_head_keys(architecture)
    channels = state[first_key].shape[1]
    model = build_network(architecture, channels, state[head_key].shape[0], input_size=input_size)
    model.load_state_dict(state)
    return model.eval()

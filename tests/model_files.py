"""Model files for the import tests, made here (torch.onnx.export of small modules, onnx.helper), never downloaded;
and a malicious pickle to prove that nothing uploaded is ever unpickled."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from workers.engine.export import export_onnx
from workers.engine.zoo.networks import build_network


def zoo_onnx(path: Path, architecture: str = "small_cnn", channels: int = 1, classes: int = 2, size: int = 32, seed: int = 0):
    """A zoo network with random weights (BatchNorm statistics too, so folding shows) exported by the toolkit's own exporter."""
    torch.manual_seed(seed)
    model = build_network(architecture, channels, classes).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    export_onnx(model, torch.rand(2, channels, size, size), path)
    return model, path


class CustomCNN(nn.Module):
    """Not one of the zoo's networks: a residual-free CNN with a LeakyReLU and a hidden dense layer."""

    def __init__(self, channels: int = 1, classes: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(channels, 6, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.down = nn.Conv2d(6, 10, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(10, 12)
        self.out = nn.Linear(12, classes)

    def forward(self, images):
        x = self.pool(self.act(self.down(self.act(self.stem(images))))).flatten(1)
        return self.out(torch.tanh(self.hidden(x)))


def custom_onnx(path: Path, channels: int = 1, classes: int = 3, size: int = 24, seed: int = 0):
    torch.manual_seed(seed)
    model = CustomCNN(channels, classes).eval()
    export_onnx(model, torch.rand(2, channels, size, size), path)
    return model, path


def if_onnx(path: Path, channels: int = 1, classes: int = 2, size: int = 16) -> Path:
    """A small classifier whose output goes through an If (control flow onnx2torch cannot convert): global average
    pooling, a dense layer, then If(always true) -> Identity of the scores, else their negation."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(classes, channels)).astype(np.float32), "dense.weight")
    bias = numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "dense.bias")
    condition = numpy_helper.from_array(np.array(True), "always")
    then_graph = helper.make_graph([helper.make_node("Identity", ["scores"], ["then_out"])], "then", [],
                                   [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, ["batch", classes])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["scores"], ["else_out"])], "else", [],
                                   [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, ["batch", classes])])
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "dense.weight", "dense.bias"], ["scores"], transB=1),
        helper.make_node("If", ["always"], ["logits"], then_branch=then_graph, else_branch=else_graph),
    ]
    graph = helper.make_graph(nodes, "branchy", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", channels, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
                              [weight, bias, condition])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def two_input_onnx(path: Path) -> Path:
    nodes = [helper.make_node("Add", ["image", "mask"], ["sum"]), helper.make_node("GlobalAveragePool", ["sum"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["logits"])]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1, 8, 8]) for name in ("image", "mask")]
    graph = helper.make_graph(nodes, "two", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def flat_input_onnx(path: Path) -> Path:
    """A model on vectors (N, 64), not images."""
    weight = numpy_helper.from_array(np.ones((2, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def external_data_onnx(folder: Path) -> Path:
    """A small model saved with its weights in a file beside it (the upload carries only the .onnx)."""
    _, path = zoo_onnx(folder / "inside.onnx", "lenet5", 1, 2, 32)
    model = onnx.load(str(path))
    target = folder / "outside.onnx"
    onnx.save(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True, location="outside.onnx.data",
              size_threshold=0)
    return target


def zoo_safetensors(path: Path, architecture: str = "small_cnn", channels: int = 1, classes: int = 2, prefixed: bool = True,
                    seed: int = 0):
    """A zoo network's weights as safetensors: a ZooModel's keys (mean, std, network.*), or torchvision's own (no prefix)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = build_network(architecture, channels, classes).eval()
    state = model.state_dict() if prefixed else model.network.state_dict()
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return model, path


class Payload:
    """Unpickling this creates `marker`: proof that a file was unpickled (it must never be)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": Payload(marker)}, protocol=4)


def malicious_torch_save(marker: Path) -> bytes:
    """torch.save's zip-of-pickles format, with the payload inside."""
    buffer = io.BytesIO()
    torch.save({"state_dict": Payload(marker)}, buffer)
    return buffer.getvalue()


def mutations(data: bytes, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """Seeded damage to a valid file: truncations and flipped bytes."""
    rng = np.random.default_rng(seed)
    damaged = []
    for n in range(count):
        if n % 2 == 0:
            cut = int(rng.integers(1, len(data)))
            damaged.append((f"truncated at {cut}", data[:cut]))
        else:
            mutable = bytearray(data)
            for position in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
                mutable[position] ^= int(rng.integers(1, 256))
            damaged.append(("flipped bytes", bytes(mutable)))
    return damaged


# ----------------------------------------------------------------------------------------------- old-style graphs
# Built as the public ONNX model zoo's classic files and Caffe2's exporter wrote them (opset 7 to 9, IR version 3):
# weights named like `conv1_w_0`, one fixed image per batch, a Reshape to a constant [1, features] before the dense
# layers, weights as initializers listed among the inputs or as Constant nodes, outputs [1, classes, 1, 1].

OLD_OPSETS = (7, 8, 9)
WEIGHT_STYLES = ("inputs", "constants", "mixed")


class OldStyleGraph:
    """Nodes and weights of an old-style graph. `weights`: "inputs" (initializers, every one also listed among the
    graph's inputs, as IR version 3 required), "constants" (Constant nodes, no initializers where the opset lets a
    Constant hold the type: before opset 9 only floats) or "mixed" (convolutions' kernels in Constant nodes, the rest
    initializers listed as inputs)."""

    def __init__(self, weights: str = "inputs", opset: int = 9, seed: int = 0):
        self.weights, self.opset = weights, opset
        self.nodes, self.initializers, self.rng, self.count = [], [], np.random.default_rng(seed), 0

    def constant(self, name: str, array, conv: bool = False) -> str:
        array = np.asarray(array)
        as_node = self.weights == "constants" or (self.weights == "mixed" and conv)
        if as_node and (array.dtype == np.float32 or self.opset >= 9):
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"{name}_fill", value=numpy_helper.from_array(array, name)))
        else:
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def random(self, name: str, shape, scale: float | None = None, conv: bool = False) -> str:
        scale = scale if scale is not None else 1.0 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1.0)
        return self.constant(name, (self.rng.normal(size=shape) * scale).astype(np.float32), conv)

    def node(self, op: str, inputs: list, name: str | None = None, **attributes) -> str:
        self.count += 1
        name = name or f"{op.lower()}{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_1"], name=name, **attributes))
        return f"{name}_1"

    def conv(self, x, cin: int, cout: int, k: int, name: str, stride: int = 1, pad: int = 0, group: int = 1, bias: bool = True) -> str:
        inputs = [x, self.random(f"{name}_w_0", (cout, cin // group, k, k), conv=True)]
        if bias:
            inputs.append(self.random(f"{name}_b_0", (cout,), 0.1))
        return self.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def batchnorm(self, x, channels: int, name: str) -> str:
        """BatchNormalization as its opset has it: `spatial=1` in opsets 7 and 8 (the attribute went in 9)."""
        tensors = [self.constant(f"{name}_{part}_0", self.rng.uniform(low, high, channels).astype(np.float32))
                   for part, low, high in (("s", 0.5, 1.5), ("b", -0.5, 0.5), ("rm", -0.5, 0.5), ("riv", 0.5, 2.0))]
        spatial = {"spatial": 1} if self.opset in (7, 8) else {}
        return self.node("BatchNormalization", [x, *tensors], name, epsilon=1e-5, momentum=0.9, **spatial)

    def gemm(self, x, cin: int, cout: int, name: str) -> str:
        return self.node("Gemm", [x, self.random(f"{name}_w_0", (cout, cin)), self.random(f"{name}_b_0", (cout,), 0.1)], name,
                         transB=1)

    def model(self, image: str, shape: list, output: str, out_shape: list) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(image, TensorProto.FLOAT, shape)]
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in self.initializers]
        graph = helper.make_graph(self.nodes, "caffe2_net", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="onnx-caffe2",
                                  ir_version=3)
        onnx.checker.check_model(model, full_check=True)
        return model


def old_alexnet(weights: str = "inputs", opset: int = 9, channels: int = 3, classes: int = 5, side: int = 32,
                fill: bool = False) -> onnx.ModelProto:
    """A small AlexNet as the zoo's bvlc_alexnet: convolutions (one grouped), LRN, max pooling, a Reshape to the
    constant [1, 144], Gemm with transB, Dropout, Softmax. `fill` (opset 9): the Reshape's target made by a
    ConstantOfShape and an Add, and a per-channel shift made by a ConstantOfShape added after the first convolution."""
    g = OldStyleGraph(weights, opset, seed=0)
    x = g.conv("data_0", channels, 8, 5, "conv1", stride=2, pad=2)
    if fill:
        shift = g.node("ConstantOfShape", [g.constant("OC2_DUMMY_3", np.array([1, 8, 1, 1], np.int64))], "shift_fill",
                       value=numpy_helper.from_array(np.array([0.25], np.float32)))
        x = g.node("Add", [x, shift], "conv1_shift")
    x = g.node("Relu", [x], "relu1")
    x = g.node("LRN", [x], "norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = g.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2])
    x = g.node("Relu", [g.conv(x, 8, 16, 3, "conv2", pad=1, group=2)], "relu2")
    x = g.node("MaxPool", [x], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    pooled = ((side // 2 - 3) // 2 + 1) // 2   # the sides after conv1 (stride 2), pool1 (3, stride 2) and pool2 (2, 2)
    features = 16 * pooled * pooled
    if fill:
        zeros = g.node("ConstantOfShape", [g.constant("OC2_DUMMY_2", np.array([2], np.int64))], "shape_fill",
                       value=numpy_helper.from_array(np.array([0], np.int64)))
        target = g.node("Add", [zeros, g.constant("OC2_DUMMY_1", np.array([1, features], np.int64))], "shape_sum")
    else:
        target = g.constant("OC2_DUMMY_1", np.array([1, features], np.int64))
    x = g.node("Reshape", [x, target], "OC2_DUMMY_0")
    x = g.node("Dropout", [g.node("Relu", [g.gemm(x, features, 32, "fc6")], "relu6")], "drop6", ratio=0.5)
    x = g.node("Softmax", [g.gemm(x, 32, classes, "fc7")], "prob")
    return g.model("data_0", [1, channels, side, side], x, [1, classes])


def fire(g: OldStyleGraph, x: str, cin: int, squeeze: int, expand: int, name: str) -> str:
    s = g.node("Relu", [g.conv(x, cin, squeeze, 1, f"{name}_squeeze1x1")])
    a = g.node("Relu", [g.conv(s, squeeze, expand, 1, f"{name}_expand1x1")])
    b = g.node("Relu", [g.conv(s, squeeze, expand, 3, f"{name}_expand3x3", pad=1)])
    return g.node("Concat", [a, b], f"{name}_concat", axis=1)


def old_squeezenet(weights: str = "inputs", opset: int = 9, channels: int = 3, classes: int = 5, side: int = 32,
                   pool: str = "GlobalAveragePool") -> onnx.ModelProto:
    """A small SqueezeNet 1.0 as the zoo's: Fire modules (squeeze, two expands joined by Concat), Dropout, a 1×1
    convolution to the classes, ReLU, global pooling and Softmax: output [1, classes, 1, 1]. `pool`: another global
    pooling (GlobalLpPool, which onnx2torch cannot convert)."""
    g = OldStyleGraph(weights, opset, seed=1)
    x = g.node("Relu", [g.conv("data_0", channels, 8, 3, "conv1", stride=2)], "relu_conv1")
    x = g.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2])
    x = fire(g, x, 8, 4, 8, "fire2")
    x = fire(g, x, 16, 4, 8, "fire3")
    x = g.node("Dropout", [x], "drop9", ratio=0.5)
    x = g.node("Relu", [g.conv(x, 16, classes, 1, "conv10")], "relu_conv10")
    x = g.node(pool, [x], "pool10", **({"p": 2} if pool == "GlobalLpPool" else {}))
    x = g.node("Softmax", [x], "softmaxout")
    return g.model("data_0", [1, channels, side, side], x, [1, classes, 1, 1])


def old_densenet(weights: str = "inputs", opset: int = 9, channels: int = 3, classes: int = 5, side: int = 32) -> onnx.ModelProto:
    """A small DenseNet as the zoo's Caffe2 DenseNet-121: BatchNorm-ReLU-convolution layers whose outputs are joined
    by Concat, global average pooling, and a 1×1 convolution to the classes as its head: output [1, classes, 1, 1]."""
    g = OldStyleGraph(weights, opset, seed=2)
    x = g.node("Relu", [g.batchnorm(g.conv("data_0", channels, 8, 3, "conv1", pad=1, bias=False), 8, "conv1_bn")])
    x = g.node("MaxPool", [x], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    width = 8
    for i in (1, 2):
        y = g.conv(g.node("Relu", [g.batchnorm(x, width, f"conv2_{i}_x1_bn")]), width, 8, 1, f"conv2_{i}_x1", bias=False)
        y = g.conv(g.node("Relu", [g.batchnorm(y, 8, f"conv2_{i}_x2_bn")]), 8, 4, 3, f"conv2_{i}_x2", pad=1, bias=False)
        x = g.node("Concat", [x, y], f"concat_2_{i}", axis=1)
        width += 4
    x = g.node("GlobalAveragePool", [g.node("Relu", [g.batchnorm(x, width, "conv5_blk_bn")])], "pool5")
    x = g.conv(x, width, classes, 1, "fc6")
    return g.model("data_0", [1, channels, side, side], x, [1, classes, 1, 1])


def save_onnx(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def old_shufflenet(weights: str = "inputs", opset: int = 9, channels: int = 3, classes: int = 5, side: int = 32) -> onnx.ModelProto:
    """A small ShuffleNet as the zoo's: a channel shuffle by Reshape to the constant [1, groups, 4, h, w], Transpose
    and Reshape back (the batch of one in both targets), a grouped convolution, average pooling over the whole
    image, a Reshape to [1, -1], Gemm and Softmax."""
    g = OldStyleGraph(weights, opset, seed=3)
    half = side // 2
    x = g.node("Relu", [g.conv("gpu_0/data_0", channels, 12, 3, "conv1", stride=2, pad=1)], "relu1")
    x = g.node("Reshape", [x, g.constant("OC2_DUMMY_5", np.array([1, 3, 4, half, half], np.int64))], "shuffle_split")
    x = g.node("Transpose", [x], "shuffle_transpose", perm=[0, 2, 1, 3, 4])
    x = g.node("Reshape", [x, g.constant("OC2_DUMMY_6", np.array([1, 12, half, half], np.int64))], "shuffle_join")
    x = g.node("Relu", [g.conv(x, 12, 12, 3, "gconv2", pad=1, group=3)], "relu2")
    x = g.node("AveragePool", [x], "pool", kernel_shape=[half, half], strides=[1, 1])
    x = g.node("Reshape", [x, g.constant("OC2_DUMMY_7", np.array([1, -1], np.int64))], "flatten")
    x = g.node("Softmax", [g.gemm(x, 12, classes, "fc")], "softmax")
    return g.model("gpu_0/data_0", [1, channels, side, side], x, [1, classes])

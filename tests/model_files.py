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

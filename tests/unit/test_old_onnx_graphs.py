"""Old-style ONNX graphs (the public model zoo's classic files, Caffe2's exporter: opset 7 to 9, IR version 3) made
fine-tunable (issue 19): each normalisation step on its own, each checked against onnxruntime on the original graph;
then the whole way, normalised graph -> onnx2torch -> a torch module giving onnxruntime's outputs on the original;
the import and the network a run starts from; and the reasons given where conversion still fails.

The graphs are built here with onnx.helper (tests/model_files.py), small but shaped as the real ones: an AlexNet
(LRN, a grouped convolution, a Reshape to a constant [1, features], Gemm with transB, Dropout, Softmax), a SqueezeNet
(Fire modules joined by Concat, a 1×1 convolution head, global pooling, output [1, C, 1, 1]), a DenseNet (Concat,
BatchNorm with `spatial` where the opset has it, a 1×1 convolution head on the pooled features) and a ShuffleNet (a
channel shuffle by Reshape to constant 5-D targets holding the batch of one, Transpose, a Reshape to [1, -1])."""
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import png_bytes
from tests.model_files import OLD_OPSETS, WEIGHT_STYLES, old_alexnet, old_densenet, old_shufflenet, old_squeezenet, save_onnx
from workers.engine.zoo import normalise
from workers.engine.zoo.conversion import (
    conversion_failure,
    converted_network,
    import_onnx,
    last_linear,
    onnx_network,
    prepared_for_onnx2torch,
)
from workers.engine.zoo.imports import inspect_onnx, predict_image
from workers.engine.zoo.normalise import (
    fold_constants,
    free_batch,
    normalise_graph,
    squeeze_spatial_output,
    weights_out_of_inputs,
)
from workers.engine.zoo.start import ModelStart, starting_model

BUILDERS = {"alexnet": old_alexnet, "squeezenet": old_squeezenet, "densenet": old_densenet, "shufflenet": old_shufflenet}
TOLERANCE = 1e-4


def run(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """onnxruntime's first output, image by image when the graph fixes its batch to one."""
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name, batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    if batch == 1:
        return np.concatenate([session.run(None, {name: images[i:i + 1]})[0] for i in range(len(images))])
    return session.run(None, {name: images})[0]


def random_images(batch: int = 1, channels: int = 3, side: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, channels, side, side), dtype=np.float32)


def assert_same(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape[:2] or got.shape == expected.shape, (got.shape, expected.shape)
    assert np.abs(got.reshape(-1) - expected.reshape(-1)).max() <= TOLERANCE * max(1.0, np.abs(expected).max())


def torch_module(plain: onnx.ModelProto):
    prepared, _ = prepared_for_onnx2torch(plain)
    return converted_network(prepared).eval()


# ----------------------------------------------------------------------------------------------- each step on its own


@pytest.mark.parametrize("opset", OLD_OPSETS)
def test_weights_listed_among_the_inputs_stop_being_inputs(opset):
    original = old_alexnet("inputs", opset)
    assert original.ir_version == 3 and len(original.graph.input) == 1 + len(original.graph.initializer)
    changed, what = weights_out_of_inputs(original)
    assert [value.name for value in changed.graph.input] == ["data_0"] and changed.ir_version >= 4
    assert len(changed.graph.initializer) == len(original.graph.initializer) and "9 weight(s)" in what
    onnx.checker.check_model(changed, full_check=True)
    images = random_images()
    assert_same(run(changed, images), run(original, images))
    assert weights_out_of_inputs(changed) is None, "nothing left to do"


def test_constant_nodes_become_initializers():
    original = old_densenet("constants", 8)
    assert not original.graph.initializer and any(node.op_type == "Constant" for node in original.graph.node)
    changed, what = fold_constants(original)
    assert not any(node.op_type == "Constant" for node in changed.graph.node)
    assert {"conv1_w_0", "fc6_w_0", "fc6_b_0", "conv1_bn_riv_0"} <= {t.name for t in changed.graph.initializer}
    assert "Constant node(s) folded" in what and changed.ir_version >= 4
    onnx.checker.check_model(changed, full_check=True)
    images = random_images()
    assert_same(run(changed, images), run(original, images))


def test_a_constant_of_shape_subgraph_is_computed_once_into_initializers():
    """A Reshape's target made by ConstantOfShape + Add, and a fill added to activations: the constant parts are
    computed (by onnxruntime) and become initializers; the Add on activations stays."""
    original = old_alexnet("inputs", 9, fill=True)
    plain, _ = weights_out_of_inputs(original)
    changed, what = fold_constants(plain)
    ops = [node.op_type for node in changed.graph.node]
    assert "ConstantOfShape" not in ops and ops.count("Add") == 1, ops
    values = {t.name: numpy_helper.to_array(t) for t in changed.graph.initializer}
    assert values["shape_sum_1"].tolist() == [1, 144]
    assert values["shift_fill_1"].shape == (1, 8, 1, 1) and np.all(values["shift_fill_1"] == 0.25)
    assert "OC2_DUMMY_2" not in values, "initializers only the folded nodes read are dropped"
    assert "ConstantOfShape" in what and "Add" in what
    images = random_images()
    assert_same(run(changed, images), run(original, images))


@pytest.mark.parametrize("target", [[1, 144], [1, -1]])
def test_a_fixed_batch_is_freed_with_the_reshape_target_that_holds_it(target):
    original = old_alexnet("inputs", 9)
    for tensor in original.graph.initializer:
        if tensor.name == "OC2_DUMMY_1":
            tensor.CopyFrom(numpy_helper.from_array(np.array(target, np.int64), "OC2_DUMMY_1"))
    plain, _ = weights_out_of_inputs(original)
    changed, what = free_batch(plain)
    assert changed.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    reshape = next(node for node in changed.graph.node if node.op_type == "Reshape")
    new_target = next(t for t in changed.graph.initializer if t.name == reshape.input[1])
    assert numpy_helper.to_array(new_target).tolist() == [-1, 144] and "batch fixed at 1" in what
    images = random_images(3)
    assert_same(run(changed, images), run(original, images))   # the original image by image


@pytest.mark.parametrize("builder", [old_squeezenet, old_densenet])
def test_a_spatial_output_is_squeezed_to_rows_of_scores(builder):
    original = builder("inputs", 9)
    changed, what = squeeze_spatial_output(original)
    output = changed.graph.output[0]
    assert output.name == original.graph.output[0].name and len(output.type.tensor_type.shape.dim) == 2
    assert any(node.op_type == "Flatten" for node in changed.graph.node) and "1×5×1×1" in what
    last = [node.op_type for node in changed.graph.node][-2:]
    # SqueezeNet's Softmax gets rows (a Softmax over a 4-D input would come out of the opset converter as Shape,
    # Flatten, Softmax, Reshape to the runtime shape: a network torch.export cannot export); DenseNet's head is flattened.
    assert last == (["Flatten", "Softmax"] if builder is old_squeezenet else ["Conv", "Flatten"]), last
    images = random_images()
    got = run(changed, images)
    assert got.shape == (1, 5)
    assert_same(got, run(original, images))
    assert squeeze_spatial_output(old_alexnet()) is None, "one row of scores already"


def test_a_step_whose_graph_differs_from_the_original_is_left_out_with_its_reason(monkeypatch):
    def scaled(model):
        changed, _ = weights_out_of_inputs(model)
        for tensor in changed.graph.initializer:
            if tensor.name == "fc6_b_0":  # (not fc7: a shift before Softmax changes nothing)
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + 1.0, "fc6_b_0"))
        return changed, "weights changed"

    def broken(model):
        raise RuntimeError("no such thing")

    monkeypatch.setattr(normalise, "STEPS", (("weights_out_of_inputs", scaled), ("fold_constants", broken),
                                             ("free_batch", free_batch)))
    original = old_alexnet("inputs", 9)
    result = normalise_graph(original, (32, 32))
    assert "differs from the original's by" in result.not_used["weights_out_of_inputs"]
    assert result.not_used["fold_constants"] == "it failed (no such thing)"
    assert list(result.applied) == ["free_batch"]
    images = random_images(2)
    assert_same(run(result.model, images), run(original, images))


# ----------------------------------------------------------------------------------------------- the whole way


@pytest.mark.parametrize("weights", WEIGHT_STYLES)
@pytest.mark.parametrize("opset", OLD_OPSETS)
@pytest.mark.parametrize("network", list(BUILDERS))
def test_old_style_graphs_normalise_and_convert_to_torch_giving_onnxruntimes_outputs(network, opset, weights):
    original = BUILDERS[network](weights, opset)
    result = normalise_graph(original, (32, 32))
    assert result.not_used == {}, result.not_used
    expected_steps = {"free_batch"} | ({"squeeze_spatial_output"} if network in ("squeezenet", "densenet") else set())
    assert expected_steps <= set(result.applied), result.applied
    listed = {value.name for value in original.graph.input} & {t.name for t in original.graph.initializer}
    assert ("weights_out_of_inputs" in result.applied) == bool(listed)
    assert ("fold_constants" in result.applied) == any(node.op_type == "Constant" for node in original.graph.node)
    images = random_images(3, seed=opset)
    expected = run(original, images)                     # the original, one image at a time
    assert_same(run(result.model, images), expected)     # the normalised graph, three at once
    module = torch_module(result.model)
    assert last_linear(module) is not None, "a dense head for a run to replace"
    with torch.no_grad():
        assert_same(module(torch.from_numpy(images)).numpy(), expected)


def test_a_third_party_graph_imports_as_converted_and_a_run_starts_from_it(tmp_path):
    path = save_onnx(old_squeezenet("mixed", 9, channels=1), tmp_path / "squeezenet.onnx")
    facts = inspect_onnx(str(path))
    assert facts["class_count"] == 5 and facts["inputs"][0]["shape"] == [1, 1, 32, 32]
    result = import_onnx(path, facts)
    assert result.mode == "converted", result.reason
    assert "Its graph was normalised first" in result.reason and "flattened" in result.reason
    assert set(result.details["normalisation"]["applied"]) == {"weights_out_of_inputs", "fold_constants", "free_batch",
                                                               "squeeze_spatial_output"}
    assert result.details["max_difference"] <= 1e-4
    images = torch.rand(4, 1, 32, 32)
    expected = run(onnx.load(str(path)), images.numpy())
    with torch.no_grad():
        assert_same(onnx_network(path).eval()(images).numpy(), expected)   # rebuilt from the file: the same steps
    model = starting_model({"architecture": "imported", "weights": "imported"}, 1, 2, ModelStart(onnx_path=str(path)), seed=1)
    scores = model.train()(images)
    assert scores.shape == (4, 2)
    torch.nn.functional.cross_entropy(scores, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), "every layer trains"


@pytest.mark.parametrize("builder", [old_alexnet, old_densenet])
def test_old_style_imports_convert_at_every_opset(tmp_path, builder):
    for opset in OLD_OPSETS:
        path = save_onnx(builder("inputs", opset), tmp_path / f"{builder.__name__}-{opset}.onnx")
        result = import_onnx(path, inspect_onnx(str(path)))
        assert result.mode == "converted", (opset, result.reason)
        assert f"opset {opset} converted to 13" in result.reason


# ----------------------------------------------------------------------------------------------- what still fails


def test_an_operator_onnx2torch_lacks_is_named_and_the_model_stays_prediction_only(tmp_path):
    path = save_onnx(old_squeezenet("inputs", 9, pool="GlobalLpPool"), tmp_path / "lp.onnx")
    result = import_onnx(path, inspect_onnx(str(path)))
    assert result.mode == "prediction_only"
    assert "onnx2torch has no converter for the operation 'GlobalLpPool'" in result.reason, result.reason
    assert "node 'pool10'" in result.reason and "It can still predict through onnxruntime" in result.reason
    assert "squeeze_spatial_output" in result.details["normalisation"]["applied"]
    picture = tmp_path / "x.png"
    picture.write_bytes(png_bytes((np.arange(40 * 40).reshape(40, 40) % 256).astype(np.uint8)))
    answer = predict_image(str(path), str(picture), 3, 32, 32)
    assert len(answer["outputs"]) == 5 and np.isclose(sum(answer["probabilities"]), 1), "it predicts through onnxruntime"


def test_a_converter_that_finds_no_constant_weight_names_the_node_and_its_input():
    """A convolution whose weights are computed in the graph (here: given as an input) is named, not a bare KeyError."""
    nodes = [helper.make_node("Conv", ["image", "w"], ["y"], name="conv_a", kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 4, 4]),
                                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    reason = conversion_failure(model, KeyError("w"))
    assert "'Conv'" in reason and "node 'conv_a'" in reason and "input 'w'" in reason and "constant weight" in reason, reason


class PointwiseHead(torch.nn.Module):
    """A network whose head is a dense layer over each position's channels (what a converted SqueezeNet is after
    fine-tuning): torch.export writes it as MatMul + Add, not Gemm."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.head = torch.nn.Linear(6, 4)

    def forward(self, images):
        x = self.head(torch.relu(self.conv(images)).movedim(1, -1)).movedim(-1, 1)
        return torch.relu(x).mean(dim=(2, 3))


def test_a_matmul_and_add_head_is_taken_as_a_dense_layer(tmp_path):
    from workers.engine.export import export_onnx

    torch.manual_seed(0)
    original = PointwiseHead().eval()
    path = tmp_path / "pointwise.onnx"
    export_onnx(original, torch.rand(2, 1, 16, 16), path)
    assert "MatMul" in {node.op_type for node in onnx.load(str(path)).graph.node}
    result = import_onnx(path, inspect_onnx(str(path)))
    assert result.mode == "converted", result.reason
    network = onnx_network(path).eval()
    head = network.get_submodule(last_linear(network))
    assert (head.in_features, head.out_features) == (6, 4) and head.bias is not None
    images = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert (network(images) - original(images)).abs().max() < 1e-5

"""The engine's side of model imports, without Django: recognising zoo networks in ONNX files of both exporters
(names kept or not, BatchNorm folded or not), the normalisation at a graph's start, the normalisation given at import,
and the checks that find weights kept outside the file."""
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tests.model_files import zoo_onnx
from workers.engine.call import Refusal
from workers.engine.export import onnx_predict
from workers.engine.zoo.conversion import import_onnx
from workers.engine.zoo.imports import external_tensors, inspect_onnx
from workers.engine.zoo.networks import ZooModel, build_network
from workers.engine.zoo.start import ModelStart, from_earlier_model


def torchscript_export(model, path, channels=1, side=32):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(1, channels, side, side),), str(path), dynamo=False, opset_version=13,
                          input_names=["input"], dynamic_axes={"input": {0: "n"}})
    return path


def copied_model(result, channels, classes) -> ZooModel:
    return from_earlier_model(result.architecture, result.state, channels, classes).eval()


def test_a_torchscript_export_with_folded_batchnorm_and_lost_names_is_matched_by_order(tmp_path):
    torch.manual_seed(3)
    original = build_network("small_cnn", 1, 4, pretrained=None)
    with torch.no_grad():
        for module in original.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    path = torchscript_export(original, tmp_path / "legacy.onnx")
    assert any(t.name.startswith("onnx::Conv") for t in onnx.load(str(path)).graph.initializer), "the exporter renamed folded weights"
    result = import_onnx(path, inspect_onnx(str(path)))
    assert (result.mode, result.architecture, result.details["matched"]) == ("weights_copied", "small_cnn", "by order and shape")
    assert result.details["folded_batchnorm"] == 3
    images = torch.rand(6, 1, 32, 32)
    with torch.no_grad():
        assert (copied_model(result, 1, 4)(images) - original.eval()(images)).abs().max() < 1e-5


def test_the_normalisation_at_the_graphs_start_becomes_the_models_mean_and_std(tmp_path):
    torch.manual_seed(1)
    network = build_network("lenet5", 3, 2).network
    model = ZooModel(network, [0.2, 0.3, 0.4], [0.5, 0.25, 2.0])
    path = torchscript_export(model, tmp_path / "normalised.onnx", channels=3)
    result = import_onnx(path, inspect_onnx(str(path)))
    assert result.mode == "weights_copied"
    assert np.allclose(result.details["normalisation_in_file"]["mean"], [0.2, 0.3, 0.4])
    assert np.allclose(result.details["normalisation_in_file"]["std"], [0.5, 0.25, 2.0])
    assert torch.allclose(result.state["mean"].flatten(), torch.tensor([0.2, 0.3, 0.4]))


def test_a_normalisation_given_at_import_goes_in_front_of_the_file(tmp_path):
    """A file that expects normalised images: the copied model takes [0, 1] images and normalises them itself."""
    torch.manual_seed(2)
    network = build_network("lenet5", 1, 3).network
    path = torchscript_export(network, tmp_path / "bare.onnx")
    result = import_onnx(path, inspect_onnx(str(path)), mean=[0.45], std=[0.2])
    assert result.mode == "weights_copied" and torch.allclose(result.state["mean"].flatten(), torch.tensor([0.45]))
    images = torch.rand(3, 1, 32, 32)
    expected = onnx_predict_input(path, ((images - 0.45) / 0.2).numpy())
    with torch.no_grad():
        assert np.abs(copied_model(result, 1, 3)(images).numpy() - expected).max() < 1e-4


def onnx_predict_input(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]


def test_a_converted_model_is_rebuilt_from_its_file_with_a_new_head(tmp_path):
    from tests.model_files import custom_onnx

    original, path = custom_onnx(tmp_path / "custom.onnx", classes=3)
    kept = ModelStart(onnx_path=str(path))
    from workers.engine.zoo.start import starting_model

    same = starting_model({"architecture": "imported", "weights": "imported"}, 1, 3, kept).eval()
    images = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        assert torch.allclose(same(images), original(images), atol=1e-5)
    assert onnx_predict(path, images.numpy()).shape == (2, 3)
    grey_to_five = starting_model({"architecture": "imported", "weights": "imported"}, 1, 5, kept, seed=1)
    assert grey_to_five(images).shape == (2, 5)


def test_weights_kept_outside_the_file_are_found_anywhere_in_the_graph(tmp_path):
    outside = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    outside.data_location = TensorProto.EXTERNAL
    outside.ClearField("float_data")
    outside.external_data.add(key="location", value="/etc/passwd")
    then_graph = helper.make_graph([helper.make_node("Constant", [], ["c"], value=outside)], "then", [],
                                   [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])])
    else_graph = helper.make_graph([helper.make_node("Constant", [], ["d"], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [1.0]))],
                                   "else", [], [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["flag"], ["out"], then_branch=then_graph, else_branch=else_graph)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert external_tensors(model) == ["w"]
    path = tmp_path / "outside.onnx"
    onnx.save(model, str(path))
    with pytest.raises(Refusal, match="external data outside the upload"):
        inspect_onnx(str(path))


def test_the_toolkits_own_export_is_recognised_by_name(tmp_path):
    original, path = zoo_onnx(tmp_path / "own.onnx", "lenet5", 1, 3, 32)
    result = import_onnx(path, inspect_onnx(str(path)))
    assert (result.mode, result.architecture, result.details["matched"]) == ("weights_copied", "lenet5", "by name")
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert (copied_model(result, 1, 3)(images) - original(images)).abs().max() < 1e-5
    assert np.abs(onnx_predict(path, images.numpy()) - original(images).detach().numpy()).max() < 1e-4

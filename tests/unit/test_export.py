"""The exported files: ONNX with its metadata, usable by plain onnxruntime outside the toolkit (another batch size,
the same classes); safetensors with the same metadata; the parity check, which fails when the file and the model
differ; one file, always."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import uses_external_data
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from workers.engine.demo import demo_subsets
from workers.engine.export import (
    INPUT_NAME,
    METADATA_KEYS,
    OUTPUT_NAME,
    PARITY_TOLERANCE,
    ExportTooLarge,
    ModelFacts,
    check_fits_one_file,
    export_onnx,
    model_metadata,
    parity_check,
    probabilities_of,
    write_safetensors,
)
from workers.engine.observer import SilentObserver
from workers.engine.tasks import task_for
from workers.engine.training.run import train
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import TrainingData
from workers.engine.zoo.networks import build_network

SPEC = {"epochs": 2, "batch_size": 16}
PIPELINES = [{"dataset": 7, "pipeline": 3, "name": "Crop and window", "version": 2,
              "steps": [{"op": "window", "params": {"center": 40, "width": 400}}]}]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    train_set, validation, test, classes = demo_subsets(tmp_path_factory.mktemp("demo"), per_class=40)
    return TrainingData(train_set, validation, 1, classes), test


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    """A small CNN trained for two epochs on the demo set, exported as the worker exports it."""
    data, _ = demo
    spec = resolve_spec(SPEC)
    model = train(spec, data, SilentObserver(), tmp_path_factory.mktemp("checkpoints")).kept_model()
    facts = ModelFacts(architecture="small_cnn", task=task_for("classification", data.classes), input_shape=(1, 64, 64), spec=spec.to_dict(),
                       probabilities=probabilities_of(spec.loss), preprocessing=PIPELINES, run_id=12, run_name="Lesions v1",
                       toolkit_version="abc1234")
    metadata = model_metadata(model, facts)
    folder = tmp_path_factory.mktemp("export")
    example = torch.stack([data.train[i]["image"] for i in range(2)])
    return model, metadata, export_onnx(model, example, folder / "model.onnx", metadata), folder


def images_of(subset) -> torch.Tensor:
    return torch.stack([subset[i]["image"] for i in range(len(subset))])


def test_the_onnx_file_carries_what_a_user_needs_in_its_metadata(exported):
    model, _, path, _ = exported
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert tuple(props) == METADATA_KEYS
    assert json.loads(props["classes"]) == ["lesion", "normal"]
    assert json.loads(props["input_shape"]) == [1, 64, 64] and props["channels"] == "1"
    assert props["input_name"] == INPUT_NAME and props["output_name"] == OUTPUT_NAME
    assert json.loads(props["mean"]) == model.mean.flatten().tolist() and json.loads(props["std"]) == model.std.flatten().tolist()
    assert json.loads(props["training_spec"]) == resolve_spec(SPEC).to_dict()
    preprocessing = json.loads(props["preprocessing"])
    assert preprocessing["pipelines"] == PIPELINES and "divided by 255" in preprocessing["image_to_input"]
    assert props["architecture"] == "small_cnn" and props["toolkit_version"] == "abc1234"
    assert props["run_id"] == "12" and props["run_name"] == "Lesions v1" and props["probabilities"] == "softmax"
    assert "float32 (N, 1, 64, 64)" in props["description"] and "[0, 1]" in props["description"]
    assert proto.doc_string == props["description"]
    shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["batch", 1, 64, 64], "the batch axis is dynamic, the rest as trained"
    onnx.checker.check_model(proto)


def test_the_onnx_file_is_one_self_contained_file(exported):
    _, _, path, folder = exported
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(uses_external_data(tensor) for tensor in proto.graph.initializer)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]


# Runs with `python -I`: no toolkit folder on the path, so nothing of the toolkit can be imported.
OUTSIDE_THE_TOOLKIT = """
import json, sys
import numpy as np, onnx, onnxruntime

path, images = sys.argv[1], np.load(sys.argv[2])
meta = {p.key: p.value for p in onnx.load(path).metadata_props}
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
logits = session.run([meta["output_name"]], {meta["input_name"]: images})[0]
classes = json.loads(meta["classes"])
print(json.dumps({"classes": [classes[i] for i in logits.argmax(1)], "input": session.get_inputs()[0].shape,
                  "toolkit_or_torch": sorted({m.split(".")[0] for m in sys.modules} & {"workers", "backend", "torch"})}))
"""


def test_plain_onnxruntime_outside_the_toolkit_gives_the_toolkits_classes_at_another_batch_size(exported, demo, tmp_path):
    model, _, path, _ = exported
    _, test = demo
    both = [i for label in (0, 1) for i in (test.targets == label).nonzero().flatten()[:3].tolist()]
    images = torch.stack([test[i]["image"] for i in both])  # six: exported with an example of two
    np.save(tmp_path / "images.npy", images.numpy())
    done = subprocess.run([sys.executable, "-I", "-c", OUTSIDE_THE_TOOLKIT, str(path), str(tmp_path / "images.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outside = json.loads(done.stdout)
    with torch.no_grad():
        expected = [["lesion", "normal"][i] for i in model(images).argmax(1).tolist()]
    assert outside["classes"] == expected and len(set(expected)) == 2, "images of both classes, told apart"
    assert outside["input"] == ["batch", 1, 64, 64]
    assert outside["toolkit_or_torch"] == []


def test_the_safetensors_file_holds_the_state_dict_and_the_same_metadata(exported, tmp_path):
    model, metadata, path, _ = exported
    written = write_safetensors(model, metadata, tmp_path / "model.safetensors")
    tensors = load_file(str(written))
    assert tensors.keys() == model.state_dict().keys()
    assert all(torch.equal(tensors[key], value) for key, value in model.state_dict().items())
    with safe_open(str(written), "pt") as handle:
        header = handle.metadata()
    assert header == {"format": "pt", **metadata}
    assert {k: v for k, v in header.items() if k != "format"} == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    rebuilt = build_network("small_cnn", 1, 2)
    rebuilt.load_state_dict(tensors)  # the zoo's own network takes it back, key for key


def test_the_parity_check_passes_on_validation_images(exported, demo):
    model, _, path, _ = exported
    data, _ = demo
    check = parity_check(model, path, images_of(data.validation))
    assert check["passed"] and check["same_predictions"] and check["images"] == 12 and check["subset"] == "validation"
    assert 0 <= check["max_abs_difference"] <= PARITY_TOLERANCE


def test_the_parity_check_fails_when_the_file_is_not_the_model(exported, demo):
    model, _, path, _ = exported
    data, _ = demo
    other = build_network("small_cnn", 1, 2)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.network.head.bias.copy_(torch.tensor([5.0, -5.0]))  # every image now "lesion" in PyTorch, not in the file
    check = parity_check(other, path, images_of(data.validation))
    assert not check["passed"] and not check["same_predictions"] and check["max_abs_difference"] > 1


def test_a_batch_of_one_still_exports_a_dynamic_batch_axis_through_the_models_resize(tmp_path):
    torch.manual_seed(0)
    model = build_network("small_cnn", 3, 4, input_size=32).eval()
    path = export_onnx(model, torch.rand(1, 3, 48, 40), tmp_path / "model.onnx")
    images = torch.rand(3, 3, 48, 40)
    check = parity_check(model, path, images)
    assert check["passed"] and check["images"] == 3
    assert not onnx.load(str(path)).metadata_props, "no metadata unless given"


def test_the_probabilities_follow_the_loss():
    assert probabilities_of(resolve_spec({}).loss) == "softmax"
    assert probabilities_of(resolve_spec({"loss": {"name": "focal"}}).loss) == "softmax"
    assert probabilities_of(resolve_spec({"loss": {"name": "bce"}}).loss) == "sigmoid"


def test_a_model_past_the_protobuf_limit_is_refused_not_split():
    huge = nn.Linear(2**15, 2**14 + 1, device="meta")  # 2 GiB of float32 weights, none of them allocated
    with pytest.raises(ExportTooLarge, match="2 GiB"):
        check_fits_one_file(huge)
    check_fits_one_file(nn.Linear(2**10, 2**10, device="meta"))

"""A segmentation network started from an earlier run's (workers/engine/zoo/start.py from_earlier_map_model): with the
same labels everything is carried over; with other labels every tensor shaped by the label count is drawn anew
(found by building the network for two label counts: the output convolutions, spread over a U-Net's last block)
and the rest carried; other channels adapt the first layer; a network built from a plan (DynUNet) is rebuilt from it."""
import math

import torch

from workers.engine.zoo.networks import build_network
from workers.engine.zoo.start import ModelStart, from_earlier_map_model, label_shaped_keys, starting_model


def state_of(name: str, labels: int, plan=None, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return build_network(name, 1, labels, plan=plan).state_dict()


def test_the_same_labels_carry_every_tensor_and_a_prediction_is_unchanged():
    state = state_of("unet_2d", 3)
    labels = ("background", "disc", "square")
    model = from_earlier_map_model("unet_2d", state, 1, 3, its_classes=labels, classes=labels).eval()
    earlier = build_network("unet_2d", 1, 3)
    earlier.load_state_dict(state)
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), earlier.eval()(image))


def test_other_labels_draw_the_output_layers_anew_and_carry_the_rest():
    state = state_of("unet_2d", 3)
    shaped = label_shaped_keys("unet_2d", None)
    assert shaped == {"model.2.0.conv.weight": 1, "model.2.0.conv.bias": 0, "model.2.1.conv.unit0.conv.weight": 0,
                      "model.2.1.conv.unit0.conv.bias": 0}, "a U-Net's last up-convolution and its last unit"
    model = from_earlier_map_model("unet_2d", state, 1, 4, its_classes=("background", "a", "b"),
                                   classes=("background", "a", "b", "c"))
    fitted = model.network.state_dict()
    assert fitted["model.2.0.conv.weight"].shape[1] == 4
    for key, value in state.items():
        key = key.removeprefix("network.")
        if key in fitted and key not in shaped:
            assert torch.equal(fitted[key], value), key
    # The same labels in another order are other outputs: drawn anew too (the background first, then by value).
    reordered = from_earlier_map_model("unet_2d", state, 1, 3, its_classes=("background", "a", "b"),
                                       classes=("background", "b", "a")).network.state_dict()
    assert not torch.equal(reordered["model.2.0.conv.bias"], state["network.model.2.0.conv.bias"])


def test_the_label_count_is_read_off_the_weights_when_the_names_are_not_known_and_channels_adapt():
    state = state_of("segresnet_3d", 4)
    model = from_earlier_map_model("segresnet_3d", state, 2, 2)
    with torch.no_grad():
        assert model(torch.randn(1, 2, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_a_network_shaped_by_the_plan_is_rebuilt_from_it():
    plan = {"patch_size": [16, 64, 64], "target_spacing": [3.0, 1.0, 1.0]}
    state = state_of("dynunet_3d", 3, plan)
    earlier = ("background", "bright", "dark")
    model = from_earlier_map_model("dynunet_3d", state, 1, 3, plan, its_classes=earlier, classes=earlier)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    # Through the engine's entry point, as a run starting from another with one label more reads it.
    path_state = {key: value for key, value in state.items()}
    fitted = from_earlier_map_model("dynunet_3d", path_state, 1, 4, plan, its_classes=earlier, classes=(*earlier, "rim"))
    with torch.no_grad():
        assert fitted.eval()(torch.randn(1, 1, 16, 64, 64)).shape == (1, 4, 16, 64, 64)


def test_starting_model_takes_the_map_route_for_a_segmentation_network(tmp_path):
    state = state_of("unet_3d", 3)
    torch.save(state, tmp_path / "earlier.pt")
    labels = ("background", "bright", "dark")
    model = starting_model({"architecture": "unet_3d", "weights": "run"}, 1, 3,
                           ModelStart(state_path=str(tmp_path / "earlier.pt"), classes=labels), classes=labels)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())


def test_the_rate_finder_sweeps_a_segmentation_network_on_its_masks(tmp_path):
    """The finder drives the Trainer's own step, so a U-Net on masks sweeps as a classifier does: the Dice + CE loss
    falls from its start, then blows up at too large a rate; a rate is suggested."""
    from workers.engine.demo import demo_shapes_subsets
    from workers.engine.training.finder import find_learning_rate
    from workers.engine.training.spec import fitted_to_subset
    from workers.engine.training.trainer import TrainingData

    train_set, validation, _, classes, plan = demo_shapes_subsets(tmp_path, count=24)
    data = TrainingData(train_set, validation, 1, classes, dims=2, window=tuple(plan["patch_size"]))
    spec = fitted_to_subset({"task": "segmentation", "data": {"plan": plan}, "batch_size": 4}, len(train_set))
    found = find_learning_rate(spec, data)
    losses = [loss for loss in found["losses"] if loss is not None and math.isfinite(loss)]
    assert len(losses) >= 20 and min(losses) < losses[0], found
    assert found["suggestion"] is not None and 1e-6 < found["suggestion"] < 1, found


def test_an_imported_file_of_a_segmentation_networks_weights_is_read_and_starts_a_run(tmp_path):
    """A safetensors file of a U-Net (as the toolkit writes them, or anyone saving a MONAI U-Net under our keys): its
    channels and label count are read off the first convolution and the output layer (a map network has no single
    head), its label names off the metadata; a run starts from it as from an earlier run. DynUNet's weights alone do
    not say how to build it: refused with the reason."""
    import json

    import pytest

    from workers.engine.call import Refusal
    from workers.engine.export import write_safetensors
    from workers.engine.training.spec import SpecInvalid, resolve_spec
    from workers.engine.zoo.imports import inspect_safetensors

    labels = ("background", "liver", "tumour")
    torch.manual_seed(3)
    network = build_network("unet_3d", 1, 3)
    path = write_safetensors(network, {"classes": json.dumps(labels)}, tmp_path / "unet.safetensors")
    facts = inspect_safetensors(str(path), "unet_3d")
    assert (facts["channels"], facts["class_count"], facts["classes"]) == (1, 3, list(labels))
    with pytest.raises(Refusal, match="another|not"):
        inspect_safetensors(str(path), "unet_2d")  # a 3D network's weights are not a 2D one's
    model = starting_model({"architecture": "unet_3d", "weights": "imported"}, 1, 3,
                           ModelStart(state_path=str(path), classes=labels), classes=labels)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in network.state_dict().items())

    dynunet = build_network("dynunet_3d", 1, 3, plan={"patch_size": [16, 64, 64], "target_spacing": [3.0, 1.0, 1.0]})
    planned = write_safetensors(dynunet, {}, tmp_path / "dynunet.safetensors")
    with pytest.raises(Refusal, match="built from a dataset's plan"):
        inspect_safetensors(str(planned), "dynunet_3d")
    spec = {"task": "segmentation", "model": {"architecture": "unet_3d", "weights": "imported", "imported_model": 1}}
    assert resolve_spec(spec)["model"]["weights"] == "imported"
    with pytest.raises(SpecInvalid) as refused:
        resolve_spec({**spec, "model": {**spec["model"], "architecture": "dynunet_3d"}})
    assert "built from the plan" in refused.value.errors["model.weights"]


def test_a_dynunet_run_exports_its_weights_and_onnx_file(tmp_path):
    """DynUNet registers its stages twice (its stages and its skip chain share tensors): safetensors refused the aliases,
    which ended a DynUNet run at its export. Each shared tensor is written once more; the file loads back whole, and
    the ONNX export with dynamic sides agrees with PyTorch."""
    from safetensors.torch import load_file

    from workers.engine.export import export_onnx, parity_check, write_safetensors

    plan = {"patch_size": [16, 32, 32], "target_spacing": [3.0, 1.0, 1.0]}
    torch.manual_seed(0)
    model = build_network("dynunet_3d", 1, 3, plan=plan).eval()
    path = write_safetensors(model, {"task": "segmentation"}, tmp_path / "dynunet.safetensors")
    again = build_network("dynunet_3d", 1, 3, plan=plan).eval()
    again.load_state_dict(load_file(str(path)))
    images = torch.randn(2, 1, 16, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(images), model(images))
    onnx = export_onnx(model, images, tmp_path / "dynunet.onnx", {"task": "segmentation"}, dynamic_sides=True)
    assert parity_check(model, onnx, images)["passed"]

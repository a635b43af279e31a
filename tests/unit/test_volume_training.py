"""3D classification on generated CT volumes with the defaults: the trainer, the task's sliding window, the export."""
import numpy as np
import pytest
import torch

from workers.engine.demo import demo_volume_subsets
from workers.engine.export import export_onnx, onnx_predict
from workers.engine.training.evaluation import measured
from workers.engine.training.run import train
from workers.engine.training.spec import fitted_to_subset
from workers.engine.training.trainer import TrainingData


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    train_set, validation, test, classes, plan = demo_volume_subsets(tmp_path_factory.mktemp("volumes"), per_class=40)
    data = TrainingData(train_set, validation, 1, classes, dims=3, window=tuple(plan["patch_size"]))
    return data, test, plan


def test_the_default_3d_network_learns_generated_ct_volumes_to_90_percent(volumes, tmp_path):
    data, test, plan = volumes
    settings = {"model": {"architecture": "small_cnn_3d"}, "data": {"plan": plan}}
    spec = fitted_to_subset(settings, len(data.train))
    outcome = train(spec, data)
    model = outcome.kept_model()
    figures = measured(model, test, spec, data.classes, dims=3, window=data.window)
    assert figures["accuracy"] >= 0.9, figures
    # The exported graph takes a batch of patches; onnxruntime agrees with PyTorch on them.
    patches = torch.stack([data.validation.as_patches()[i]["image"] for i in range(3)])
    path = export_onnx(model, patches[:2], tmp_path / "model.onnx")
    with torch.no_grad():
        expected = model(patches).numpy()
    assert np.abs(onnx_predict(path, patches.numpy()) - expected).max() < 1e-4


def test_a_whole_volume_larger_than_the_patch_is_predicted_window_by_window(volumes):
    data, test, plan = volumes
    spec = fitted_to_subset({"model": {"architecture": "small_cnn_3d"}, "epochs": 1,
                             "data": {"plan": {**plan, "patch_size": [16, 16, 16]}}}, len(data.train))
    model = train(spec, TrainingData(data.train, data.validation, 1, data.classes, dims=3, window=(16, 16, 16))).kept_model()
    predictions = []
    figures = measured(model, test, spec, data.classes, dims=3, window=(16, 16, 16), predictions=predictions)
    assert len(predictions) == len(test) and {"loss", "accuracy"} <= set(figures)
    assert all(len(p["probabilities"]) == 2 for p in predictions)

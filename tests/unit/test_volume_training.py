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


def test_a_stopped_3d_run_resumes_exactly_and_the_rate_finder_sweeps_volumes(volumes, tmp_path):
    """Patches are drawn from (seed, epoch, position) and the augmentation with them, so a resumed run records what an
    uninterrupted one does, as in 2D; the rate finder reads the same patches."""
    from tests.unit.test_training import StopAfter, series
    from workers.engine.observer import SilentObserver
    from workers.engine.pipelines import Pipeline
    from workers.engine.training.finder import find_learning_rate

    data, _, plan = volumes
    data.train.augment = Pipeline.from_steps([{"op": "flip", "params": {"axis": "left-right"}},
                                              {"op": "rotate", "params": {"degrees": [-10, 10]}}])
    try:
        spec = fitted_to_subset({"model": {"architecture": "small_cnn_3d"}, "epochs": 2, "data": {"plan": plan}}, len(data.train))
        whole = SilentObserver()
        train(spec, data, whole, tmp_path / "whole")
        interrupted = StopAfter(3)
        assert train(spec, data, interrupted, tmp_path / "parted").ended == "stopped"
        resumed = SilentObserver()
        assert train(spec, data, resumed, tmp_path / "parted", resume=True).ended == "finished"
        parted, uninterrupted = {**series(interrupted), **series(resumed)}, series(whole)
        assert parted.keys() == uninterrupted.keys()
        assert max(abs(parted[key] - value) for key, value in uninterrupted.items()) <= 1e-5
        found = find_learning_rate(spec, data, steps=12)
        assert len(found["rates"]) >= 3 and all(loss == loss for loss in found["losses"])
    finally:
        data.train.augment = None

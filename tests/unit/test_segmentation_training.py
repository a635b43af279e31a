"""Segmentation trained through the engine's own train() with the defaults (issue 23's acceptance at the engine
level): generated 2D images of discs and squares, and generated anisotropic volumes of two blobs, each stored with
their masks, planned, trained on patches (a third centred on a label), validated on whole samples by sliding window,
and measured on their test subset; the kept 2D model exports to ONNX with dynamic sides and passes the parity check."""
import numpy as np
import torch

from workers.engine.demo import demo_blob_subsets, demo_shapes_subsets
from workers.engine.export import export_onnx, onnx_predict, parity_check
from workers.engine.tasks import task_for
from workers.engine.training.evaluation import measured
from workers.engine.training.run import train
from workers.engine.training.spec import fitted_to_subset
from workers.engine.training.trainer import TrainingData


def trained(subsets):
    train_set, validation, test, classes, plan = subsets
    data = TrainingData(train_set, validation, 1, classes, dims=plan["dims"], window=tuple(plan["patch_size"]))
    spec = fitted_to_subset({"task": "segmentation", "data": {"plan": plan}}, len(train_set))
    model = train(spec, data).kept_model()
    return model, spec, data, test


def test_generated_2d_shapes_are_outlined_to_a_mean_dice_of_0_9(tmp_path):
    model, spec, data, test = trained(demo_shapes_subsets(tmp_path, count=60))
    assert spec["model"]["architecture"] == "unet_2d" and spec["monitor"] == "validation.mean_dice"
    predictions = []
    figures = measured(model, test, spec, data.classes, dims=2, window=data.window, predictions=predictions)
    assert figures["mean_dice"] >= 0.9, figures
    assert len(predictions) == len(test) and set(predictions[0]["dice"]) == {"disc", "square"}
    # The export: dynamic sides, metadata of a segmentation, parity with PyTorch on validation images.
    images = torch.stack([data.validation[i]["image"] for i in range(len(data.validation))])
    task = task_for("segmentation", data.classes, 2, window=data.window)
    path = export_onnx(model, images[:2], tmp_path / "model.onnx", task.export_metadata(), dynamic_sides=task.spatial_output)
    assert parity_check(model, path, images)["passed"]
    larger = torch.nn.functional.pad(images[:1], (0, 32, 0, 16))
    with torch.no_grad():
        assert np.abs(onnx_predict(path, larger.numpy()) - model(larger).numpy()).max() < 1e-4


def test_generated_anisotropic_volumes_are_outlined_to_a_mean_dice_of_0_85(tmp_path):
    subsets = demo_blob_subsets(tmp_path, count=30)
    plan = subsets[4]
    assert plan["target_spacing"] == [3.0, 1.0, 1.0]
    model, spec, data, test = trained(subsets)
    assert spec["model"]["architecture"] == "unet_3d"
    assert any(tuple(test[i]["image"].shape[1:]) != data.window for i in range(len(test))), "some test volume is slid over"
    figures = measured(model, test, spec, data.classes, dims=3, window=data.window)
    assert figures["mean_dice"] >= 0.85, figures


def test_real_brain_tissue_is_outlined_from_cubes_of_the_mni_template(tmp_path):
    """Data we did not make: nilearn's MNI T1 template at 2 mm, cut into 24 mm cubes (those at least 15% brain), labelled
    grey and white matter by the template's own probability maps (tests/real_data.py). The defaults reached a test mean
    Dice of 0.80 (grey 0.84, white 0.77) in about 30 s of training on two CPU cores; the floor here is 0.7. The cubes
    come from one brain, so the test cubes are unseen places of it, not an unseen patient."""
    from tests.real_data import mni_brain
    from workers.engine.demo import planned_segmentation_subsets

    t1, labels, _ = mni_brain(2)
    side, samples = 24, []
    for x in range(0, t1.shape[0] - side + 1, side):
        for y in range(0, t1.shape[1] - side + 1, side):
            for z in range(0, t1.shape[2] - side + 1, side):
                region = (slice(x, x + side), slice(y, y + side), slice(z, z + side))
                if (labels[region] > 0).mean() >= 0.15:  # (x, y, z) to the store's (slice, row, column)
                    samples.append((np.ascontiguousarray(t1[region].T).astype(np.int16), np.ascontiguousarray(labels[region].T)))
    assert len(samples) == 26
    model, spec, data, test = trained(planned_segmentation_subsets(tmp_path, samples, [(2.0, 2.0, 2.0)] * len(samples),
                                                                   ("background", "grey", "white")))
    figures = measured(model, test, spec, data.classes, dims=3, window=data.window)
    assert figures["mean_dice"] >= 0.7, figures

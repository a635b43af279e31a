"""Segmentation's engine (issue 23): the task's tally and metrics against hand-worked values and MONAI's DiceMetric,
empty references as Metrics Reloaded advises, the losses and networks the spec accepts for segmentation only (and the
reverse), DynUNet's topology from the plan as nnU-Net chooses it, the data path's masks and foreground patches, the
sliding window, and the ONNX export with dynamic sides."""
import numpy as np
import pytest
import torch

from workers.engine.tasks import METRICS, metrics_of, task_for
from workers.engine.tasks.segmentation.tally import SegmentationOutcome
from workers.engine.training.losses import LOSSES, LossContext
from workers.engine.training.spec import SpecInvalid, resolve_spec
from workers.engine.zoo.networks import build_network
from workers.engine.zoo.registry import MODELS
from workers.engine.zoo.segmentation import divisor_of, dynunet_topology

CLASSES = ["background", "liver", "tumour"]
SEGMENTERS = [name for name, entry in MODELS.items() if entry.task == "segmentation"]


def logits_of(labels: torch.Tensor, count: int = 3) -> torch.Tensor:
    """Logits whose argmax is `labels` (N, *sides)."""
    return torch.nn.functional.one_hot(labels, count).movedim(-1, 1).float() * 5


def test_the_tally_adds_voxels_into_dice_iou_and_pixel_accuracy_as_worked_by_hand():
    # Two 1x6 "images". Sample 1: reference 0 1 1 1 2 2, predicted 0 1 1 0 2 1. Sample 2: reference 0 0 0 0 0 0 (no
    # label), predicted 0 0 0 0 0 0 (correctly empty).
    reference = torch.tensor([[[0, 1, 1, 1, 2, 2]], [[0, 0, 0, 0, 0, 0]]])
    predicted = torch.tensor([[[0, 1, 1, 0, 2, 1]], [[0, 0, 0, 0, 0, 0]]])
    task = task_for("segmentation", CLASSES)
    assert task.outputs == 3 and task.target_key == "mask" and task.spatial_output
    tally = task.tally(torch.device("cpu"), keep_scores=True)
    tally.add(torch.tensor(0.5), logits_of(predicted[:1]), reference[:1])
    tally.add(torch.tensor(1.5), logits_of(predicted[1:]), reference[1:])
    summary = tally.summary(metrics_of("segmentation"))
    # Pooled: liver |P∩R| = 2, |P| = 3, |R| = 3 -> 4/6; tumour 1, 1, 2 -> 2/3; IoU liver 2/4, tumour 1/2.
    assert summary["loss"] == pytest.approx(1.0)
    assert summary["class_dice.liver"] == pytest.approx(4 / 6) and summary["class_dice.tumour"] == pytest.approx(2 / 3)
    assert summary["mean_dice"] == pytest.approx((4 / 6 + 2 / 3) / 2)
    assert summary["iou"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert summary["pixel_accuracy"] == pytest.approx(10 / 12)
    # Per case: sample 1 as above; sample 2 has neither label and predicts neither: 1 each, not dropped.
    assert summary["case_dice"] == pytest.approx(((4 / 6 + 2 / 3) / 2 + 1.0) / 2)
    first, second = tally.predictions()
    assert first["dice"] == pytest.approx({"liver": 4 / 6, "tumour": 2 / 3})
    assert first["reference_voxels"] == {"background": 1, "liver": 3, "tumour": 2}
    assert first["predicted_voxels"] == {"background": 2, "liver": 3, "tumour": 1}
    assert second["dice"] == {"liver": 1.0, "tumour": 1.0} and second["mean_dice"] == 1.0


def test_empty_references_score_as_metrics_reloaded_advises():
    task = task_for("segmentation", CLASSES)
    empty = torch.zeros(1, 1, 4, dtype=torch.long)
    tally = task.tally(torch.device("cpu"), keep_scores=True)
    tally.add(torch.tensor(0.0), logits_of(torch.tensor([[[0, 0, 1, 0]]])), empty)       # a false alarm: liver 0
    tally.add(torch.tensor(0.0), logits_of(empty), torch.tensor([[[0, 2, 2, 0]]]))        # a missed tumour: 0
    false_alarm, missed = tally.predictions()
    assert false_alarm["dice"] == {"liver": 0.0, "tumour": 1.0}
    assert missed["dice"] == {"liver": 1.0, "tumour": 0.0}
    # Pooled over the subset: liver predicted once, never in the reference (0); tumour missed (0).
    assert tally.summary(["mean_dice"])["mean_dice"] == 0.0
    # Nothing anywhere, nothing predicted: a perfect score, not NaN.
    nothing = task.tally(torch.device("cpu"))
    nothing.add(torch.tensor(0.0), logits_of(empty), empty)
    assert nothing.summary(["mean_dice", "iou"]) == {"loss": 0.0, "mean_dice": 1.0, "iou": 1.0}


def test_per_case_dice_is_monais_dicemetric_on_random_masks():
    from monai.metrics import DiceMetric

    generator = torch.Generator().manual_seed(3)
    reference = torch.randint(0, 3, (5, 12, 10, 8), generator=generator)
    predicted = torch.where(torch.rand(reference.shape, generator=generator) < 0.7, reference,
                            torch.randint(0, 3, reference.shape, generator=generator))
    reference[0][reference[0] == 2] = 0  # a case without a tumour in its reference ...
    predicted[0][predicted[0] == 2] = 0  # ... and none predicted: 1
    reference[1][reference[1] == 1] = 0  # a case without liver, where some is predicted: 0
    tally = task_for("segmentation", CLASSES, dims=3).tally(torch.device("cpu"), keep_scores=True)
    tally.add(torch.tensor(0.0), logits_of(predicted), reference)
    theirs = DiceMetric(include_background=False, reduction="none", ignore_empty=False)(
        logits_of(predicted).argmax(1, keepdim=True).eq(torch.arange(3).view(1, 3, 1, 1, 1)).float(),
        torch.nn.functional.one_hot(reference, 3).movedim(-1, 1).float())
    ours = torch.tensor([[p["dice"]["liver"], p["dice"]["tumour"]] for p in tally.predictions()])
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-6, atol=1e-6)
    assert ours[0, 1] == 1.0 and ours[1, 0] == 0.0
    # Pooled Dice: MONAI's over the five cases concatenated into one.
    pooled = DiceMetric(include_background=False, reduction="none", ignore_empty=False)(
        torch.nn.functional.one_hot(predicted.reshape(1, -1), 3).movedim(-1, 1).float(),
        torch.nn.functional.one_hot(reference.reshape(1, -1), 3).movedim(-1, 1).float())
    summary = tally.summary(["class_dice", "mean_dice"])
    assert [summary["class_dice.liver"], summary["class_dice.tumour"]] == pytest.approx(pooled[0].tolist())
    assert summary["mean_dice"] == pytest.approx(pooled.mean().item())


def test_tallies_add_across_processes_through_their_sums():
    """What `Trainer.reduce_tally` does with several processes: summing each tally's `sums()` gives the whole."""
    task = task_for("segmentation", CLASSES)
    generator = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 3, (4, 8, 8), generator=generator)
    predicted = torch.randint(0, 3, (4, 8, 8), generator=generator)
    whole, halves = task.tally(torch.device("cpu")), [task.tally(torch.device("cpu")) for _ in range(2)]
    whole.add(torch.tensor(1.0), logits_of(predicted), reference)
    for k, half in enumerate(halves):
        half.add(torch.tensor(1.0), logits_of(predicted[2 * k:2 * k + 2]), reference[2 * k:2 * k + 2])
    for mine, other in zip(halves[0].sums(), halves[1].sums()):
        mine += other
    halves[0].seen += halves[1].seen
    names = metrics_of("segmentation")
    assert halves[0].summary(names) == pytest.approx(whole.summary(names))
    restored = task.tally(torch.device("cpu"))
    restored.load(whole.state())
    assert restored.summary(names) == whole.summary(names)


def test_metrics_from_an_outcome_and_the_registry_lists_them_for_segmentation_only():
    confusion = np.array([[50, 2, 0], [3, 10, 1], [0, 0, 4]])
    outcome = SegmentationOutcome(confusion, np.zeros(3), 1)
    assert METRICS["mean_dice"].compute(outcome) == pytest.approx((20 / 26 + 8 / 9) / 2)
    assert METRICS["pixel_accuracy"].compute(outcome) == pytest.approx(64 / 70)
    assert metrics_of("segmentation") == ["mean_dice", "class_dice", "iou", "pixel_accuracy", "case_dice"]
    assert not set(metrics_of("segmentation")) & set(metrics_of("classification"))
    assert METRICS["class_dice"].per_class and METRICS["class_dice"].schema()["per_class"]


@pytest.mark.parametrize("name", ["dice", "dice_ce", "dice_focal", "tversky"])
def test_each_segmentation_loss_falls_as_the_prediction_nears_the_mask(name):
    loss = LOSSES[name]().build(LossContext(3))
    masks = torch.randint(0, 3, (2, 8, 8, 8))
    right, wrong = logits_of(masks), logits_of((masks + 1) % 3)
    assert LOSSES[name].tasks == ("segmentation",)
    assert loss(right, masks) < loss(torch.zeros_like(right), masks) < loss(wrong, masks)


def test_the_spec_gives_segmentation_its_defaults_and_refuses_what_does_not_serve_it():
    settings = resolve_spec({"task": "segmentation"}).to_dict()
    assert settings["model"]["architecture"] == "unet_2d" and settings["loss"]["name"] == "dice_ce"
    assert settings["monitor"] == "validation.mean_dice" and "class_dice" in settings["metrics"]
    plan = {"dims": 3, "target_spacing": [3.0, 1.0, 1.0], "patch_size": [16, 32, 32], "normalisation": "zscore"}
    assert resolve_spec({"task": "segmentation", "data": {"plan": plan}}).to_dict()["model"]["architecture"] == "unet_3d"
    assert resolve_spec({}).to_dict()["model"]["architecture"] == "small_cnn", "classification keeps its defaults"
    refusals = {
        "model.architecture": ({"task": "segmentation", "model": {"architecture": "resnet18"}},
                               "ResNet-18 is a classification network: a segmentation run needs a segmentation network; "
                               "choose among unet_2d"),
        "loss.name": ({"task": "segmentation", "loss": {"name": "cross_entropy"}},
                      "Cross-entropy is not a loss for segmentation; choose among dice, dice_ce, dice_focal, tversky."),
        "metrics": ({"task": "segmentation", "metrics": ["auc"]}, "AUC cannot measure segmentation"),
        "monitor": ({"task": "segmentation", "monitor": "validation.class_dice"}, "The monitored metric must be one"),
    }
    for field, (data, words) in refusals.items():
        with pytest.raises(SpecInvalid) as refused:
            resolve_spec(data)
        assert refused.value.errors[field].startswith(words), refused.value.errors
    for data, field, words in [({"model": {"architecture": "unet_3d"}}, "model.architecture", "U-Net (3D) is a segmentation network"),
                               ({"loss": {"name": "dice_ce"}}, "loss.name", "Dice + cross-entropy is not a loss for classification"),
                               ({"task": "segmentation", "model": {"architecture": "unet_2d"}, "data": {"plan": plan}},
                                "model.architecture", "U-Net (2D) is a 2D network and the plan is for volumes"),
                               # Rounded up to V-Net's 16 the slice side would be 32, past twice the thinnest sample's 12.
                               ({"task": "segmentation", "model": {"architecture": "vnet_3d"},
                                 "data": {"plan": {**plan, "patch_size": [24, 32, 32], "smallest_shape": [12, 40, 40]}}},
                                "data.plan.patch_size", "V-Net needs patch sides in multiples of 16")]:
        with pytest.raises(SpecInvalid) as refused:
            resolve_spec(data)
        assert refused.value.errors[field].startswith(words), refused.value.errors


def test_dynunet_is_shaped_by_the_patch_and_spacing_as_nnunet_shapes_it():
    # Thick slices (3 mm against 1 mm): the slice axis waits one stage with flat kernels, then is halved with the others.
    kernels, strides = dynunet_topology([16, 64, 64], [3.0, 1.0, 1.0])
    assert strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert kernels == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert divisor_of(strides) == [4, 16, 16]
    # Isotropic 2D: halved down to 4 pixels (128 -> 4: five times).
    assert dynunet_topology([128, 128], [1.0, 1.0])[1] == [[1, 1]] + [[2, 2]] * 5
    plan = {"patch_size": [16, 64, 64], "target_spacing": [3.0, 1.0, 1.0]}
    network = build_network("dynunet_3d", 1, 3, plan=plan).eval()
    with torch.no_grad():
        assert network(torch.randn(1, 1, 16, 64, 64)).shape == (1, 3, 16, 64, 64)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_segmentation_network_gives_a_map_of_its_input_size(name):
    entry = MODELS[name]
    side = max(entry.min_size, 16)
    plan = {"patch_size": [side] * entry.dims, "target_spacing": [1.0] * entry.dims}
    for channels in (1, 3):
        with torch.device("meta"):
            model = build_network(name, channels, 4, plan=plan).eval()
            assert model(torch.zeros(2, channels, *[side] * entry.dims)).shape == (2, 4, *[side] * entry.dims)
    assert entry.source == "monai" and entry.weight_choices == ("random",)
    if entry.divisor > 1:  # a side off the divisor may run, and give a map of another size: refused before torch
        assert "multiples of" in entry.size_problem(side + 1, side, side if entry.dims == 3 else None)


def test_a_sample_larger_than_the_patch_is_predicted_by_a_gaussian_sliding_window():
    task = task_for("segmentation", CLASSES, dims=2, window=(16, 16))
    model = build_network("unet_2d", 1, 3).eval()
    image = torch.randn(1, 1, 40, 24)
    with torch.no_grad():
        whole = task.predict(model, image)
        from monai.inferers import sliding_window_inference
        theirs = sliding_window_inference(image, (16, 16), 4, model, overlap=0.5, mode="gaussian")
        assert task.predict(model, image[..., :16, :16]).shape == (1, 3, 16, 16)
    assert whole.shape == (1, 3, 40, 24)
    torch.testing.assert_close(whole, theirs)
    assert task.export_metadata() == {"task": "segmentation", "classes": '["background", "liver", "tumour"]', "dims": "2",
                                      "patch_size": "[16, 16]"}


def test_patches_carry_their_mask_and_a_third_are_centred_on_a_label(tmp_path):
    from workers.engine.pipelines import Pipeline
    from workers.engine.store import VolumeRecords

    volume = np.zeros((1, 20, 64, 64), np.int16)
    mask = np.zeros((1, 20, 64, 64), np.uint8)
    mask[0, 2:5, 50:54, 3:7] = 1  # a small structure in a corner: a random 8x16x16 patch rarely holds it
    volume[mask > 0] = 100
    np.save(tmp_path / "v.npy", volume)
    np.save(tmp_path / "v.mask.npy", mask)
    plan = {"normalisation": "none", "patch_size": [8, 16, 16]}
    records = VolumeRecords([tmp_path / "v.npy"], [0], [{}], plan, patches=True, masks=[tmp_path / "v.mask.npy"])
    patches = [records[(0, epoch)] for epoch in range(300)]
    assert all(p["mask"].shape == (8, 16, 16) and p["mask"].dtype == torch.int64 for p in patches)
    assert all(torch.equal(p["mask"] > 0, p["image"][0] > 50) for p in patches), "the mask is cut where the image is"
    holding = np.mean([bool(p["mask"].any()) for p in patches])
    assert 0.28 < holding < 0.5, holding  # a third centred on the label, a few more by chance
    flipped = VolumeRecords([tmp_path / "v.npy"], [0], [{}], plan, patches=True, masks=[tmp_path / "v.mask.npy"],
                            augment=Pipeline.from_steps([{"op": "flip", "params": {"axis": "left-right", "probability": 1.0}}]))
    moved = [flipped[(0, epoch)] for epoch in range(30)]
    assert all(torch.equal(p["mask"] > 0, p["image"][0] > 50) for p in moved), "a spatial step moves the mask too"
    whole = VolumeRecords([tmp_path / "v.npy"], [0], [{}], plan, masks=[tmp_path / "v.mask.npy"])[0]
    assert whole["mask"].shape == (20, 64, 64) and int(whole["mask"].sum()) == 48


def test_a_segmentation_model_exports_to_onnx_with_dynamic_sides_and_passes_the_parity_check(tmp_path):
    from workers.engine.export import export_onnx, onnx_predict, parity_check

    torch.manual_seed(0)
    model = build_network("unet_3d", 1, 3).eval()
    patches = torch.randn(2, 1, 8, 16, 16)
    path = export_onnx(model, patches, tmp_path / "model.onnx", dynamic_sides=True)
    assert parity_check(model, path, patches)["passed"]
    larger = torch.randn(1, 1, 16, 24, 32)
    with torch.no_grad():
        expected = model(larger).numpy()
    got = onnx_predict(path, larger.numpy())
    assert got.shape == (1, 3, 16, 24, 32) and np.abs(got - expected).max() < 1e-4

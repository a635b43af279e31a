"""The segmentation engine's nnU-Net features beyond the plain loop: deep supervision (the loss a weighted sum over the
decoder's outputs against the mask downsampled to each; a DynUNet learns with it), test-time mirroring (the softmax
averaged over flips), the "largest connected component" postprocessing chosen on validation Dice, and a thin plan's
patch rounded up to a U-Net's divisor so that 10-slice volumes train."""
import numpy as np
import pytest
import torch
from torch import nn

from workers.engine.demo import BLOB_LABELS, blob_volume, demo_shapes_subsets, planned_segmentation_subsets
from workers.engine.planning import fitted_to_network
from workers.engine.store import VolumeRecords
from workers.engine.tasks import task_for
from workers.engine.tasks.segmentation.postprocessing import apply_postprocessing, choose_postprocessing, decide
from workers.engine.training.loss_modules import deep_supervision_weights
from workers.engine.training.losses import LOSSES, LossContext
from workers.engine.training.spec import SpecInvalid, resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData
from workers.engine.zoo.networks import build_network

CLASSES = ["background", "liver", "tumour"]


# -- deep supervision -------------------------------------------------------------------------------------------------

def test_the_deep_supervision_loss_is_the_halving_weighted_sum_against_masks_downsampled_to_each_output():
    torch.manual_seed(0)
    loss = LOSSES["dice_ce"]().build(LossContext(3))
    outputs = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]
    masks = torch.randint(0, 3, (2, 8, 8))
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    # Nearest (exact) downsampling by 2 keeps the voxels 1, 3, 5, 7 of each axis; by 4, the voxels 2 and 6.
    by_hand = (4 / 7 * loss(outputs[0], masks) + 2 / 7 * loss(outputs[1], masks[:, 1::2, 1::2])
               + 1 / 7 * loss(outputs[2], masks[:, 2::4, 2::4]))
    assert loss(outputs, masks).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert loss(outputs[0], masks).item() != pytest.approx(by_hand.item(), rel=1e-3), "the coarser outputs count"


def test_dynunet_supervises_deeply_in_training_only_and_learns_a_toy_task(tmp_path):
    model = build_network("dynunet_2d", 1, 3, plan={"patch_size": [32, 32], "target_spacing": [1.0, 1.0]})
    outputs = model.train()(torch.randn(2, 1, 32, 32))
    # 32 -> 16 -> 8 -> 4: three upsamplings, the finest and two coarser stages supervised (the coarsest left out).
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32), "prediction and export: one map"
    train_set, validation, _, classes, plan = demo_shapes_subsets(tmp_path, count=12, size=32)
    data = TrainingData(train_set, validation, 1, classes, dims=2, window=tuple(plan["patch_size"]))
    spec = resolve_spec({"task": "segmentation", "model": {"architecture": "dynunet_2d"}, "data": {"plan": plan},
                         "epochs": 3, "batch_size": 4, "optimizer": {"name": "adamw", "learning_rate": 3e-3}})
    trainer = Trainer(spec, data, callbacks=[])
    losses = []
    for _ in range(3):
        trainer.train_epoch()
        metrics = trainer.measure_epoch()
        losses.append(metrics["train.loss"])
    assert losses[-1] < 0.8 * losses[0], losses
    assert 0.0 <= metrics["validation.mean_dice"] <= 1.0, "validation reads the full-resolution output"


# -- test-time mirroring --------------------------------------------------------------------------------------------

def lopsided_model(dims: int = 2) -> nn.Module:
    """A convolution with random (so asymmetric) kernels: its prediction of a flipped image is not the flipped
    prediction."""
    torch.manual_seed(1)
    return (nn.Conv2d if dims == 2 else nn.Conv3d)(1, 3, 3, padding=1).eval()


def test_mirroring_averages_the_softmax_over_every_flip_of_the_chosen_axes():
    model, image = lopsided_model(), torch.randn(1, 1, 12, 10)
    plain = task_for("segmentation", CLASSES, dims=2)
    mirrored = task_for("segmentation", CLASSES, dims=2, mirror_axes=(0, 1))
    with torch.no_grad():
        by_hand = sum(model(image.flip(axes)).softmax(1).flip(axes) for axes in ([], [2], [3], [2, 3])) / 4
        assert torch.allclose(mirrored.predict(model, image).softmax(1), by_hand, atol=1e-6)
        rows_only = task_for("segmentation", CLASSES, dims=2, mirror_axes=(0,)).predict(model, image).softmax(1)
        assert torch.allclose(rows_only, (model(image).softmax(1) + model(image.flip(2)).softmax(1).flip(2)) / 2, atol=1e-6)
        # The lopsided model's flipped prediction differs from its plain one; the mirrored prediction follows the image.
        assert not torch.allclose(plain.predict(model, image.flip(3)).flip(3), plain.predict(model, image), atol=1e-3)
        assert torch.allclose(mirrored.predict(model, image.flip(3)).flip(3), mirrored.predict(model, image), atol=1e-5)


def test_mirroring_is_a_spec_setting_refused_where_it_cannot_apply():
    assert resolve_spec({"task": "segmentation"}).mirror_axes(2) == (), "off by default"
    assert resolve_spec({"task": "segmentation", "inference": {"mirror": True}}).mirror_axes(2) == (0, 1)
    chosen = resolve_spec({"task": "segmentation", "model": {"architecture": "unet_3d"},
                           "inference": {"mirror": True, "mirror_axes": [1, 2]}})
    assert chosen.mirror_axes(3) == (1, 2) and chosen.to_dict()["inference"] == {"mirror": True, "mirror_axes": [1, 2]}
    for data, field, words in [
            ({"inference": {"mirror": True}}, "inference.mirror", "Test-time mirroring averages predicted maps"),
            ({"task": "segmentation", "inference": {"mirror": True, "mirror_axes": [2]}}, "inference.mirror_axes",
             "The samples have 2 spatial axes"),
            ({"task": "segmentation", "inference": {"mirror_axes": [0]}}, "inference.mirror_axes", "Mirror axes apply only"),
            ({"task": "segmentation", "inference": {"mirror": True, "mirror_axes": [0, 0]}}, "inference.mirror_axes",
             "The mirror axes are a list of distinct spatial axes")]:
        with pytest.raises(SpecInvalid) as refused:
            resolve_spec(data)
        assert refused.value.errors[field].startswith(words), refused.value.errors


# -- keep the largest connected component ---------------------------------------------------------------------------

def square_with(*extras: tuple[int, int], label: int = 1) -> np.ndarray:
    """A 12x12 label map: a 4x4 square of `label` (16 pixels) and single pixels of it at `extras`."""
    label_map = np.zeros((12, 12), np.int64)
    label_map[2:6, 2:6] = label
    for row, column in extras:
        label_map[row, column] = label
    return label_map


def test_a_speck_is_removed_and_the_rest_kept():
    predicted = square_with((10, 10))
    predicted[8:10, 0:2] = 2
    cleaned = apply_postprocessing(predicted, {"largest_component": [1]})
    assert cleaned[10, 10] == 0 and (cleaned[2:6, 2:6] == 1).all() and (cleaned[8:10, 0:2] == 2).all()
    assert (cleaned == 1).sum() == 16
    # A pixel touching the square by a corner is part of it (full connectivity).
    assert apply_postprocessing(square_with((6, 6)), {"largest_component": [1]})[6, 6] == 1
    assert (apply_postprocessing(predicted, {"largest_component": []}) == predicted).all()


class FixedPrediction(nn.Module):
    """A "model" predicting the label maps given, sample by sample (keyed by the image's one value)."""

    def __init__(self, label_maps: list[np.ndarray]):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.label_maps = [torch.as_tensor(m) for m in label_maps]

    def forward(self, images):
        label_map = self.label_maps[int(images.flatten()[0].item())]
        return torch.nn.functional.one_hot(label_map, 3).movedim(-1, 0)[None].float() * 10 * self.scale


def records(references: list[np.ndarray]) -> list[dict]:
    return [{"image": torch.full((1, 12, 12), float(i)), "mask": torch.as_tensor(r)} for i, r in enumerate(references)]


def test_the_largest_component_is_kept_for_a_label_only_where_it_raises_validation_dice():
    task = task_for("segmentation", CLASSES, dims=2)
    # Helps: the network adds a speck the references lack. Dice 2*16/(17+16) before, 1 after.
    specks = [square_with((10, 10)), square_with((0, 11))]
    choice = choose_postprocessing(FixedPrediction(specks), records([square_with(), square_with()]), task)
    assert choice["largest_component"] == [1]
    assert choice["dice_before"]["liver"] == pytest.approx(32 / 33) and choice["dice_after"]["liver"] == 1.0
    assert choice["dice_before"]["tumour"] == choice["dice_after"]["tumour"] == 1.0, "absent and not predicted"
    # Harms: a true second piece (the pixel at (10, 10) is in the reference too) would go. 1 before, 32/33 after.
    two_pieces = [square_with((10, 10))]
    choice = choose_postprocessing(FixedPrediction(two_pieces), records(two_pieces), task)
    assert choice["largest_component"] == []
    assert choice["dice_before"]["liver"] == 1.0 and choice["dice_after"]["liver"] == pytest.approx(32 / 33)
    # Per label: the same maps under label 2 decide label 2 alone.
    assert decide([square_with((10, 10), label=2)], [square_with(label=2)], CLASSES)["largest_component"] == [2]


# -- a thin patch rounded to the network's divisor ------------------------------------------------------------------

def test_a_thin_patch_is_rounded_up_to_the_unets_divisor_and_refused_only_when_mostly_padding():
    plan = {"dims": 3, "target_spacing": [3.0, 1.0, 1.0], "normalisation": "zscore", "patch_size": [10, 32, 32],
            "smallest_shape": [10, 36, 36], "reasons": {"patch_size": "the median volume"}}
    fitted, problem = fitted_to_network(plan, 8, 16, "U-Net (3D)")
    assert problem == "" and fitted["patch_size"] == [16, 32, 32] and "rounded up from 10x32x32" in fitted["reasons"]["patch_size"]
    spec = resolve_spec({"task": "segmentation", "model": {"architecture": "unet_3d"}, "data": {"plan": plan}})
    assert spec["data"]["plan"]["patch_size"] == [16, 32, 32], "the run records the patch it trains on"
    assert resolve_spec(spec.to_dict())["data"]["plan"] == spec["data"]["plan"], "resolving again changes nothing"
    _, problem = fitted_to_network({**plan, "smallest_shape": [6, 36, 36]}, 16, 16, "V-Net")
    assert problem.startswith("V-Net needs patch sides in multiples of 16 (at least 16); the slice side would become 16")
    with pytest.raises(SpecInvalid) as refused:
        resolve_spec({"task": "segmentation", "model": {"architecture": "vnet_3d"},
                      "data": {"plan": {**plan, "smallest_shape": [6, 36, 36]}}})
    assert "DynUNet" in refused.value.errors["data.plan.patch_size"] and "model.architecture" not in refused.value.errors


def test_a_3d_unet_trains_an_epoch_on_10_slice_volumes(tmp_path):
    rng = np.random.default_rng(0)
    samples = [blob_volume(rng, (10, 32, 32), (3.0, 1.0, 1.0)) for _ in range(6)]
    train_set, validation, _, classes, plan = planned_segmentation_subsets(tmp_path, samples, [(3.0, 1.0, 1.0)] * 6, BLOB_LABELS)
    assert plan["patch_size"][0] == 10
    spec = resolve_spec({"task": "segmentation", "model": {"architecture": "unet_3d"}, "data": {"plan": plan},
                         "epochs": 1, "batch_size": 2})
    planned = spec["data"]["plan"]
    assert planned["patch_size"] == [16, 32, 32]
    # The worker reads the training patches with the run's plan: the 10 slices padded to 16.
    patches = VolumeRecords(train_set.paths, train_set.targets, train_set.metas, planned, patches=True, masks=train_set.masks)
    assert tuple(patches[0]["image"].shape) == (1, 16, 32, 32) and tuple(patches[0]["mask"].shape) == (16, 32, 32)
    data = TrainingData(patches, validation, 1, classes, dims=3, window=tuple(planned["patch_size"]))
    trainer = Trainer(spec, data, callbacks=[])
    trainer.train_epoch()
    metrics = trainer.measure_epoch()
    assert np.isfinite(metrics["train.loss"]) and 0.0 <= metrics["validation.mean_dice"] <= 1.0
    with torch.no_grad():  # a whole 10-slice volume is predicted through the 16-slice window and cropped back
        assert trainer.task.predict(trainer.model.eval(), validation[0]["image"][None]).shape == (1, 3, 10, 32, 32)

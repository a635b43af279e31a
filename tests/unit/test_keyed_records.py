"""Samples as keyed records through a pipeline: a spatial operation moves the image and its mask with one draw
(nearest neighbour for the mask), an intensity operation touches the image alone, and every operation says which
it is."""
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from workers.engine.pipelines import Pipeline
from workers.engine.pipelines.operations import INTENSITY, OPERATIONS, SPATIAL, Context

SPATIAL_OPERATIONS = {"flip", "rotate", "zoom", "shift", "random_crop", "center_crop", "resize", "elastic", "resample",
                      "crop_around_point"}


def test_every_operation_says_whether_it_moves_pixels_or_changes_values():
    assert {name for name, op in OPERATIONS.items() if op.acts_on == SPATIAL} == SPATIAL_OPERATIONS
    assert all(op.acts_on in (SPATIAL, INTENSITY) and op.schema()["acts_on"] == op.acts_on for op in OPERATIONS.values())


def labelled(spatial: tuple[int, ...]) -> dict:
    """An image whose bright regions are exactly the mask's labels 1 and 2 (off-centre, so any move shows)."""
    mask = np.zeros((1, *spatial), np.uint8)
    index = tuple(slice(s // 5, s // 2) for s in spatial)
    mask[(0, *index)] = 1
    index = tuple(slice(s // 2, s * 4 // 5) for s in spatial[:-1]) + (slice(spatial[-1] // 5, spatial[-1] // 2),)
    mask[(0, *index)] = 2
    return {"image": mask.astype(np.float32) * 100.0, "mask": mask, "target": 3}


STEPS = {
    "flip": {"axis": "left-right", "probability": 1.0},
    "rotate": {"degrees": [20, 30], "probability": 1.0},
    "zoom": {"factor": [1.2, 1.3], "probability": 1.0},
    "elastic": {"magnitude": [3, 4], "grid": 4, "probability": 1.0},
    "random_crop": {"fraction": 0.7},
}


@pytest.mark.parametrize("spatial", [(40, 48), (20, 24, 28)], ids=["2D", "3D"])
@pytest.mark.parametrize("name", list(STEPS))
def test_a_spatial_step_moves_image_and_mask_together(name, spatial):
    record = labelled(spatial)
    moved = Pipeline.from_steps([{"op": name, "params": STEPS[name]}]).apply_record(record, seed=7)
    image, mask = moved["image"][0], moved["mask"][0]
    assert moved["mask"].dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}, "no label is invented"
    assert image.shape == mask.shape and moved["target"] == 3
    assert not np.array_equal(mask, record["mask"][0][tuple(slice(0, n) for n in mask.shape)]) or name == "random_crop"
    # Where the mask says label k, the image is k * 100: away from the outline, which interpolation blurs in the
    # image by a voxel (a mask that did not move with the image would disagree over whole regions).
    for label in (1, 2):
        inside = binary_erosion(mask == label)
        assert inside.sum() > 8, f"label {label} left the picture"
        agreeing = np.abs(image[inside] - 100.0 * label) < 35
        assert agreeing.mean() > 0.97, (name, label, agreeing.mean())
    # The image got what `apply` gives for the same seed.
    same = Pipeline.from_steps([{"op": name, "params": STEPS[name]}])(record["image"], seed=7)
    assert np.array_equal(same, moved["image"])


def test_an_intensity_step_leaves_the_mask_alone_and_a_resample_resizes_it_once():
    record = labelled((20, 24))
    noisy = Pipeline.from_steps([{"op": "additive_gaussian_noise", "params": {"std": 5.0}}]).apply_record(record, seed=1)
    assert np.array_equal(noisy["mask"], record["mask"]) and not np.array_equal(noisy["image"], record["image"])
    resampled = Pipeline.from_steps([{"op": "resample", "params": {"pixel_mm": 0.5}}]).apply_record(
        record, seed=1, context=Context(spacing=(1.0, 1.0)))
    assert resampled["image"].shape == resampled["mask"].shape == (1, 40, 48)

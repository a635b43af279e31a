"""Batched augmentation: the same operations on (B, C, H, W) tensors, each image with its own draws."""
import numpy as np
import pytest
import torch

from workers.engine.data import CachedImages, on_device
from workers.engine.pipelines import Pipeline
from workers.engine.pipelines.batched import BATCHED, batched_form
from workers.engine.training.sampling import on_batches

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def picture(channels=1) -> np.ndarray:
    image = np.zeros((channels, 40, 60), np.float32)
    image[:, 5:15, 10:50] = 1.0
    image[:, 20:35, 40:45] = 0.5
    return image + np.linspace(0, 0.2, 60, dtype=np.float32)


def both_ways(steps, image, device="cpu"):
    pipeline = Pipeline.from_steps(steps)
    per_image = pipeline(image, 0)
    batched = batched_form(pipeline)(torch.from_numpy(image)[None].to(device), 0)[0].cpu().numpy()
    return per_image, batched


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("step", [
    {"op": "flip", "params": {"axis": "left-right", "probability": 1}},
    {"op": "flip", "params": {"axis": "up-down", "probability": 1}},
    {"op": "rotate", "params": {"degrees": [20, 20]}},
    {"op": "zoom", "params": {"factor": [0.7, 0.7]}},
    {"op": "gamma_contrast", "params": {"gamma": [0.5, 0.5]}},
    {"op": "invert", "params": {"probability": 1}},
    {"op": "multiply", "params": {"factor": [2, 2]}},
    {"op": "add", "params": {"value": [0.3, 0.3]}},
])
def test_with_fixed_values_the_batched_form_gives_what_the_per_image_form_gives(step, device):
    per_image, batched = both_ways([step], picture(), device)
    assert np.allclose(per_image, batched, atol=2e-3), np.abs(per_image - batched).max()  # float rounding in the resampling


def test_zooming_in_differs_only_by_interpolation_and_noise_has_its_statistics():
    per_image, batched = both_ways([{"op": "zoom", "params": {"factor": [1.3, 1.3]}}], picture())
    assert np.abs(per_image - batched).mean() < 0.01  # MONAI averages areas, the batched form interpolates
    image = np.zeros((1, 64, 64), np.float32)
    _, noisy = both_ways([{"op": "additive_gaussian_noise", "params": {"std": 0.5, "mean": 1.0}}], image)
    assert abs(noisy.mean() - 1.0) < 0.03 and abs(noisy.std() - 0.5) < 0.03


def test_each_image_of_a_batch_draws_its_own_values_and_a_seed_repeats_them():
    steps = [{"op": "rotate", "params": {"degrees": [-30, 30]}}, {"op": "gamma_contrast"}, {"op": "shift"},
             {"op": "additive_gaussian_noise", "params": {"std": 0.01}}, {"op": "multiply", "params": {"per_channel": True}}]
    augment = batched_form(Pipeline.from_steps(steps))
    batch = torch.from_numpy(np.stack([picture(3)] * 8))
    out = augment(batch, 7)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert all(not torch.allclose(out[0], out[k]) for k in range(1, 8)), "every image its own angle, gamma, shift"
    assert torch.equal(out, augment(batch, 7)) and not torch.allclose(out, augment(batch, 8))
    assert torch.equal(batch, torch.from_numpy(np.stack([picture(3)] * 8))), "input untouched"


def test_the_probability_decides_per_image():
    batch = torch.from_numpy(np.stack([picture()] * 64))
    never = batched_form(Pipeline.from_steps([{"op": "invert", "params": {"probability": 0}}]))(batch, 0)
    assert torch.equal(never, batch)
    half = batched_form(Pipeline.from_steps([{"op": "invert", "params": {"probability": 0.5}}]))(batch, 0)
    inverted = sum(not torch.equal(half[k], batch[k]) for k in range(64))
    assert 16 < inverted < 48


def test_pipelines_with_an_operation_without_a_batched_form_stay_per_image(tmp_path):
    assert batched_form(Pipeline.from_steps([{"op": "flip"}, {"op": "median_blur"}])) is None
    assert batched_form(Pipeline.from_steps([{"op": "flip", "params": {"axis": "head-foot"}}])) is None
    assert batched_form(Pipeline.from_steps([])) is None and batched_form(None) is None
    assert {"flip", "rotate", "zoom", "shift", "gamma_contrast", "additive_gaussian_noise"} <= set(BATCHED)
    cache = tmp_path / "cache.npy"
    np.save(cache, np.zeros((2, 1, 8, 8), np.uint8))
    pipeline = Pipeline.from_steps([{"op": "flip"}, {"op": "rotate"}])
    images = CachedImages(cache, [0, 1], [0, 1], augment=pipeline)
    plain, augment = on_batches(images)
    assert plain.augment is None and augment is not None and images.augment is pipeline, "the caller's set keeps its augmentation"
    assert plain.raw and plain[0]["image"].dtype == torch.uint8 and images[0]["image"].dtype == torch.float32, "raw bytes, scaled on the device"
    assert torch.equal(on_device(plain[1]["image"][None], torch.device("cpu")), images.__class__(cache, [1], [1])[0]["image"][None])
    slow = CachedImages(cache, [0, 1], [0, 1], augment=Pipeline.from_steps([{"op": "median_blur"}]))
    assert on_batches(slow) == (slow, None)

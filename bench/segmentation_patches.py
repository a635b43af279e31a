"""The segmentation data path against the default 3D U-Net's training throughput; prints JSON.

Target (issue 23), on this CPU: patches of the plan's size with their masks, read as the trainer reads them
(VolumeRecords with masks and patches=True, a third of the patches centred on a label; the trainer's own sampler
and loader, which on a CPU reads in the training process), arrive >= 3x faster than the zoo's default 3D U-Net
(`unet_3d`) trains on them (forward, Dice + cross-entropy, backward, optimiser step; same patch, same batch), so that
reading costs a training step at most a quarter of its time. Measured without augmentation (a run's default) and with
a spatial and intensity augmentation (flip, rotation, gamma, noise: the mask moved with the image); the target is
the augmented path's.

The store: CT-like int16 volumes of 150x256x256 (masks of an "organ" and a "lesion" beside them, as ingest stores
them), planned as this CPU plans them (patch and batch from planning.patch_and_batch). Both rates are measured in the
same invocation (these machines are noisy).

Usage: python bench/segmentation_patches.py [volumes]   (BENCH_SMOKE=1: 3 volumes of 40x64x64)
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, samples_per_second, scratch, size  # noqa: E402
from workers.engine.pipelines import Pipeline  # noqa: E402
from workers.engine.planning import PATCH_BUDGET_CPU, patch_and_batch  # noqa: E402
from workers.engine.store import VolumeRecords, mask_path  # noqa: E402
from workers.engine.training.losses import LossContext  # noqa: E402
from workers.engine.training.sampling import EpochSampler, make_loader  # noqa: E402
from workers.engine.training.spec import resolve_spec  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402

VOLUMES = int(sys.argv[1]) if len(sys.argv) > 1 else size(12, 3)
SHAPE = size((150, 256, 256), (40, 64, 64))
PATCH, BATCH, _ = patch_and_batch(list(SHAPE), list(SHAPE), PATCH_BUDGET_CPU)
CLASSES = ["background", "organ", "lesion"]
LOADED_BATCHES = size(24, 3)
TRAINING_STEPS = size(4, 1)
AUGMENTATION = [
    {"op": "flip", "params": {"axis": "left-right"}},
    {"op": "rotate", "params": {"degrees": [-10, 10]}},
    {"op": "gamma_contrast", "params": {"gamma": [0.8, 1.2]}},
    {"op": "additive_gaussian_noise", "params": {"std": 0.02}},
]
CT_META = {"rescale_slope": 1.0, "rescale_intercept": -1024.0}
PLAN = {"normalisation": "ct", "clip": [-1000.0, 1000.0], "mean": 40.0, "std": 300.0, "patch_size": PATCH,
        "target_spacing": [1.0, 1.0, 1.0]}


def write_store(folder: Path) -> list[Path]:
    """Noisy CT-like volumes (air around a body of soft tissue), each with a mask of an ellipsoid "organ" holding a
    small spherical "lesion", stored as ingest stores them (<name>.npy, (1, D, H, W) int16; <name>.mask.npy uint8)."""
    rng = np.random.default_rng(0)
    grid = np.indices(SHAPE, dtype=np.float32)
    paths = []
    for index in range(VOLUMES):
        centre = np.array(SHAPE) * rng.uniform(0.35, 0.65, 3)
        radii = np.array(SHAPE) * rng.uniform(0.12, 0.2, 3)
        organ = sum(((grid[axis] - centre[axis]) / radii[axis]) ** 2 for axis in range(3)) <= 1
        lesion = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3)) <= (radii.min() / 3) ** 2
        mask = organ.astype(np.uint8) + lesion.astype(np.uint8)
        values = rng.normal(1064, 20, SHAPE) + 60.0 * mask  # HU + 1024: soft tissue, a brighter organ and lesion
        path = folder / f"{index:04d}.npy"
        np.save(path, values.astype(np.int16)[None])
        np.save(mask_path(path), mask)
        paths.append(path)
    return paths


def data_rate(paths: list[Path], augment: Pipeline | None) -> float:
    """Patches (with masks) a second through the trainer's sampler and loader, past the first batch."""
    records = VolumeRecords(paths, [0] * len(paths), [CT_META] * len(paths), PLAN, patches=True, augment=augment,
                            seed=1, masks=[mask_path(p) for p in paths])
    loader = make_loader(records, BATCH, EpochSampler([0] * len(paths), 1), torch.device("cpu"))
    start, seen, epoch = None, 0, 1
    while seen < LOADED_BATCHES * BATCH:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            assert batch["mask"].shape == (len(batch["image"]), *PATCH)
            if start is None:  # the first batch pays for first-call costs
                start = time.perf_counter()
                continue
            seen += len(batch["image"])
        epoch += 1
    return seen / (time.perf_counter() - start)


def training_rate() -> float:
    """The default 3D U-Net with the segmentation defaults' loss (Dice + cross-entropy) and optimiser, float32."""
    torch.manual_seed(0)
    spec = resolve_spec({"task": "segmentation", "data": {"plan": {**PLAN, "dims": 3}}})
    model = build_network(spec["model"]["architecture"], 1, len(CLASSES))
    loss_fn = spec.loss.build(LossContext(len(CLASSES)))
    optimiser = spec.optimizer.build([{"params": list(model.parameters())}])
    images = torch.randn(BATCH, 1, *PATCH)
    masks = torch.randint(0, len(CLASSES), (BATCH, *PATCH))

    def step():
        optimiser.zero_grad()
        loss_fn(model(images), masks).backward()
        optimiser.step()

    return samples_per_second(step, TRAINING_STEPS, BATCH)


def main():
    paths = write_store(scratch("bench-segmentation-"))
    plain = data_rate(paths, None)
    augmented = data_rate(paths, Pipeline.from_steps(AUGMENTATION))
    training = training_rate()
    report("segmentation_patches", {
        "volumes": len(paths), "volume_shape": list(SHAPE), "patch": PATCH, "batch": BATCH, "classes": len(CLASSES),
        "network": "unet_3d", "loss": "dice_ce", "cores": os.cpu_count(), "loader_workers": 0,
        "augmentation": [s["op"] for s in AUGMENTATION],
        "data_path_patches_per_s": round(plain, 2), "augmented_data_path_patches_per_s": round(augmented, 2),
        "unet_3d_training_patches_per_s": round(training, 3), "ratio": round(plain / training, 2),
        "augmented_ratio": round(augmented / training, 2), "target_ratio": 3.0, "meets_target": augmented / training >= 3.0,
    })


if __name__ == "__main__":
    main()

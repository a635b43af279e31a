"""The data path against ResNet-18 training throughput on the same machine, in the same run; prints JSON.

Target (issue 5): the data path is never what the model waits for. 224x224 grayscale, batch 32, a
5-operation augmentation pipeline (flip, rotate, zoom, gamma, noise):
- on a CPU machine, data path >= 3x ResNet-18's training throughput;
- on a GPU machine (16 cores), data path >= 1.2x ResNet-18's mixed-precision training throughput.

The data path is measured as training uses it: raw pixels read from the cache in DataLoader
processes, then scaled and augmented (the batched form, `pipelines/batched.py`) on the training device. The per-image form
(each image augmented in the loader processes) is measured beside it for comparison.

Usage: python bench/loader_throughput.py [batches] [workers]   (BENCH_SMOKE=1: 1 batch of 8 at 112x112)
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, size  # noqa: E402
from workers.engine.data import CachedImages, on_device  # noqa: E402
from workers.engine.pipelines import Pipeline  # noqa: E402
from workers.engine.training.sampling import on_batches  # noqa: E402
from workers.engine.training.trainer import MixedPrecision  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402

BATCHES = int(sys.argv[1]) if len(sys.argv) > 1 else size(6, 1)
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else (os.cpu_count() or 1)
BATCH, SIDE = size((32, 224), (8, 112))
AUGMENTATION = [
    {"op": "flip", "params": {"axis": "left-right"}},
    {"op": "rotate", "params": {"degrees": [-10, 10]}},
    {"op": "zoom", "params": {"factor": [0.9, 1.1]}},
    {"op": "gamma_contrast", "params": {"gamma": [0.8, 1.2]}},
    {"op": "additive_gaussian_noise", "params": {"std": 0.02}},
]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronise():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def data_path_rate(dataset, workers: int, batches: int, augment=None) -> float:
    """Images per second through the loader (and the batched augmentation on the device, when given)."""
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, pin_memory=DEVICE.type == "cuda")
    iterator = iter(loader)
    first = next(iterator)["image"]  # worker start-up and first-call costs are not throughput
    if augment is not None:
        augment(on_device(first, DEVICE), 0)
    synchronise()
    start = time.perf_counter()
    seen = 0
    for batch in range(batches):
        images = next(iterator)["image"]
        if augment is not None:
            images = augment(on_device(images, DEVICE), batch)
        seen += len(images)
    synchronise()
    return seen / (time.perf_counter() - start)


def training_rate(mixed_precision: bool) -> float:
    torch.manual_seed(0)
    model = build_network("resnet18", 1, 2).to(DEVICE)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    precision = MixedPrecision(DEVICE, mixed_precision)
    images, targets = torch.rand(BATCH, 1, SIDE, SIDE, device=DEVICE), torch.randint(0, 2, (BATCH,), device=DEVICE)

    def step():
        optimiser.zero_grad()
        with precision.autocast():
            loss = nn.functional.cross_entropy(model(images), targets)
        precision.step(loss, optimiser, model.parameters())  # as Trainer.train_step calls it

    for _ in range(3 if DEVICE.type == "cuda" else 1):
        step()
    synchronise()
    steps = max(size(2, 1), BATCHES // 2) * (10 if DEVICE.type == "cuda" else 1)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronise()
    return steps * BATCH / (time.perf_counter() - start)


def main():
    gpu = DEVICE.type == "cuda"
    batches = BATCHES * (10 if gpu else 1)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "images.npy"
        rng = np.random.default_rng(0)
        array = np.lib.format.open_memmap(cache, mode="w+", dtype=np.uint8, shape=(BATCH * (batches + 2), 1, SIDE, SIDE))
        array[:] = rng.integers(0, 255, array.shape, dtype=np.uint8)
        array.flush()
        pipeline = Pipeline.from_steps(AUGMENTATION)
        per_image = CachedImages(cache, list(range(len(array))), [0] * len(array), augment=pipeline, seed=1)
        plain, augment = on_batches(per_image)  # what training does: raw pixels read, scaled and augmented on the device
        batched = data_path_rate(plain, WORKERS, batches, augment)
        per_image_pooled = data_path_rate(per_image, WORKERS, BATCHES)
        per_image_single = data_path_rate(per_image, 0, max(size(2, 1), BATCHES // 2))
        training = training_rate(mixed_precision=gpu)
    target = 1.2 if gpu else 3.0
    report("loader_throughput", {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu", "cores": os.cpu_count(), "batch": BATCH, "side": SIDE,
        "augmentation": [s["op"] for s in AUGMENTATION], "loader_workers": WORKERS,
        "data_path_images_per_s": round(batched, 1),
        "per_image_augmentation_images_per_s": round(per_image_pooled, 1),
        "per_image_augmentation_single_process_images_per_s": round(per_image_single, 1),
        "resnet18_training_images_per_s": round(training, 1), "training_mixed_precision": gpu,
        "ratio": round(batched / training, 2), "per_image_ratio": round(per_image_pooled / training, 2),
        "target_ratio": target, "meets_target": batched / training >= target, "torch_threads": torch.get_num_threads(),
    })


if __name__ == "__main__":
    main()

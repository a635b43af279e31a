"""Loader-only throughput (cache read + a 5-operation augmentation pipeline) against ResNet-18 training
throughput on the same machine, in the same run; prints JSON.

Target (issue 5): the data path is never what the model waits for: loader >= 3x ResNet-18's training
throughput on this CPU machine (224x224 grayscale, batch 32). The loader uses DataLoader worker
processes, as training does; `loader_single_process_images_per_s` shows one process.

Usage: python bench/loader_throughput.py [batches] [workers]
"""
import json
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
from workers.engine.architectures import build_model  # noqa: E402
from workers.engine.data import CachedImages  # noqa: E402
from workers.engine.pipelines import Pipeline  # noqa: E402

BATCHES = int(sys.argv[1]) if len(sys.argv) > 1 else 6
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else (os.cpu_count() or 1)
BATCH, SIDE = 32, 224
AUGMENTATION = [
    {"op": "flip", "params": {"axis": "left-right"}},
    {"op": "rotate", "params": {"degrees": [-10, 10]}},
    {"op": "zoom", "params": {"factor": [0.9, 1.1]}},
    {"op": "gamma_contrast", "params": {"gamma": [0.8, 1.2]}},
    {"op": "additive_gaussian_noise", "params": {"std": 0.02}},
]


def loader_rate(dataset, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up and first-call costs are not throughput
    start = time.perf_counter()
    seen = 0
    for _ in range(BATCHES):
        images, _ = next(iterator)
        seen += len(images)
    return seen / (time.perf_counter() - start)


def training_rate() -> float:
    torch.manual_seed(0)
    model = build_model("resnet18", 1, 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, targets = torch.rand(BATCH, 1, SIDE, SIDE), torch.randint(0, 2, (BATCH,))

    def step():
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(images), targets).backward()
        optimiser.step()

    step()
    start = time.perf_counter()
    steps = max(2, BATCHES // 2)
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "images.npy"
        rng = np.random.default_rng(0)
        array = np.lib.format.open_memmap(cache, mode="w+", dtype=np.uint8, shape=(BATCH * (BATCHES + 2), 1, SIDE, SIDE))
        array[:] = rng.integers(0, 255, array.shape, dtype=np.uint8)
        array.flush()
        dataset = CachedImages(cache, list(range(len(array))), [0] * len(array), augment=Pipeline.from_steps(AUGMENTATION), seed=1)
        pooled = loader_rate(dataset, WORKERS)
        single = loader_rate(dataset, 0)
        training = training_rate()
    print(json.dumps({
        "batch": BATCH, "side": SIDE, "augmentation": [s["op"] for s in AUGMENTATION], "loader_workers": WORKERS,
        "loader_images_per_s": round(pooled, 1), "loader_single_process_images_per_s": round(single, 1),
        "resnet18_training_images_per_s": round(training, 1), "ratio": round(pooled / training, 2), "target_ratio": 3.0,
        "meets_target": pooled / training >= 3.0, "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()

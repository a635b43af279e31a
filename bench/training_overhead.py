"""What the toolkit's trainer costs over a bare PyTorch loop; prints JSON.

Target (issue 12): toolkit throughput >= 0.95x the bare loop's, same model, data, batch size,
validation and device. The toolkit side is the real thing: the spec resolved from the defaults,
the Trainer with its callbacks (schedule, phases, best-epoch keeping, reporting, a checkpoint
written after every epoch). The bare loop is what a person would write by hand: the same
model, optimizer, loss and batches, and a validation pass each epoch. Rounds alternate (toolkit,
bare, toolkit, ...) so a noisy machine slows both alike; the ratio is the median of the pairs'.

Usage: python bench/training_overhead.py [rounds] [epochs] [architecture] [device] [side]
On a GPU machine: python bench/training_overhead.py 3 2 resnet18 gpu 224
BENCH_SMOKE=1: 1 round of 1 epoch on 64 training and 32 validation images.
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size, skip  # noqa: E402
from workers.engine.data import CachedImages  # noqa: E402
from workers.engine.observer import SilentObserver  # noqa: E402
from workers.engine.training.run import train  # noqa: E402
from workers.engine.training.spec import resolve_spec  # noqa: E402
from workers.engine.training.trainer import TrainingData, resolve_device  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else size(7, 1)
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else size(3, 1)
ARCHITECTURE = sys.argv[3] if len(sys.argv) > 3 else "small_cnn"
DEVICE = sys.argv[4] if len(sys.argv) > 4 else "cpu"
SIDE = int(sys.argv[5]) if len(sys.argv) > 5 else 64
TRAIN, VALIDATION, BATCH = size(640, 64), size(160, 32), 32


def dataset(folder: Path) -> tuple[CachedImages, CachedImages]:
    rng = np.random.default_rng(0)
    channels = 3 if DEVICE == "gpu" else 1
    images = rng.integers(0, 256, size=(TRAIN + VALIDATION, channels, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, 2, size=TRAIN + VALIDATION).tolist()
    np.save(folder / "cache.npy", images)
    return (CachedImages(folder / "cache.npy", list(range(TRAIN)), labels[:TRAIN]),
            CachedImages(folder / "cache.npy", list(range(TRAIN, TRAIN + VALIDATION)), labels[TRAIN:]))


def toolkit_round(spec, data, folder: Path) -> float:
    start = time.perf_counter()
    train(spec, data, SilentObserver(), checkpoint_folder=folder / f"checkpoints-{time.monotonic_ns()}")
    return time.perf_counter() - start


def bare_round(spec, data, channels: int) -> float:
    """The loop a person writes by hand around the same model, optimizer and batches."""
    device = resolve_device(DEVICE)
    model = build_network(ARCHITECTURE, channels, 2).to(device)
    mixed = device.type == "cuda"
    if mixed:
        model = model.to(memory_format=torch.channels_last)
    optimizer = spec.optimizer.build([{"params": list(model.parameters())}])
    scaler = torch.amp.GradScaler(device.type, enabled=mixed)
    loss_fn = nn.CrossEntropyLoss()
    train_loader = DataLoader(data.train, batch_size=BATCH, shuffle=True, pin_memory=mixed, num_workers=4 if mixed else 0)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        for batch in train_loader:
            images, targets = batch["image"].to(device, non_blocking=True), batch["target"].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=mixed):
                loss = loss_fn(model(images), targets)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=mixed):
            for batch in DataLoader(data.validation, batch_size=64):
                correct += (model(batch["image"].to(device)).argmax(1) == batch["target"].to(device)).sum().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    if DEVICE == "gpu" and not torch.cuda.is_available():
        skip("training_overhead", "no GPU on this machine")
    folder = scratch("bench-overhead-")
    train_set, validation_set = dataset(folder)
    channels = train_set.cache.shape[1]
    data = TrainingData(train_set, validation_set, channels, ["a", "b"])
    spec = resolve_spec({"model": {"architecture": ARCHITECTURE}, "epochs": EPOCHS, "batch_size": BATCH,
                         "schedule": {"name": "cosine", "warmup_epochs": 0}, "resources": {"device": DEVICE}})
    toolkit, bare = [], []
    toolkit_round(spec, data, folder)  # warm-up: first-use costs (allocators, kernels) counted for neither side
    bare_round(spec, data, channels)
    for _ in range(ROUNDS):
        toolkit.append(toolkit_round(spec, data, folder))
        bare.append(bare_round(spec, data, channels))
    images = EPOCHS * TRAIN
    # Each round's pair ran back to back, under the same load: the median of the pairs' ratios.
    ratio = statistics.median(b / t for t, b in zip(toolkit, bare))
    report("training_overhead", {
        "architecture": ARCHITECTURE, "device": DEVICE, "side": SIDE,
        "precision": "mixed" if DEVICE == "gpu" else "float32", "epochs": EPOCHS, "rounds": ROUNDS,
        "images_per_round": images, "validation_images": VALIDATION, "cpu_threads": torch.get_num_threads(),
        "toolkit_seconds": [round(s, 3) for s in toolkit], "bare_seconds": [round(s, 3) for s in bare],
        "toolkit_images_per_second": round(images / statistics.median(toolkit), 1),
        "bare_images_per_second": round(images / statistics.median(bare), 1),
        "throughput_ratio": round(ratio, 3), "target": {"throughput_ratio_at_least": 0.95}, "meets_target": ratio >= 0.95,
    }, indent=2)


if __name__ == "__main__":
    main()

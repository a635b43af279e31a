"""The 3D data path against a 3D network's training throughput, and the store's memory; prints JSON.

Targets (issue 21), on this CPU:
- patches of 96^3 voxels read from memory-mapped int16 volumes of 256x256x150, turned into HU, augmented
  (flip, rotation, gamma, noise) and normalised by a CT plan, in DataLoader processes as training reads them,
  arrive >= 3x faster than the zoo's 3D ResNet-18 (MONAI's) trains on them (batches of 2, float32);
- the memory the data path holds while it reads patches from every volume of a 10 GB store stays under 1 GB:
  the volumes are memory-mapped, a patch's pages are the only ones read, and each map is dropped after its patch.

Both are measured in the same invocation (these machines are noisy). The store is written fresh (distinct random
volumes, the page cache dropped for none of them: what the process holds is what is measured, not the cache).

Usage: python bench/volume_data_path.py [volumes] [workers]   (BENCH_SMOKE=1: 3 volumes of 40x64x64, 32^3 patches)
"""
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, samples_per_second, scratch, size  # noqa: E402
from workers.engine.pipelines import Pipeline  # noqa: E402
from workers.engine.store import VolumeRecords  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402

VOLUMES = int(sys.argv[1]) if len(sys.argv) > 1 else size(520, 3)   # 520 x 19.7 MB: 10.2 GB
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else (os.cpu_count() or 1)
SHAPE = size((150, 256, 256), (40, 64, 64))
PATCH = size((96, 96, 96), (32, 32, 32))
BATCH = 2
TRAINING_STEPS = size(4, 1)
AUGMENTATION = [
    {"op": "flip", "params": {"axis": "left-right"}},
    {"op": "rotate", "params": {"degrees": [-10, 10]}},
    {"op": "gamma_contrast", "params": {"gamma": [0.8, 1.2]}},
    {"op": "additive_gaussian_noise", "params": {"std": 0.02}},
]
CT_META = {"rescale_slope": 1.0, "rescale_intercept": -1024.0}
PLAN = {"normalisation": "ct", "clip": [-1000.0, 1000.0], "mean": 40.0, "std": 300.0, "patch_size": list(PATCH),
        "target_spacing": [1.0, 1.0, 1.0]}


def write_store(folder: Path) -> tuple[list[Path], int]:
    """Distinct int16 volumes, channels first as the store keeps them; returns their paths and bytes."""
    rng = np.random.default_rng(0)
    paths, total = [], 0
    for index in range(VOLUMES):
        path = folder / f"{index:04d}.npy"
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(1, *SHAPE))
        for start in range(0, SHAPE[0], 16):
            array[0, start:start + 16] = rng.integers(0, 2048, (min(16, SHAPE[0] - start), *SHAPE[1:]), dtype=np.int16)
        array.flush()
        del array
        paths.append(path)
        total += path.stat().st_size
    return paths, total


def resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def data_path(paths: list[Path]) -> tuple[float, float, float]:
    """Patches a second through the loader over every volume once, the most a loader process grew past the process it
    was forked from (MB), and this process's growth while reading (MB)."""
    records = VolumeRecords(paths, [0] * len(paths), [CT_META] * len(paths), PLAN, patches=True,
                            augment=Pipeline.from_steps(AUGMENTATION), seed=1)
    loader = DataLoader(records, batch_size=BATCH, shuffle=False, num_workers=WORKERS)
    before = resident_mb()
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start, seen, peak = time.perf_counter(), 0, 0.0
    for batch in iterator:
        seen += len(batch["image"])
        peak = max(peak, resident_mb() - before)
    seconds = time.perf_counter() - start
    del iterator
    # A loader process starts as a copy of this one (torch and all): what it adds past that is the data path's.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 - before  # kB on Linux
    return seen / max(seconds, 1e-9), max(children, 0.0), peak


def training_rate() -> float:
    """The zoo's 3D ResNet-18 (MONAI's, MedicalNet's layout) as a run builds it, float32, batches of 2."""
    torch.manual_seed(0)
    model = build_network("resnet18_3d", 1, 2)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, targets = torch.randn(BATCH, 1, *PATCH), torch.randint(0, 2, (BATCH,))

    def step():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        loss.backward()
        optimiser.step()

    return samples_per_second(step, TRAINING_STEPS, BATCH)


def main():
    folder = scratch("bench-volumes-")
    written = time.perf_counter()
    paths, total = write_store(folder)
    written = time.perf_counter() - written
    rate, loader_mb, main_growth_mb = data_path(paths)
    training = training_rate()
    memory_mb = max(loader_mb, main_growth_mb)
    report("volume_data_path", {
        "volumes": len(paths), "volume_shape": list(SHAPE), "store_gb": round(total / 2**30, 2), "patch": list(PATCH),
        "batch": BATCH, "loader_workers": WORKERS, "cores": os.cpu_count(), "augmentation": [s["op"] for s in AUGMENTATION],
        "store_written_seconds": round(written, 1), "data_path_patches_per_s": round(rate, 2),
        "resnet18_3d_training_patches_per_s": round(training, 3), "ratio": round(rate / training, 2), "target_ratio": 3.0,
        "loader_process_growth_mb": round(loader_mb, 1), "main_process_growth_mb": round(main_growth_mb, 1),
        "memory_target_mb": 1024, "meets_target": rate / training >= 3.0 and memory_mb < 1024,
    })


if __name__ == "__main__":
    main()

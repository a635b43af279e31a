"""Sliding-window prediction of a CT-sized volume, and its label map put back on the sample's grid; prints JSON.

Target (issue 23), on this CPU: the segmentation task's `predict` (MONAI's `sliding_window_inference`, windows
overlapping by half, Gaussian weights) of a 300x512x512 volume (512x512 pixels, 300 slices) with the zoo's default
3D U-Net (`unet_3d`, untrained: the time and memory do not depend on the weights) at a typical patch (96^3 voxels,
the order of nnU-Net's CT patches; this CPU's plan, 32x64x64, covers the volume with 4,050 windows instead of 600:
about the same voxels through the network, in smaller and slower convolutions) peaks under 4 GB of memory. The same
for `labels_on_grid`: the class probabilities resampled from the plan's grid back to the sample's own (here 1.25
times as many slices: a CT of 0.8 mm slices planned at 1 mm) and their largest taken, a slab of slices at a time.

Each step runs in a child process of its own, so that the peak resident memory it reports (getrusage's ru_maxrss:
the process's high-water mark, torch and the input volume included) is that step's and nothing else's; the memory
the child held just before the step ("before") is reported beside it. Classes: background, organ, lesion (a liver
and its tumours, say); each further class adds a volume of float32 (300 MB at full size) to both steps.

Usage: python bench/segmentation_sliding.py [slices rows columns] [patch side]
       (BENCH_SMOKE=1: 48x64x64, patch 32^3)
"""
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, size  # noqa: E402

SHAPE = tuple(int(v) for v in sys.argv[1:4]) if len(sys.argv) > 3 and sys.argv[1] != "--child" else size((300, 512, 512), (48, 64, 64))
SIDE = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[1] != "--child" else size(96, 32)
CLASSES = ["background", "organ", "lesion"]
SAMPLE_SLICES = 1.25  # the sample's own grid: this many times the plan's slices (0.8 mm slices planned at 1 mm)
MEMORY_TARGET_MB = 4096


def resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def predict_step(shape, side) -> dict:
    """In the child: the task's predict of one (1, 1, *shape) volume, as an evaluation calls it (no gradients)."""
    import torch

    from workers.engine.tasks import task_for
    from workers.engine.zoo.networks import build_network

    torch.manual_seed(0)
    model = build_network("unet_3d", 1, len(CLASSES)).eval()
    task = task_for("segmentation", CLASSES, 3, window=(side,) * 3)
    volume = torch.randn(1, 1, *shape)
    with torch.no_grad():
        model(volume[:, :, :side, :side, :side])  # first-call costs are no prediction's
    before = resident_mb()
    start = time.perf_counter()
    with torch.no_grad():
        logits = task.predict(model, volume)
    seconds = time.perf_counter() - start
    assert logits.shape == (1, len(CLASSES), *shape), logits.shape
    return {"seconds": seconds, "before_mb": before, "peak_mb": peak_mb(), "output_dtype": str(logits.dtype)}


def grid_step(shape) -> dict:
    """In the child: labels_on_grid of (C, *shape) probabilities onto the sample's grid of more slices."""
    import torch

    from workers.engine.tasks.segmentation.grid import labels_on_grid

    torch.manual_seed(0)
    probabilities = torch.rand(len(CLASSES), *shape)
    probabilities /= probabilities.sum(0, keepdim=True)
    target = (round(shape[0] * SAMPLE_SLICES), *shape[1:])
    before = resident_mb()
    start = time.perf_counter()
    labels = labels_on_grid(probabilities, target)
    seconds = time.perf_counter() - start
    assert tuple(labels.shape) == target, labels.shape
    return {"seconds": seconds, "before_mb": before, "peak_mb": peak_mb(), "sample_grid": list(target),
            "labels_dtype": str(labels.dtype)}


def in_child(step: str) -> dict:
    """One step in a fresh interpreter (this file with --child), its figures read from its last line of stdout."""
    command = [sys.executable, __file__, "--child", step, *map(str, SHAPE), str(SIDE)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {step} step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rounded(figures: dict) -> dict:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}


def main():
    if sys.argv[1:2] == ["--child"]:
        step, shape, side = sys.argv[2], tuple(int(v) for v in sys.argv[3:6]), int(sys.argv[6])
        print(json.dumps(predict_step(shape, side) if step == "predict" else grid_step(shape)), flush=True)
        return
    prediction, grid = rounded(in_child("predict")), rounded(in_child("grid"))
    windows = 1
    for n in SHAPE:  # MONAI's placement: half a window apart, the last flush with the far side
        step = SIDE // 2
        windows *= 1 if n <= SIDE else -(-(n - SIDE) // step) + 1
    report("segmentation_sliding", {
        "volume": list(SHAPE), "patch": [SIDE] * 3, "classes": len(CLASSES), "windows": windows, "overlap": 0.5,
        "mode": "gaussian", "network": "unet_3d", "cores": os.cpu_count(),
        "predict": prediction, "labels_on_grid": grid, "memory_target_mb": MEMORY_TARGET_MB,
        "meets_target": prediction["peak_mb"] < MEMORY_TARGET_MB and grid["peak_mb"] < MEMORY_TARGET_MB,
    })


if __name__ == "__main__":
    main()

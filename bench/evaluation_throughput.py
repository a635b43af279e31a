"""What the evaluation job's prediction pass costs over a bare PyTorch inference loop; prints JSON.

Target (issue 22): evaluation throughput >= 0.9x the bare loop's, same model, images, batch size and device. The
evaluation side is the real thing the job runs (workers/evaluation.py `predictions_of` without its one database
query): `measured` on a CachedImages test subset with the run's spec (task, loss, tally keeping every sample's
probabilities, the per-sample records). The bare loop is what a person writes by hand: model.eval(),
torch.inference_mode(), a DataLoader over the same images, softmax, the probabilities gathered. Rounds alternate
(evaluation then bare, bare then evaluation, ...) so a noisy machine slows both alike; the ratio is the median of the
pairs'. The two sides' probabilities are compared too: they must be the same numbers.

Usage: python bench/evaluation_throughput.py [rounds] [images] [architecture] [side]
BENCH_SMOKE=1: 1 round over 64 images. Full size: 7 rounds over 1,024 images.
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size  # noqa: E402
from workers.engine.data import CachedImages, on_device  # noqa: E402
from workers.engine.training.evaluation import measured  # noqa: E402
from workers.engine.training.spec import resolve_spec  # noqa: E402
from workers.engine.zoo.networks import build_network  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else size(7, 1)
IMAGES = int(sys.argv[2]) if len(sys.argv) > 2 else size(1024, 64)
ARCHITECTURE = sys.argv[3] if len(sys.argv) > 3 else "resnet18"
SIDE = int(sys.argv[4]) if len(sys.argv) > 4 else 64
CLASSES, BATCH, CHANNELS = ["a", "b"], 64, 1


def test_subset(folder: Path) -> CachedImages:
    rng = np.random.default_rng(0)
    np.save(folder / "cache.npy", rng.integers(0, 256, size=(IMAGES, CHANNELS, SIDE, SIDE), dtype=np.uint8))
    return CachedImages(folder / "cache.npy", list(range(IMAGES)), rng.integers(0, 2, size=IMAGES).tolist(),
                        keys=list(range(IMAGES)))


def evaluation_round(model, subset, spec) -> tuple[float, list]:
    rows: list[dict] = []
    start = time.perf_counter()
    measured(model, subset, spec, CLASSES, (IMAGES // 2, IMAGES - IMAGES // 2), metric_names=[], predictions=rows)
    return time.perf_counter() - start, [row["probabilities"] for row in rows]


def bare_round(model, subset) -> tuple[float, list]:
    """The inference loop a person writes by hand around the same model and batches."""
    start = time.perf_counter()
    model.eval()
    probabilities = []
    with torch.inference_mode():
        for batch in DataLoader(subset, batch_size=BATCH):
            probabilities.append(model(on_device(batch["image"], torch.device("cpu"))).softmax(1))
    probabilities = torch.cat(probabilities).tolist()
    return time.perf_counter() - start, probabilities


def main():
    folder = scratch("bench-evaluation-")
    subset = test_subset(folder)
    spec = resolve_spec({"model": {"architecture": ARCHITECTURE}, "batch_size": BATCH, "resources": {"device": "cpu"}})
    torch.manual_seed(0)
    model = build_network(ARCHITECTURE, CHANNELS, len(CLASSES)).eval()
    evaluation_round(model, subset, spec)  # warm-up: first-use costs counted for neither side
    _, bare_probabilities = bare_round(model, subset)
    evaluation, bare = [], []
    for n in range(ROUNDS):
        # Which side goes first alternates too: the second of a pair finds the caches warm.
        if n % 2:
            bare.append(bare_round(model, subset)[0])
        seconds, probabilities = evaluation_round(model, subset, spec)
        evaluation.append(seconds)
        if not n % 2:
            bare.append(bare_round(model, subset)[0])
    # The same numbers, or the comparison means nothing.
    difference = float(np.abs(np.asarray(probabilities) - np.asarray(bare_probabilities)).max())
    ratio = statistics.median(b / e for e, b in zip(evaluation, bare))
    report("evaluation_throughput", {
        "architecture": ARCHITECTURE, "device": "cpu", "side": SIDE, "channels": CHANNELS, "batch_size": BATCH,
        "images": IMAGES, "rounds": ROUNDS, "cpu_threads": torch.get_num_threads(),
        "evaluation_seconds": [round(s, 3) for s in evaluation], "bare_seconds": [round(s, 3) for s in bare],
        "evaluation_images_per_second": round(IMAGES / statistics.median(evaluation), 1),
        "bare_images_per_second": round(IMAGES / statistics.median(bare), 1),
        "largest_probability_difference": difference,
        "throughput_ratio": round(ratio, 3), "target": {"throughput_ratio_at_least": 0.9}, "meets_target": ratio >= 0.9,
    }, indent=2)


if __name__ == "__main__":
    main()

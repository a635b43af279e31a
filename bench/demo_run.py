"""The demo run from zip to ONNX with the default settings, timed; prints JSON.

Target (issue 2): over 90% test accuracy in under two minutes on 2 CPU cores. The trainer's own
cost against a bare PyTorch loop is bench/training_overhead.py's.

BENCH_SMOKE=1: 20 demo images a class, 2 epochs.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench._common import report, scratch, size  # noqa: E402
from workers.engine.demo import demo_subsets  # noqa: E402
from workers.engine.export import export_onnx, max_abs_difference  # noqa: E402
from workers.engine.training.evaluation import measured  # noqa: E402
from workers.engine.training.run import train  # noqa: E402
from workers.engine.training.spec import resolve_spec  # noqa: E402
from workers.engine.training.trainer import TrainingData  # noqa: E402


def main():
    folder = scratch("bench-demo-")
    start = time.perf_counter()
    train_set, validation_set, test_set, classes = demo_subsets(folder, **size({}, {"per_class": 20}))
    prepare_seconds = time.perf_counter() - start
    spec = resolve_spec(size({}, {"epochs": 2}))
    data = TrainingData(train_set, validation_set, 1, classes)
    train_start = time.perf_counter()
    outcome = train(spec, data, checkpoint_folder=folder / "checkpoints")
    training_seconds = time.perf_counter() - train_start
    model = outcome.kept_model()
    test = measured(model, test_set, spec, classes, metric_names=["accuracy"])
    images = torch.stack([test_set[i]["image"] for i in range(len(test_set))])
    export_onnx(model, images[:2], folder / "model.onnx")
    parity = max_abs_difference(model, folder / "model.onnx", images)
    total_seconds = time.perf_counter() - start
    report("demo_run", {
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "samples": len(train_set) + len(validation_set) + len(test_set),
        "epochs": spec.epochs,
        "kept_epoch": outcome.state.best_epoch,
        "prepare_seconds": round(prepare_seconds, 2),
        "training_seconds": round(training_seconds, 2),
        "total_seconds": round(total_seconds, 2),
        "test_accuracy": round(test["accuracy"], 4),
        "onnx_max_abs_difference": parity,
        "target": {"test_accuracy_above": 0.9, "total_seconds_below": 120},
        "meets_target": test["accuracy"] > 0.9 and total_seconds < 120,
    }, indent=2)


if __name__ == "__main__":
    main()

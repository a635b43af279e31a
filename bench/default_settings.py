"""Are the defaults a good first run? Each architecture's default spec against a grid of tuned
settings of the same architecture, on data we did not make: scikit-learn's bundled digits (1,797
scanned 8x8 grayscale digits in 10 classes: the "~1,800 small grayscale images" of issue 12) and
the demo set. Prints JSON: the kept model's test accuracy (mean over three seeds) for the defaults and for
every tuned run.

Target (issue 12): the defaults reach what a tuned run of the same architecture reaches (within a
point of the best tuned run's test accuracy).

`digits_few` keeps 10 training images of each digit (100 in all), where settings make a difference.

Usage: python bench/default_settings.py [digits|digits_few|demo|all] [small_cnn|resnet18|all]
BENCH_SMOKE=1: digits_few (when no set is named), one seed, two tuned settings, every run 2 epochs.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import SMOKE, report, scratch, size  # noqa: E402
from workers.engine.data import CachedImages  # noqa: E402
from workers.engine.demo import demo_subsets  # noqa: E402
from workers.engine.splits import stratified_split  # noqa: E402
from workers.engine.training.evaluation import measured  # noqa: E402
from workers.engine.training.run import train  # noqa: E402
from workers.engine.training.spec import fitted_to_subset, resolve_spec  # noqa: E402
from workers.engine.training.trainer import TrainingData  # noqa: E402

TUNED = [
    {"optimizer": {"name": "adam", "learning_rate": rate}, "schedule": {"name": "constant"}, "epochs": epochs}
    for rate in (3e-4, 1e-3, 3e-3) for epochs in (20, 40)
] + [
    {"optimizer": {"name": name, "learning_rate": rate}, "schedule": {"name": "cosine", "warmup_epochs": 1}, "epochs": epochs}
    for name, rates in (("sgd", (0.01, 0.05)), ("adamw", (1e-3, 3e-3))) for rate in rates for epochs in (20, 40)
]
if SMOKE:  # one of each schedule, short
    TUNED = [{**TUNED[0], "epochs": 2}, {**TUNED[6], "epochs": 2}]


def digits(folder: Path, per_class: int | None = None):
    """scikit-learn's digits as the toolkit's cache: uint8 (N, 1, 8, 8), split 70/15/15 stratified; with
    `per_class`, the training subset cut to that many images of each digit (a small set, where settings matter)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images / 16.0 * 255).astype(np.uint8)[:, None]
    np.save(folder / "digits.npy", images)
    labels = [str(t) for t in bunch.target]
    subsets = stratified_split(labels, {"train": 70, "validation": 15, "test": 15}, seed=0)
    classes = sorted(set(labels), key=int)

    def subset(name):
        rows = [i for i, s in enumerate(subsets) if s == name]
        if name == "train" and per_class:
            rows = [i for digit in classes for i in [r for r in rows if labels[r] == digit][:per_class]]
        return CachedImages(folder / "digits.npy", rows, [classes.index(labels[i]) for i in rows])

    return subset("train"), subset("validation"), subset("test"), classes


SEEDS = size((0, 1, 2), (0,))  # one seed moves test accuracy on a few hundred images by 3 points: compare means


def test_accuracy(spec, data, test_set) -> tuple[float, int, float]:
    """The mean over SEEDS of the kept model's test accuracy, the first seed's kept epoch, the seconds in all."""
    start, accuracies, kept = time.perf_counter(), [], []
    for seed in SEEDS:
        seeded = resolve_spec({**spec.to_dict(), "seed": seed})
        outcome = train(seeded, data)
        result = measured(outcome.kept_model(), test_set, seeded, data.classes, data.class_counts, metric_names=["accuracy"])
        accuracies.append(result["accuracy"])
        kept.append(outcome.state.best_epoch)
    return sum(accuracies) / len(accuracies), kept[0], time.perf_counter() - start


def compare(dataset: str, architecture: str) -> dict:
    folder = scratch("bench-defaults-")
    if dataset.startswith("digits"):
        train_set, validation_set, test_set, classes = digits(folder, 10 if dataset == "digits_few" else None)
    else:
        train_set, validation_set, test_set, classes = demo_subsets(folder)
    data = TrainingData(train_set, validation_set, 1, classes)
    # As a launch resolves it: the default batch fitted to the training subset's size.
    default_spec = fitted_to_subset({"model": {"architecture": architecture}, **size({}, {"epochs": 2})}, len(train_set))
    accuracy, epoch, seconds = test_accuracy(default_spec, data, test_set)
    tuned = []
    for settings in TUNED:
        spec = resolve_spec({"model": {"architecture": architecture}, **settings})
        tuned_accuracy, tuned_epoch, tuned_seconds = test_accuracy(spec, data, test_set)
        tuned.append({"optimizer": spec["optimizer"]["name"], "learning_rate": spec["optimizer"]["learning_rate"],
                      "schedule": spec["schedule"]["name"], "epochs": spec.epochs, "test_accuracy": round(tuned_accuracy, 4),
                      "kept_epoch": tuned_epoch, "seconds": round(tuned_seconds, 1)})
    best = max(tuned, key=lambda run: run["test_accuracy"])
    return {"dataset": dataset, "architecture": architecture, "train_images": len(train_set), "test_images": len(test_set),
            "defaults": {"optimizer": default_spec["optimizer"], "schedule": default_spec["schedule"], "epochs": default_spec.epochs,
                         "batch_size": default_spec["batch_size"],
                         "test_accuracy": round(accuracy, 4), "kept_epoch": epoch, "seconds": round(seconds, 1)},
            "best_tuned": best, "tuned": tuned,
            "defaults_within_a_point_of_best": accuracy >= best["test_accuracy"] - 0.01}


def main():
    datasets = ["digits", "digits_few", "demo"] if len(sys.argv) < 2 or sys.argv[1] == "all" else [sys.argv[1]]
    if SMOKE and len(sys.argv) < 2:
        datasets = ["digits_few"]
    architectures = ["small_cnn"] if len(sys.argv) < 3 else (["small_cnn", "resnet18"] if sys.argv[2] == "all" else [sys.argv[2]])
    results = [compare(d, a) for d in datasets for a in architectures]
    report("default_settings", {"results": results, "meets_target": all(r["defaults_within_a_point_of_best"] for r in results)},
           indent=2)


if __name__ == "__main__":
    main()

"""Does starting from pretrained weights help? MobileNet-V2 from torchvision's ImageNet weights against the same
network from random weights, at equal epochs and otherwise equal settings, on small sets of real images; the
fastai-style fine-tuning preset against plain fine-tuning of all layers; and transfer between two tasks of the
toolkit's own (a model trained on one set of digits starting the training on others). Prints JSON: per set and
setting the kept model's test accuracy (mean and sample standard deviation over SEEDS), the per-seed values and
the seconds per run.

Sets: scikit-learn's digits (1,797 real scanned digits, 8x8, resized to 64x64 inside the network), the training
subset cut to 10 and 30 images of each digit (100 and 300 images; validation and test subsets whole, 270 and
268 images), and the toolkit's demo set (faint blobs in noise, 64x64; 150 images a class: 210 to train, 46 to
validate, 44 to test).

Settings (all with the architecture's defaults otherwise: AdamW, weight decay 0.01, batch fitted to the subset):
  imagenet            ImageNet weights, all layers trained for EPOCHS at the default rate (1e-3, cosine, 1 warm-up epoch)
  random              random weights, the same
  imagenet_fine_tune  ImageNet weights, the fastai fine_tune preset: 1 epoch training the head only at 2e-3, then
                      EPOCHS - 1 epochs of all layers at 1e-3 for the head down to 1e-5 for the first block
                      (layer_rate_ratio 100), a one-cycle schedule in each phase (30% rising from 1/5 of the peak):
                      what the run form's "Fine-tune (fastai)" button fills in
  imagenet_head_first the preset with one rate for all layers (layer_rate_ratio 1): which half of the preset matters
  random_2x_epochs    random weights given twice the epochs (does ImageNet only save time?)

Tasks: a small CNN trained on the digits 0-4 (their whole training subset) starts a run on the digits 5-9 with 10
training images of each; against the same network from random weights, plain and with the preset; and, to show
why the head is replaced when the class names differ, the same starts keeping the earlier model's head.

The ImageNet file comes from `make imagenet-weights` (var/weights, or $TOOLKIT_WEIGHTS_DIR). Runs use one thread
(--threads): on a small shared CPU, more threads mostly wait on each other.

Without the ImageNet file the MobileNet-V2 sets are reported skipped (and the bench exits 0) and the tasks still run.

Usage: python bench/transfer_evidence.py [all|digits_100|digits_300|demo|tasks] [--epochs N] [--seeds N] [--threads N]
BENCH_SMOKE=1: digits_100 and tasks (when no set is named), 2 epochs, 1 seed.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size, skip  # noqa: E402
from bench.default_settings import digits  # noqa: E402
from workers.engine.data import CachedImages  # noqa: E402
from workers.engine.demo import demo_subsets  # noqa: E402
from workers.engine.training.evaluation import measured  # noqa: E402
from workers.engine.training.spec import fitted_to_subset  # noqa: E402
from workers.engine.training.trainer import Trainer, TrainingData  # noqa: E402
from workers.engine.zoo.registry import MODELS  # noqa: E402
from workers.engine.zoo.start import ModelStart  # noqa: E402
from workers.engine.zoo.weights import WeightsUnavailable, find_weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_FOLDER = os.environ.get("TOOLKIT_WEIGHTS_DIR", str(Path(os.environ.get("TOOLKIT_VAR_DIR", ROOT / "var")) / "weights"))
ARCHITECTURE = "mobilenet_v2"
# Equal within each comparison (but random_2x_epochs); about 100 optimizer steps per run in each set.
EPOCHS = {"digits_100": 12, "digits_300": 10, "demo": 10, "tasks": 15}
INPUT_SIZE = 64  # digits are 8x8: ImageNet's filters need some pixels to look at (a 32x32 input ends in a 1x1 map)


def imagenet_missing() -> str | None:
    """Why the MobileNet-V2 sets cannot run here (the ImageNet file is not on this machine), or None."""
    try:
        find_weights(MODELS[ARCHITECTURE].weights_named("imagenet"), WEIGHTS_FOLDER)
    except WeightsUnavailable as error:
        return f"no ImageNet weights file on this machine (`make imagenet-weights` fetches it): {error}"
    return None


def fine_tune_preset(epochs: int, head_rate: float = 2e-3, rate: float = 1e-3, ratio: float = 100) -> dict:
    """fastai's `fine_tune` as the run form's "Fine-tune (fastai)" fills it in (frontend/static/frontend/js/model_start.js):
    the head alone for an epoch, then everything with discriminative rates, one cycle each (pct_start 0.3, div 5)."""
    return {"phases": [{"epochs": 1, "train": "head", "learning_rate": head_rate},
                       {"epochs": epochs - 1, "learning_rate": rate, "layer_rate_ratio": ratio}],
            "schedule": {"name": "one_cycle", "rise_fraction": 0.3, "start_factor": 0.2, "warmup_epochs": 0}}


def mobilenet_settings(epochs: int, input_size: int) -> dict[str, dict]:
    model = {"architecture": ARCHITECTURE, "input_size": input_size}
    return {
        "imagenet": {"model": {**model, "weights": "imagenet"}, "epochs": epochs},
        "random": {"model": {**model, "weights": "random"}, "epochs": epochs},
        "imagenet_fine_tune": {"model": {**model, "weights": "imagenet"}, **fine_tune_preset(epochs)},
        "imagenet_head_first": {"model": {**model, "weights": "imagenet"}, **fine_tune_preset(epochs, ratio=1)},
        "random_2x_epochs": {"model": {**model, "weights": "random"}, "epochs": 2 * epochs},
    }


def test_accuracy(settings: dict, data: TrainingData, test_set, start: ModelStart, seed: int) -> tuple[float, int]:
    """The kept model's test accuracy and its epoch, for one seed."""
    spec = fitted_to_subset({**settings, "seed": seed}, len(data.train))
    outcome = Trainer(spec, data, start=start).fit()
    result = measured(outcome.kept_model(), test_set, spec, data.classes, data.class_counts, metric_names=["accuracy"])
    return result["accuracy"], outcome.state.best_epoch


def compare(settings: dict[str, dict], data: TrainingData, test_set, seeds: int, start: ModelStart) -> dict:
    results = {}
    for name, values in settings.items():
        accuracies, epochs, began = [], [], time.perf_counter()
        for seed in range(seeds):
            accuracy, epoch = test_accuracy(values, data, test_set, start, seed)
            accuracies.append(accuracy)
            epochs.append(epoch)
        results[name] = {"mean": round(statistics.mean(accuracies), 4),
                         "std": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else 0.0,
                         "per_seed": [round(a, 4) for a in accuracies], "kept_epochs": epochs,
                         "seconds_per_run": round((time.perf_counter() - began) / seeds, 1)}
        print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    return results


def mobilenet_on(name: str, folder: Path, epochs: int, seeds: int) -> dict:
    if name == "demo":
        train_set, validation_set, test_set, classes = demo_subsets(folder, per_class=150)
        input_size = 0  # 64x64 already
    else:
        train_set, validation_set, test_set, classes = digits(folder, int(name.split("_")[1]) // 10)
        input_size = INPUT_SIZE
    data = TrainingData(train_set, validation_set, 1, classes)
    print(f"{name}: {len(train_set)} training images", file=sys.stderr, flush=True)
    results = compare(mobilenet_settings(epochs, input_size), data, test_set, seeds, ModelStart(weights_folder=WEIGHTS_FOLDER))
    return {"set": name, "architecture": ARCHITECTURE, "input_size": input_size or 64, "epochs": epochs,
            "train_images": len(train_set), "validation_images": len(validation_set), "test_images": len(test_set),
            "results": results, "imagenet_minus_random": round(results["imagenet"]["mean"] - results["random"]["mean"], 4),
            "fine_tune_minus_plain": round(results["imagenet_fine_tune"]["mean"] - results["imagenet"]["mean"], 4),
            "head_first_minus_plain": round(results["imagenet_head_first"]["mean"] - results["imagenet"]["mean"], 4)}


def digits_of(subset: CachedImages, digits_kept: range, per_class: int | None = None) -> CachedImages:
    """The images of some digits (classes renumbered from 0), at most `per_class` of each."""
    rows, targets, counts = [], [], {}
    for index, target in zip(subset.indices.tolist(), subset.targets.tolist()):
        if target in digits_kept and counts.get(target, 0) < (per_class or len(subset)):
            counts[target] = counts.get(target, 0) + 1
            rows.append(index)
            targets.append(target - digits_kept.start)
    return CachedImages(subset.cache_path, rows, targets)


def between_tasks(folder: Path, epochs: int, seeds: int, per_class: int = 10) -> dict:
    """A small CNN trained on digits 0-4 starts the training on 5-9 (few images), against random weights."""
    train_set, validation_set, test_set, _ = digits(folder)
    first, second = range(0, 5), range(5, 10)
    source = TrainingData(digits_of(train_set, first), digits_of(validation_set, first), 1, [str(d) for d in first])
    target = TrainingData(digits_of(train_set, second, per_class), digits_of(validation_set, second), 1, [str(d) for d in second])
    model = {"architecture": "small_cnn", "input_size": 32}
    began = time.perf_counter()
    spec = fitted_to_subset({"model": {**model, "weights": "random"}, "epochs": epochs}, len(source.train))
    outcome = Trainer(spec, source).fit()
    state_path = folder / "digits-0-4.pt"
    torch.save(outcome.kept_model().state_dict(), state_path)
    source_accuracy = measured(outcome.model, digits_of(test_set, first), spec, source.classes, metric_names=["accuracy"])
    pretraining_seconds = time.perf_counter() - began
    print(f"tasks: pretrained on {len(source.train)} images of 0-4, test accuracy {source_accuracy['accuracy']:.3f}", file=sys.stderr)
    earlier = {"model": {**model, "weights": "run", "start_run": 1}}
    # The small CNN's default rate is 3e-3 (1e-3 for MobileNet-V2): the preset's rates scaled alike.
    settings = {"earlier_model": {**earlier, "epochs": epochs},
                "random": {"model": {**model, "weights": "random"}, "epochs": epochs},
                "earlier_model_fine_tune": {**earlier, **fine_tune_preset(epochs, head_rate=6e-3, rate=3e-3)},
                "earlier_model_head_first": {**earlier, **fine_tune_preset(epochs, head_rate=6e-3, rate=3e-3, ratio=1)}}
    test = digits_of(test_set, second)
    # The earlier model's class names known ("0".."4"), so its head is replaced for "5".."9" although as many.
    results = compare(settings, target, test, seeds, ModelStart(state_path=str(state_path), classes=source.classes))
    # Names not known (the head kept, as many classes): what a head trained for other classes costs.
    kept_head = {f"{name}_head_kept": settings[name] for name in ("earlier_model", "earlier_model_fine_tune")}
    results.update(compare(kept_head, target, test, seeds, ModelStart(state_path=str(state_path))))
    return {"set": "digits 0-4 -> digits 5-9", "architecture": "small_cnn", "input_size": 32, "epochs": epochs,
            "source_train_images": len(source.train), "source_test_accuracy": round(source_accuracy["accuracy"], 4),
            "pretraining_seconds": round(pretraining_seconds, 1),
            "train_images": len(target.train), "validation_images": len(target.validation), "test_images": len(test),
            "results": results, "earlier_minus_random": round(results["earlier_model"]["mean"] - results["random"]["mean"], 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="?", choices=["all", "digits_100", "digits_300", "demo", "tasks"],
                        help="default: all (BENCH_SMOKE=1: digits_100 and tasks)")
    parser.add_argument("--epochs", type=int, default=size(None, 2), help=f"every comparison's epochs (default: {EPOCHS})")
    parser.add_argument("--seeds", type=int, default=size(3, 1))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    everything = ["digits_100", "digits_300", "demo", "tasks"]
    names = size(everything, ["digits_100", "tasks"]) if args.sets is None else everything if args.sets == "all" else [args.sets]
    missing = imagenet_missing()
    began, results = time.perf_counter(), []
    for name in names:
        if name != "tasks" and missing:
            results.append({"set": name, "architecture": ARCHITECTURE, "skipped": missing})
            continue
        folder = scratch("bench-transfer-")
        epochs = args.epochs or EPOCHS[name]
        results.append(between_tasks(folder, epochs, args.seeds) if name == "tasks" else mobilenet_on(name, folder, epochs, args.seeds))
    if all("skipped" in result for result in results):
        skip("transfer_evidence", missing)
    report("transfer_evidence", {"seeds": args.seeds, "threads": args.threads, "results": results,
                                 "seconds": round(time.perf_counter() - began, 1)}, indent=2)


if __name__ == "__main__":
    main()

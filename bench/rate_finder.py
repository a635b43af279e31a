"""The learning-rate finder on the demo data, and whether its suggestion trains; prints JSON.

For each spec (the defaults, and the defaults with label smoothing 0.1): a sweep, timed, then two runs
of the spec's epochs, one at the spec's own rate and one at the suggested rate, each measured on the
test subset (its kept epoch, as a run keeps it) and by its first epoch's training loss.

Usage: python bench/rate_finder.py [epochs]   (BENCH_SMOKE=1: 20 demo images a class, sweeps of 15 steps, 1 epoch)
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size  # noqa: E402
from workers.engine.demo import demo_subsets  # noqa: E402
from workers.engine.observer import SilentObserver  # noqa: E402
from workers.engine.training.evaluation import measured  # noqa: E402
from workers.engine.training.finder import find_learning_rate  # noqa: E402
from workers.engine.training.run import train  # noqa: E402
from workers.engine.training.spec import resolve_spec  # noqa: E402
from workers.engine.training.trainer import TrainingData  # noqa: E402

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else size(20, 1)
SPECS = {"defaults": {}, "label_smoothing": {"loss": {"name": "cross_entropy", "label_smoothing": 0.1}}}


def trained(settings: dict, data: TrainingData, test) -> dict:
    spec = resolve_spec(settings)
    observer = SilentObserver()
    start = time.perf_counter()
    model = train(spec, data, observer).kept_model()
    seconds = time.perf_counter() - start
    measured_now = measured(model, test, spec, data.classes, data.class_counts, metric_names=["accuracy"])
    first_epoch = next(value for epoch, subset, name, value in observer.metrics if (epoch, subset, name) == (1, "train", "loss"))
    return {"learning_rate": spec.optimizer.learning_rate, "test_loss": round(measured_now["loss"], 4),
            "test_accuracy": round(measured_now["accuracy"], 4), "first_epoch_train_loss": round(first_epoch, 4), "seconds": round(seconds, 1)}


def main():
    train_set, validation, test, classes = demo_subsets(scratch("bench-finder-"), **size({}, {"per_class": 20}))
    data = TrainingData(train_set, validation, 1, classes)
    figures = {"epochs": EPOCHS, "training_images": len(train_set)}
    for name, settings in SPECS.items():
        settings = {**settings, "epochs": EPOCHS}
        start = time.perf_counter()
        found = find_learning_rate(resolve_spec(settings), data, steps=size(None, 15))
        seconds = time.perf_counter() - start
        own_rate = resolve_spec(settings).optimizer.learning_rate
        figures[name] = {
            "sweep": {"steps": len(found["rates"]), "last_rate": found["rates"][-1], "ended": found["stopped_early_because"],
                      "seconds": round(seconds, 1), "suggestion": found["suggestion"]},
            "at_own_rate": trained(settings, data, test) | {"learning_rate": own_rate},
            "at_suggestion": "no suggestion: the curve showed no clear fall",
        }
        if found["suggestion"] is not None:
            suggested = {**settings, "optimizer": {"name": "adamw", "learning_rate": float(f"{found['suggestion']:.2g}")}}
            figures[name]["at_suggestion"] = trained(suggested, data, test)
        print(json.dumps({name: figures[name]}), file=sys.stderr, flush=True)
    report("rate_finder", figures, indent=2)


if __name__ == "__main__":
    main()

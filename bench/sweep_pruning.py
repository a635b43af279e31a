"""Does a sweep's pruning save training without losing the best settings? The same Bayesian sweep (Optuna's TPE, the
toolkit's own Study: workers/engine/sweeps.py) over the learning rate and weight decay of small_cnn on data we did
not make (scikit-learn's digits, 10 training images per digit: where settings matter), once with successive halving
and once without, each trial trained by the engine as a run trains. Prints JSON: the epochs each sweep trained, the
ratio (pruned / unpruned), the best validation accuracy each found, the test accuracy of each best and of the
defaults.

Target: pruning trains at most 0.7x the epochs of the unpruned sweep while its best validation accuracy is within two
points of the unpruned sweep's best.

BENCH_SMOKE=1: 3 trials of 2 epochs each (no measurement: the whole path, seconds).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import report, scratch, size  # noqa: E402
from bench.default_settings import digits  # noqa: E402
from workers.engine.observer import SilentObserver  # noqa: E402
from workers.engine.sweeps import Study, parsed_search  # noqa: E402
from workers.engine.training.evaluation import measured  # noqa: E402
from workers.engine.training.run import train  # noqa: E402
from workers.engine.training.spec import fitted_to_subset, resolve_spec  # noqa: E402
from workers.engine.training.trainer import TrainingData  # noqa: E402

TRIALS = size(16, 3)
EPOCHS = size(20, 2)
SEARCH = {"sampler": "bayesian", "trials": TRIALS, "parallel": 1,
          "dimensions": [{"setting": "optimizer.learning_rate", "low": 1e-4, "high": 0.1, "log": True},
                         {"setting": "optimizer.weight_decay", "low": 1e-5, "high": 0.1, "log": True}]}
BASE = {"model": {"architecture": "small_cnn"}, "epochs": EPOCHS, "monitor": "validation.accuracy",
        "early_stopping": {"enabled": False}, "seed": 0}


class TrialObserver(SilentObserver):
    """What a sweep member's reporter does (workers/training.py): the objective told to the study each epoch, and a
    stop once the pruner says so."""

    def __init__(self, study: Study, trial: int):
        super().__init__()
        self.study, self.trial, self.pruned_at = study, trial, None

    def metric(self, epoch, subset, name, value):
        super().metric(epoch, subset, name, value)
        if (subset, name) == ("validation", "accuracy") and self.pruned_at is None and self.study.report(self.trial, epoch, value):
            self.pruned_at = epoch

    def should_stop(self):
        return self.pruned_at is not None


def sweep(pruner: str, data: TrainingData, test_set, folder: Path) -> dict:
    study = Study(folder / f"{pruner}.journal", parsed_search({**SEARCH, "pruner": pruner}), "maximize", EPOCHS, seed=0)
    epochs, trials, start = 0, [], time.perf_counter()
    for _ in range(TRIALS):
        number, values = study.ask()
        spec = resolve_spec({**BASE, "optimizer": {"name": "adamw", "learning_rate": values["optimizer.learning_rate"],
                                                   "weight_decay": values["optimizer.weight_decay"]}})
        observer = TrialObserver(study, number)
        outcome = train(spec, data, observer)
        epochs += observer.pruned_at or outcome.state.epoch
        if observer.pruned_at is not None:
            study.tell(number, "pruned")
            trials.append({"values": values, "pruned_at": observer.pruned_at})
            continue
        study.tell(number, "complete", outcome.state.best_value)
        trials.append({"values": values, "validation_accuracy": outcome.state.best_value, "spec": spec, "outcome": outcome})
    complete = [t for t in trials if "validation_accuracy" in t]
    best = max(complete, key=lambda t: t["validation_accuracy"])
    tested = measured(best["outcome"].kept_model(), test_set, best["spec"], data.classes, data.class_counts, metric_names=["accuracy"])
    return {"pruner": pruner, "epochs_trained": epochs, "pruned": len(trials) - len(complete),
            "best_values": {k: round(v, 6) for k, v in best["values"].items()},
            "best_validation_accuracy": round(best["validation_accuracy"], 4), "best_test_accuracy": round(tested["accuracy"], 4),
            "seconds": round(time.perf_counter() - start, 1)}


def main():
    folder = scratch("bench-sweep-")
    train_set, validation_set, test_set, classes = digits(folder, per_class=10)
    data = TrainingData(train_set, validation_set, 1, classes)
    pruned, unpruned = sweep("successive_halving", data, test_set, folder), sweep("none", data, test_set, folder)
    defaults = fitted_to_subset({"model": {"architecture": "small_cnn"}, **size({}, {"epochs": 2})}, len(train_set))
    default_test = measured(train(defaults, data).kept_model(), test_set, defaults, data.classes, data.class_counts,
                            metric_names=["accuracy"])["accuracy"]
    ratio = pruned["epochs_trained"] / unpruned["epochs_trained"]
    gap = unpruned["best_validation_accuracy"] - pruned["best_validation_accuracy"]
    report("sweep_pruning", {"dataset": "digits_few", "architecture": "small_cnn", "trials": TRIALS, "epochs": EPOCHS,
                             "with_pruning": pruned, "without_pruning": unpruned, "defaults_test_accuracy": round(default_test, 4),
                             "epochs_ratio": round(ratio, 3), "best_validation_gap": round(gap, 4),
                             "meets_target": ratio <= 0.7 and gap <= 0.02}, indent=2)


if __name__ == "__main__":
    main()

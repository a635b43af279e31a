"""The learning-rate finder on the demo data: the range test's curve, the suggestion read off it, a run
trained at that rate, and what the sweep must not do (differ between two runs of one seed, ignore a stop,
change anything it was given)."""
import math

import numpy as np
import pytest
import torch

from workers.engine.data import CachedImages
from workers.engine.demo import demo_subsets
from workers.engine.observer import SilentObserver
from workers.engine.training import finder
from workers.engine.training.finder import find_learning_rate, suggested_rate
from workers.engine.training.run import train
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData

# Label smoothing keeps the loss (and its gradients) away from zero: with plain cross-entropy the easy demo is
# learned to a loss so near zero that Adam's steps shrink with its gradients, and even a rate of 10 may not blow it up.
# Adam, not the default AdamW: at rates near 10 AdamW's decoupled weight decay shrinks every weight by a tenth per
# step, which on some CPUs (seen on an AMD EPYC) held the loss from blowing up before the sweep's end.
SMOOTHED_LABELS = {"loss": {"name": "cross_entropy", "label_smoothing": 0.1}, "optimizer": {"name": "adam"}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    train_set, validation, _, classes = demo_subsets(folder)
    return TrainingData(train_set, validation, 1, classes), folder


@pytest.fixture(scope="module")
def sweep(demo):
    data, _ = demo
    observer = SilentObserver()
    return find_learning_rate(resolve_spec(SMOOTHED_LABELS), data, observer), observer


def test_the_curve_falls_then_blows_up(sweep):
    found, observer = sweep
    rates, losses = found["rates"], found["losses"]
    assert rates[0] == pytest.approx(finder.START_RATE) and all(a < b <= finder.END_RATE for a, b in zip(rates, rates[1:]))
    lowest = int(np.argmin(losses))
    assert losses[lowest] < 0.6 * losses[0], "it falls once the rate is large enough to learn"
    assert found["stopped_early_because"] == "diverged" and losses[-1] > finder.DIVERGED * losses[lowest], "then it blows up"
    assert 0 < lowest < len(losses) - 1 and len(rates) < finder.MOST_STEPS
    assert observer.last_progress == (len(rates), finder.MOST_STEPS)


def test_the_suggestion_lies_in_the_falling_part(sweep):
    found, _ = sweep
    rates, losses, suggestion = found["rates"], found["losses"], found["suggestion"]
    lowest = int(np.argmin(losses))
    assert rates[0] < suggestion < rates[lowest]
    at = rates.index(suggestion)
    assert losses[at] < losses[0] - 0.25 * (losses[0] - losses[lowest]), "well below where it started"
    assert losses[at + 3] < losses[at - 3], "and still falling"


def test_a_run_at_the_suggested_rate_trains(sweep, demo):
    """Over one epoch at the suggestion the training loss falls well below the untrained model's; at the sweep's
    first rate it stays where it was. (The training loss: after one epoch the validation loss still suffers from
    BatchNorm statistics gathered while the weights moved fast.)"""
    data, _ = demo
    suggestion = sweep[0]["suggestion"]

    def training_loss_over_an_epoch(rate):
        spec = resolve_spec({**SMOOTHED_LABELS, "epochs": 1, "optimizer": {"name": "adamw", "learning_rate": rate}})
        observer = SilentObserver()
        train(spec, data, observer)
        return next(value for _, subset, name, value in observer.metrics if (subset, name) == ("train", "loss"))

    untrained = Trainer(resolve_spec(SMOOTHED_LABELS), data).validate()["loss"]
    assert training_loss_over_an_epoch(suggestion) < 0.8 * untrained
    assert training_loss_over_an_epoch(finder.START_RATE) > 0.95 * untrained


def test_a_sweep_is_reproducible_from_its_seed(demo):
    data, _ = demo
    first, again, other = (find_learning_rate(resolve_spec({"seed": seed}), data, steps=12) for seed in (3, 3, 4))
    assert first == again
    assert first["losses"] != other["losses"]


class StopAfter(SilentObserver):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def should_stop(self):
        return self.last_progress[0] >= self.steps


def test_a_stop_ends_the_sweep_after_the_current_step(demo):
    data, _ = demo
    observer = StopAfter(5)
    found = find_learning_rate(resolve_spec({}), data, observer)
    assert found["stopped_early_because"] == "stopped" and len(found["rates"]) == len(found["losses"]) == 5
    assert observer.last_progress == (5, finder.MOST_STEPS)


def test_a_sweep_changes_nothing_it_was_given(demo):
    """The spec, the data (its augmentation and reading mode) and the files on disk are as they were: the
    sweep's weights live and die with its own Trainer; there is no checkpoint."""
    data, folder = demo
    spec = resolve_spec({})
    before = (spec.to_dict(), reading(data.train), reading(data.validation), files_in(folder))
    find_learning_rate(spec, data, steps=8)
    assert (spec.to_dict(), reading(data.train), reading(data.validation), files_in(folder)) == before


def reading(images):
    return images.augment, images.raw, images.epoch, images.indices.tolist(), images.targets.tolist()


def files_in(folder):
    return {path: (stat.st_size, stat.st_mtime_ns) for path in folder.rglob("*") if (stat := path.stat())}


def test_a_small_training_subset_is_swept_in_fewer_steps_cycling_through_its_batches(demo):
    data, _ = demo
    small = TrainingData(first_images(data.train, 40), data.validation, 1, data.classes)
    found = find_learning_rate(resolve_spec({"batch_size": 16}), small)
    assert finder.sweep_steps(3) == finder.FEWEST_STEPS and finder.sweep_steps(14) == finder.MOST_STEPS
    assert len(found["rates"]) > 3, "past the first pass over the three batches"
    assert len(found["rates"]) == finder.FEWEST_STEPS or found["stopped_early_because"]


def first_images(images, count):
    return CachedImages(images.cache_path, images.indices[:count].tolist(), images.targets[:count].tolist())


def sigmoid_fall(rates, top=0.7, bottom=0.1, middle=1e-3):
    return [bottom + (top - bottom) / (1 + (rate / middle) ** 2) for rate in rates]


def test_the_suggestion_is_the_middle_of_an_s_shaped_fall_even_through_noise():
    rates = np.geomspace(finder.START_RATE, finder.END_RATE, 100).tolist()
    losses = sigmoid_fall(rates)
    assert math.log10(suggested_rate(rates, losses)) == pytest.approx(-3, abs=0.1)
    noisy = (np.array(losses) + np.random.default_rng(0).normal(0, 0.02, len(losses))).tolist()
    assert math.log10(suggested_rate(rates, noisy)) == pytest.approx(-3, abs=0.3)
    rising = losses[:60] + [losses[59] * 1.5**k for k in range(1, 11)]
    assert math.log10(suggested_rate(rates[:70], rising)) == pytest.approx(-3, abs=0.1), "the blow-up after the fall changes nothing"
    unlucky_start = [2.0, 1.5, *losses[2:]]
    assert math.log10(suggested_rate(rates, unlucky_start, settled=finder.settling_steps(100))) == pytest.approx(-3, abs=0.1), \
        "the first batches, before the average settles, set neither the top nor the bottom"


def test_no_rate_is_suggested_when_the_loss_never_clearly_fell():
    rates = np.geomspace(finder.START_RATE, finder.END_RATE, 50).tolist()
    assert suggested_rate(rates, [0.7 - 0.001 * k for k in range(50)]) is None, "a fall of 7 %: no clear fall"
    assert suggested_rate(rates, [0.7 * 1.05**k for k in range(50)]) is None, "it only rose"
    assert suggested_rate(rates[:2], [0.7, 0.1]) is None, "too few points to tell"


def test_the_sweep_trains_what_the_first_phase_trains(demo, monkeypatch):
    """A run whose first phase trains the head alone is swept with the rest frozen (fastai's lr_find before
    fine_tune): the rate found is that phase's. Without phases, everything learns."""
    from workers.engine.training import trainer as trainer_module
    from workers.engine.zoo.transfer import block_prefixes, in_block

    data, _ = demo
    built = []

    class Recorded(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append((self, {name: value.clone() for name, value in self.model.state_dict().items()}))

    monkeypatch.setattr(trainer_module, "Trainer", Recorded)
    head_first = {**SMOOTHED_LABELS, "model": {"architecture": "resnet18"}, "batch_size": 8,
                  "phases": [{"epochs": 1, "learning_rate": 1e-3, "train": "head"}, {"epochs": 1, "learning_rate": 5e-4}]}
    for spec, head_only in ((head_first, True), ({**head_first, "phases": []}, False)):
        built.clear()
        find_learning_rate(resolve_spec(spec), data, steps=6)
        trainer, before = built[0]
        after = trainer.model.state_dict()
        head = block_prefixes(trainer.model, "resnet18")[-1]
        moved = {name for name in before if not torch.equal(before[name], after[name])}
        assert any(in_block(name, head) for name in moved)
        backbone_moved = {name for name in moved if not in_block(name, head)}
        # Frozen BatchNorm stays in eval mode: its running statistics do not move either.
        assert (not backbone_moved) if head_only else any(name.endswith("running_mean") for name in backbone_moved), spec

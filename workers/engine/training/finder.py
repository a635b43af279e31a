"""The learning-rate finder: Smith's range test (arXiv:1506.01186), in the form fastai made popular.

A short mock training on the training subset: one optimizer step per rate, the rate growing
exponentially from 1e-7 to 10, while the loss is smoothed (one batch's loss is too noisy to read).
The curve stays flat while the rate is too small to learn, falls once it is large enough, and
blows up once it is too large; the sweep stops there (the smoothed loss past 4x its lowest, or not
a number), so a search costs at most about a hundred batches.

The model, optimizer, loss, precision, batch order and augmentation are the Trainer's own, built
from the spec exactly as a run builds them: a Trainer is constructed (with no callbacks, so it
keeps, reports and writes nothing) and driven here one step at a time. The schedule and warm-up are
left out: the sweep sets the rate of every step itself. It trains what the run's first phase trains
(the head alone, all but the first blocks, each block at its share of the rate), as fastai's
lr_find before fine_tune does: the rate found is the first phase's, and the run form scales the
later phases' rates with it.
A data-parallel run's processes are not started: the sweep runs in this one, at the per-process
batch size. Nothing persistent changes; the trained weights go with the Trainer.

`suggested_rate` reads a rate off the curve; docs/rate-finder.md says why this rule. The web tier reads
the endings' names, so torch (with the Trainer) is imported by the sweep, not by this module.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..observer import JobObserver, SilentObserver

if TYPE_CHECKING:
    import torch

    from ..zoo.start import ModelStart
    from .spec import TrainingSpec
    from .trainer import Trainer, TrainingData

START_RATE, END_RATE = 1e-7, 10.0
MOST_STEPS = 100
FEWEST_STEPS = 40
MOST_PASSES = 8  # over the training subset: a small subset seen many more times is memorised, and the curve says little
DIVERGED = 4.0  # the sweep ends once the smoothed loss is this many times its lowest (once settled: `settling_steps`)
HALF_LIFE = 1 / 15  # of the sweep: the moving average forgets half of a batch's loss over about half a decade of rates
CLEAR_FALL = 0.1  # the smoothed loss must fall by this share of its highest for the curve to suggest a rate

EARLY_ENDINGS = {
    "diverged": f"the loss grew past {DIVERGED:g} times its lowest: the rates above are too high",
    "not_finite": "the loss stopped being a number (it overflowed): the rates above are too high",
    "stopped": "stopped by the user",
}


def find_learning_rate(spec: TrainingSpec, data: TrainingData, observer: JobObserver | None = None,
                       steps: int | None = None, start: ModelStart | None = None) -> dict:
    """Sweep the rates on the training subset: {rates, losses (smoothed), suggestion (a rate, or None
    when the curve shows no clear fall), stopped_early_because (a key of EARLY_ENDINGS, or None)}.
    `start` is where the run's starting weights are: the sweep starts from the model the run would."""
    from .trainer import Trainer

    observer = observer or SilentObserver()
    trainer = Trainer(spec, data, observer, callbacks=[], start=start)
    steps = steps or sweep_steps(trainer.steps_per_epoch)
    settled = settling_steps(steps)
    smoothed = MovingAverage(smoothing_for(steps))
    rates: list[float] = []
    losses: list[float] = []
    lowest, ending = math.inf, None
    trainer.network.train()
    trainer.set_trainable(spec.phase_at(1))  # after train(): frozen BatchNorm back in eval mode
    for rate, (batch, epoch) in zip(sweep_rates(steps), cycled_batches(trainer)):
        trainer.set_learning_rate(rate)
        loss = trainer.train_step(batch, epoch).item()
        if not math.isfinite(loss):
            ending = "not_finite"
            break
        rates.append(rate)
        losses.append(smoothed.add(loss))
        observer.progress(len(rates), steps, f"rate {rate:.1e}: loss {losses[-1]:.3g}")
        if len(losses) > settled:
            lowest = min(lowest, losses[-1])
        if losses[-1] > DIVERGED * lowest:
            ending = "diverged"
            break
        if observer.should_stop():
            ending = "stopped"
            break
    suggestion = suggested_rate(rates, losses, settled)
    return {"rates": rates, "losses": losses, "suggestion": suggestion, "stopped_early_because": ending}


def sweep_steps(batches_per_epoch: int) -> int:
    """About a hundred steps; fewer on a small training subset (at most MOST_PASSES passes over it)."""
    return max(FEWEST_STEPS, min(MOST_STEPS, MOST_PASSES * batches_per_epoch))


def sweep_rates(steps: int) -> list[float]:
    """`steps` rates from START_RATE to END_RATE, each the same factor above the last."""
    return [START_RATE * (END_RATE / START_RATE) ** (k / (steps - 1)) for k in range(steps)]


def smoothing_for(steps: int) -> float:
    """The moving average's factor, so that it spans the same range of rates whatever the number of steps."""
    return 0.5 ** (1 / half_life(steps))


def half_life(steps: int) -> float:
    return max(1.0, HALF_LIFE * steps)


def settling_steps(steps: int) -> int:
    """The first steps, before the moving average has a half-life of batches behind it."""
    return math.ceil(half_life(steps))


class MovingAverage:
    """An exponential moving average, bias-corrected: started at zero, it would underestimate the first values."""

    def __init__(self, beta: float):
        self.beta, self.average, self.count = beta, 0.0, 0

    def add(self, value: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * value
        return self.average / (1 - self.beta**self.count)


def cycled_batches(trainer: Trainer) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
    """The run's batches, epoch after epoch (each shuffled as the run would), for as long as the sweep asks."""
    epoch = 0
    while True:
        epoch += 1
        trainer.sampler.set_epoch(epoch)
        for batch in trainer.loader:
            yield batch, epoch


def suggested_rate(rates: list[float], losses: list[float], settled: int = 0) -> float | None:
    """The rate halfway down the curve's fall: the first at which the smoothed loss is back to the middle
    between its highest (before the lowest) and its lowest. The fall of a range test is S-shaped against
    the log of the rate, and an S falls fastest at its middle, so this is the steepest descent (Smith's
    choice) found without differentiating a noisy curve; it always lies within the falling part.

    The first `settled` points are left out: until the moving average spans a few batches, it is little
    more than one batch's loss, and one lucky or unlucky batch must not set the top or the bottom.
    None when the loss never fell by CLEAR_FALL of its highest: too few points, or no rate learned."""
    points = range(settled, len(losses))
    if len(points) < 3:
        return None
    lowest = min(points, key=losses.__getitem__)
    highest = max(range(settled, lowest + 1), key=losses.__getitem__)
    fall = losses[highest] - losses[lowest]
    if fall < CLEAR_FALL * losses[highest]:
        return None
    middle = losses[highest] - fall / 2
    return next(rates[k] for k in range(highest, lowest + 1) if losses[k] <= middle)

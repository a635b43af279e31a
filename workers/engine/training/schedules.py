"""Learning-rate schedules by name: a factor of the optimizer's rate at every training step.

Written in plain Python rather than with torch's LRScheduler classes: the run form draws the curve
before launch in the web process, which must not import torch (about 500 MB), and the trainer sets
each step's rate from the very same `factor`, so the drawn curve is the one the run follows.
A run in phases restarts the schedule (warm-up included) at the start of each phase.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..params import Configurable, Param, ParamError, registry_of

SCHEDULES, register = registry_of("schedule")

WARMUP = Param("warmup_epochs", "int", 0, "Epochs at the start over which the rate climbs from near 0 to its value: steadies "
               "the first updates, above all with large rates or fresh heads on pretrained models.", 0, 100)


@dataclass
class Plateau:
    """What reduce-on-plateau remembers between epochs (kept in checkpoints)."""
    factor: float = 1.0
    best: float | None = None
    bad_epochs: int = 0


class Schedule(Configurable):
    own_params: tuple[Param, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.params = (*cls.own_params, WARMUP)

    def factor(self, step: int, steps_per_epoch: int, total_steps: int, plateau: Plateau | None = None) -> float:
        """The multiplier of the base rate at `step` (0-based) of a phase of `total_steps` steps."""
        warm = self.warmup_epochs * steps_per_epoch
        reduced = plateau.factor if plateau else 1.0
        if step < warm:
            return self.shape(0, steps_per_epoch, max(total_steps - warm, 1)) * reduced * (step + 1) / warm
        return self.shape(step - warm, steps_per_epoch, max(total_steps - warm, 1)) * reduced

    def shape(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        """The factor `step` steps after the warm-up, of `total_steps` after it."""
        raise NotImplementedError

    def check_fits(self, epochs: int) -> None:
        """Refuse a schedule that cannot play out within a phase of `epochs` epochs."""
        if self.warmup_epochs and self.warmup_epochs >= epochs:
            raise ParamError("warmup_epochs", f"The warm-up ({self.warmup_epochs} epochs) must end before the run does "
                                              f"({epochs} epochs); shorten it or train longer.")

    def after_epoch(self, plateau: Plateau, value: float, higher_is_better: bool) -> Plateau:
        """Update what the schedule remembers from the monitored metric (only reduce-on-plateau does)."""
        return plateau


@register
class Constant(Schedule):
    """The same rate throughout (after any warm-up)."""
    name, title = "constant", "Constant"

    def shape(self, step, steps_per_epoch, total_steps):
        return 1.0


@register
class StepDecay(Schedule):
    """The rate multiplied by a factor every few epochs."""
    name, title = "step", "Step"
    own_params = (Param("step_epochs", "int", 10, "Epochs between two drops of the rate.", 1, 1000),
                  Param("gamma", "float", 0.1, "What the rate is multiplied by at each drop.", 0.001, 0.999))

    def shape(self, step, steps_per_epoch, total_steps):
        return self.gamma ** (step // (self.step_epochs * steps_per_epoch))

    def check_fits(self, epochs):
        super().check_fits(epochs)
        if self.warmup_epochs + self.step_epochs >= epochs:
            raise ParamError("step_epochs", f"The rate would first drop at epoch {self.warmup_epochs + self.step_epochs + 1}, "
                                            f"after the run's {epochs} epochs; choose fewer epochs between drops.")


@register
class Cosine(Schedule):
    """The rate eases down along a half cosine to a small fraction of itself by the last step: a strong default."""
    name, title = "cosine", "Cosine"
    own_params = (Param("final_factor", "float", 0.01, "The rate at the end, as a fraction of the start.", 0.0, 1.0),)

    def shape(self, step, steps_per_epoch, total_steps):
        progress = min(step / total_steps, 1.0)
        return self.final_factor + (1 - self.final_factor) * (1 + math.cos(math.pi * progress)) / 2


@register
class OneCycle(Schedule):
    """One cycle (Smith 2018): up from a low rate to the peak, then down far below the start; fast training at high rates."""
    name, title = "one_cycle", "One-cycle"
    own_params = (Param("rise_fraction", "float", 0.25, "Share of the steps spent climbing to the peak.", 0.01, 0.99),
                  Param("start_factor", "float", 0.04, "The starting rate as a fraction of the peak.", 0.0001, 1.0),
                  Param("final_factor", "float", 0.0001, "The rate at the end as a fraction of the peak.", 0.0, 1.0))

    def shape(self, step, steps_per_epoch, total_steps):
        rise = max(self.rise_fraction * total_steps, 1)
        if step < rise:
            low, high, progress = self.start_factor, 1.0, step / rise
        else:
            low, high, progress = self.final_factor, 1.0, min((step - rise) / max(total_steps - rise, 1), 1.0)
            progress = 1 - progress
        return low + (high - low) * (1 - math.cos(math.pi * progress)) / 2


@register
class ReduceOnPlateau(Schedule):
    """The rate cut by a factor whenever the monitored metric has not improved for a few epochs. The curve drawn before launch
    shows the rate before any cut: when cuts come depends on the run."""
    name, title = "reduce_on_plateau", "Reduce on plateau"
    own_params = (Param("reduction", "float", 0.1, "What the rate is multiplied by at each cut.", 0.001, 0.999),
                  Param("patience", "int", 3, "Epochs without improvement before a cut.", 1, 100),
                  Param("min_factor", "float", 0.001, "No cut takes the rate below this fraction of the start.", 0.0, 1.0))

    def shape(self, step, steps_per_epoch, total_steps):
        return 1.0

    def check_fits(self, epochs):
        super().check_fits(epochs)
        if self.warmup_epochs + self.patience >= epochs:
            raise ParamError("patience", f"With a patience of {self.patience} epochs the rate could never be cut within "
                                         f"{epochs} epochs; lower the patience or train longer.")

    def after_epoch(self, plateau, value, higher_is_better):
        if not math.isfinite(value):
            return plateau
        improved = plateau.best is None or (value > plateau.best if higher_is_better else value < plateau.best)
        if improved:
            return Plateau(plateau.factor, value, 0)
        if plateau.bad_epochs + 1 >= self.patience:
            return Plateau(max(plateau.factor * self.reduction, self.min_factor), plateau.best, 0)
        return Plateau(plateau.factor, plateau.best, plateau.bad_epochs + 1)

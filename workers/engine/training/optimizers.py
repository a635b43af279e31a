"""Optimizers by name; each builds a torch optimizer over the model's parameter groups."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..params import Configurable, Param, ParamError, registry_of

if TYPE_CHECKING:
    import torch

OPTIMIZERS, register = registry_of("optimizer")


def learning_rate(default: float) -> Param:
    return Param("learning_rate", "float", default, "The size of each update at the schedule's peak: too high and the loss jumps "
                 "about or grows, too low and training crawls. The learning-rate finder suggests one.",
                 maximum=10.0, above=0.0, typical="typical values are 0.0001 to 0.01 (0.01 to 0.1 for SGD)")


def weight_decay(default: float) -> Param:
    return Param("weight_decay", "float", default, "Pulls the weights towards zero at every step; a little (0.0001 to 0.05) "
                 "helps models generalise from few images.", 0.0, 1.0)


BETA1 = Param("beta1", "float", 0.9, "How much of the past gradients the running mean keeps.", 0.0, 0.999)
BETA2 = Param("beta2", "float", 0.999, "How much of the past squared gradients the running variance keeps.", 0.0, 0.9999)


class Optimizer(Configurable):
    def build(self, groups: list[dict]) -> torch.optim.Optimizer:
        """The torch optimizer over parameter groups ({"params": [...], "lr": ...})."""
        raise NotImplementedError


@register
class SGD(Optimizer):
    """Stochastic gradient descent with momentum: the classic for CNNs from ImageNet weights; needs a higher rate and a schedule."""
    name, title = "sgd", "SGD"
    params = (learning_rate(0.01),
              Param("momentum", "float", 0.9, "Share of the previous update carried into the next.", 0.0, 0.999,
                    typical="typical values are 0.9 to 0.99"),
              Param("nesterov", "bool", True, "Nesterov's look-ahead form of momentum: usually a little faster."),
              weight_decay(5e-4))

    def check(self):
        if self.nesterov and self.momentum == 0:
            raise ParamError("nesterov", "Nesterov momentum needs a momentum above 0; set momentum (0.9 is usual) or turn Nesterov off.")

    def build(self, groups):
        import torch
        return torch.optim.SGD(groups, lr=self.learning_rate, momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)


@register
class Adam(Optimizer):
    """Adam: adapts each weight's step; forgiving about the learning rate. Weight decay here is the classic L2 penalty."""
    name, title = "adam", "Adam"
    params = (learning_rate(1e-3), weight_decay(0.0), BETA1, BETA2)

    def build(self, groups):
        import torch
        return torch.optim.Adam(groups, lr=self.learning_rate, weight_decay=self.weight_decay, betas=(self.beta1, self.beta2))


@register
class AdamW(Optimizer):
    """AdamW: Adam with weight decay applied to the weights directly, which regularises better than Adam's L2 penalty."""
    name, title = "adamw", "AdamW"
    params = (learning_rate(1e-3), weight_decay(0.01), BETA1, BETA2)

    def build(self, groups):
        import torch
        return torch.optim.AdamW(groups, lr=self.learning_rate, weight_decay=self.weight_decay, betas=(self.beta1, self.beta2))

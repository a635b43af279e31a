"""Losses by name. Each builds a torch module taking (logits, integer class targets) -> mean loss,
and says how its logits become class probabilities (softmax, or sigmoid per class for BCE)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..params import Configurable, Param, registry_of

if TYPE_CHECKING:
    import torch
    from torch import nn

LOSSES, register = registry_of("loss")

WEIGHTINGS = ("inverse_frequency", "inverse_square_root")


@dataclass(frozen=True)
class LossContext:
    """What a loss may need of the data: the classes and how many training images each has."""
    num_classes: int
    class_counts: tuple[int, ...] = ()


def label_smoothing(default: float = 0.0) -> Param:
    return Param("label_smoothing", "float", default, "Aims a little below certainty (1 - s for the right class): keeps an "
                 "overconfident model in check when labels may be wrong.", 0.0, 0.5)


def class_weights(context: LossContext, weighting: str):
    """Weights that make each class count as much as the others in the loss, averaging 1 over the classes."""
    import torch
    counts = torch.tensor([max(c, 1) for c in context.class_counts] or [1] * context.num_classes, dtype=torch.float32)
    weights = 1.0 / counts if weighting == "inverse_frequency" else counts.rsqrt()
    return weights * (len(weights) / weights.sum())


class Loss(Configurable):
    tasks: tuple[str, ...] = ("classification",)  # the tasks it serves (tasks/): the spec refuses it for others

    @classmethod
    def schema(cls) -> dict:
        return {**super().schema(), "tasks": list(cls.tasks)}

    def build(self, context: LossContext) -> nn.Module:
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(1)


@register
class CrossEntropy(Loss):
    """Cross-entropy: the standard for one label per image."""
    name, title = "cross_entropy", "Cross-entropy"
    params = (label_smoothing(),)

    def build(self, context):
        from torch import nn
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)


@register
class WeightedCrossEntropy(Loss):
    """Cross-entropy with each class weighted against its share of the training images: a rare class counts as much as a common one."""
    name, title = "weighted_cross_entropy", "Class-weighted cross-entropy"
    params = (Param("weighting", "choice", "inverse_frequency", "Inverse frequency weighs a class 10x rarer 10x more; the square "
                    "root, about 3x more (gentler).", choices=WEIGHTINGS),
              label_smoothing())

    def build(self, context):
        from torch import nn
        return nn.CrossEntropyLoss(weight=class_weights(context, self.weighting), label_smoothing=self.label_smoothing)


@register
class Focal(Loss):
    """Focal loss (Lin et al. 2017): cross-entropy that lowers the weight of images already classified well, so training dwells on hard ones."""
    name, title = "focal", "Focal"
    params = (Param("gamma", "float", 2.0, "How strongly easy images are down-weighted; 0 is plain cross-entropy.", 0.0, 5.0,
                    typical="2 is usual"),
              Param("weighting", "choice", "none", "Also weigh classes against their frequency.", choices=("none", *WEIGHTINGS)))

    def build(self, context):
        from .loss_modules import FocalLoss
        weights = None if self.weighting == "none" else class_weights(context, self.weighting)
        return FocalLoss(self.gamma, weights)


@register
class BinaryCrossEntropy(Loss):
    """Binary cross-entropy per class (a sigmoid for each, one-vs-rest): classes scored independently."""
    name, title = "bce", "Binary cross-entropy"
    params = (label_smoothing(),)

    def build(self, context):
        from .loss_modules import OneHotLoss
        return OneHotLoss("bce", context.num_classes, self.label_smoothing)

    def probabilities(self, logits):
        return logits.sigmoid()


@register
class MeanSquaredError(Loss):
    """Mean squared error between the softmax probabilities and the one-hot target (the Brier score)."""
    name, title = "mse", "Mean squared error"

    def build(self, context):
        from .loss_modules import OneHotLoss
        return OneHotLoss("mse", context.num_classes, 0.0)

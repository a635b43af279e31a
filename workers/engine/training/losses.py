"""Losses by name. Each builds a torch module taking (logits, integer targets: classes, or label maps) -> mean loss,
and says how its logits become class probabilities (softmax, or sigmoid per class for BCE)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..params import Configurable, Param, ParamError, registry_of

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


# Segmentation: MONAI's losses on per-voxel logits (N, labels, *sides) and integer label maps (N, *sides), softmax over
# the labels. Dice is computed over the whole batch at once (nnU-Net's "batch Dice": a patch without a label does not
# score that label 0 or 1 on its own) and over the labels but the background, as nnU-Net does.
SEGMENTATION = ("segmentation",)


def dice_params(smooth: float = 1e-5) -> tuple[Param, ...]:
    return (Param("include_background", "bool", False, "Count the background's Dice too (off: the labels only, as nnU-Net; "
                                                       "the background is most of an image and its Dice near 1 says little)."),
            Param("batch", "bool", True, "Pool the batch's voxels before dividing (nnU-Net's batch Dice); off: each sample's "
                                         "Dice on its own, averaged."),
            Param("smooth", "float", smooth, "Added above and below the fraction: keeps an empty label from dividing by 0.",
                  0.0, 1.0))


class SegmentationLoss(Loss):
    tasks = SEGMENTATION

    def monai_options(self) -> dict:
        return {"include_background": self.include_background, "batch": self.batch, "smooth_nr": self.smooth,
                "smooth_dr": self.smooth, "to_onehot_y": True, "softmax": True}

    def build(self, context):
        from .loss_modules import MaskLoss
        return MaskLoss(self.monai_loss())

    def monai_loss(self):
        raise NotImplementedError


@register
class Dice(SegmentationLoss):
    """Dice loss (Milletari et al. 2016, V-Net): 1 - Dice of the soft prediction; insensitive to how small a structure is."""
    name, title = "dice", "Dice"
    params = dice_params()

    def monai_loss(self):
        from monai.losses import DiceLoss
        return DiceLoss(**self.monai_options())


@register
class DiceCrossEntropy(SegmentationLoss):
    """Dice plus cross-entropy, nnU-Net's loss: Dice for the overlap, cross-entropy for steady per-voxel gradients."""
    name, title = "dice_ce", "Dice + cross-entropy"
    params = (*dice_params(), Param("ce_weight", "float", 1.0, "Weight of the cross-entropy beside the Dice's 1.", 0.0, 10.0))

    def monai_loss(self):
        from monai.losses import DiceCELoss
        return DiceCELoss(**self.monai_options(), lambda_dice=1.0, lambda_ce=self.ce_weight)


@register
class DiceFocal(SegmentationLoss):
    """Dice plus focal loss (Lin et al. 2017): cross-entropy that dwells on the voxels still wrong, for small structures."""
    name, title = "dice_focal", "Dice + focal"
    params = (*dice_params(), Param("gamma", "float", 2.0, "How strongly voxels already right are down-weighted; 0 is "
                                                           "cross-entropy.", 0.0, 5.0, typical="2 is usual"))

    def monai_loss(self):
        from monai.losses import DiceFocalLoss
        return DiceFocalLoss(**self.monai_options(), gamma=self.gamma)


@register
class Tversky(SegmentationLoss):
    """Tversky loss (Salehi et al. 2017): Dice with missed voxels and false alarms weighted apart (beta > alpha favours recall)."""
    name, title = "tversky", "Tversky"
    params = (*dice_params(),
              Param("alpha", "float", 0.3, "Weight of false positives (voxels predicted outside the reference).", 0.0, 1.0),
              Param("beta", "float", 0.7, "Weight of false negatives (reference voxels missed).", 0.0, 1.0))

    def check(self):
        if self.alpha + self.beta <= 0:
            raise ParamError("beta", "Alpha and beta cannot both be 0.")

    def monai_loss(self):
        from monai.losses import TverskyLoss
        return TverskyLoss(**self.monai_options(), alpha=self.alpha, beta=self.beta)

"""The loss modules torch has no class for (imported by losses.py when a loss is built)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class FocalLoss(nn.Module):
    def __init__(self, gamma: float, weight: torch.Tensor | None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = logits.float().log_softmax(1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is not None:
            loss = loss * self.weight[targets]
        return loss.mean()


class OneHotLoss(nn.Module):
    """A loss on one-hot targets: "bce" on each class's logit, or "mse" on the softmax probabilities."""

    def __init__(self, kind: str, num_classes: int, smoothing: float):
        super().__init__()
        self.kind, self.num_classes, self.smoothing = kind, num_classes, smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        target = functional.one_hot(targets, self.num_classes).float()
        if self.kind == "mse":
            return functional.mse_loss(logits.float().softmax(1), target)
        target = target * (1 - self.smoothing) + self.smoothing / 2
        return functional.binary_cross_entropy_with_logits(logits.float(), target)


class MaskLoss(nn.Module):
    """A MONAI loss on label maps as the loop gives them, (N, *sides) integers, where MONAI takes (N, 1, *sides); the
    logits in float32 (a Dice's sums in half precision lose the small structures).

    A deeply supervised network's training output (a list of logits, finest first, each coarser one at its decoder
    stage's resolution) is scored as nnU-Net scores it: each output against the mask downsampled (nearest) to its
    size, weighted 1, 1/2, 1/4 ... from the finest, the weights normalised to sum to 1."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor | list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(logits, list | tuple):
            return self.loss(logits.float(), targets.unsqueeze(1))
        masks = targets.unsqueeze(1)
        losses = [self.loss(output.float(), downsampled(masks, output.shape[2:])) for output in logits]
        return sum(weight * loss for weight, loss in zip(deep_supervision_weights(len(losses)), losses))


def deep_supervision_weights(outputs: int) -> list[float]:
    """nnU-Net's weights of a deeply supervised network's outputs, finest first: halving per level, summing to 1."""
    halving = [0.5 ** level for level in range(outputs)]
    return [weight / sum(halving) for weight in halving]


def downsampled(masks: torch.Tensor, sides) -> torch.Tensor:
    """(N, 1, *sides) label maps at a coarser output's size: nearest neighbour, so every voxel keeps a real label."""
    if tuple(masks.shape[2:]) == tuple(sides):
        return masks
    return functional.interpolate(masks.float(), size=tuple(sides), mode="nearest-exact").long()

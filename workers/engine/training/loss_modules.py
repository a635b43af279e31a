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
    logits in float32 (a Dice's sums in half precision lose the small structures)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(logits.float(), targets.unsqueeze(1))

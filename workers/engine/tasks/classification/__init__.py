"""Classification: one class per sample (a 2D image or a volume). The targets are class indices, the
head has one output per class, and an epoch's outputs add up to a confusion matrix (and each sample's
probabilities where a metric ranks samples)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..task import Task, register
from . import metrics  # noqa: F401  (registers the classification metrics)

if TYPE_CHECKING:
    import torch


@register
class Classification(Task):
    name, title = "classification", "Classification"
    help = "What the model learns: one class per image or volume."
    target_key = "target"

    @property
    def outputs(self) -> int:
        return len(self.classes)

    def targets_of(self, labels: Sequence[str]) -> list[int]:
        return [self.classes.index(label) for label in labels]

    def tally(self, device, keep_scores: bool = False):
        from .tally import ClassificationTally
        return ClassificationTally(self.outputs, device, self.probabilities if keep_scores else None)

    def predict(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """A 2D image is one forward pass (the model resizes it to the size it learnt at). A volume larger than the
        patch the model learnt on is read by a sliding window and the windows' logits averaged."""
        if self.window is None or all(n <= w for n, w in zip(images.shape[2:], self.window)):
            return model(images)
        from ..windows import window_average
        return window_average(model, images, self.window)

    def export_metadata(self) -> dict[str, str]:
        return {"task": self.name, "classes": json.dumps(self.classes), "dims": str(self.dims)}

    def describe_output(self, probabilities: str) -> str:
        return (f"(N, {len(self.classes)}) scores in the order of 'classes'; {probabilities} turns them into "
                "probabilities.")

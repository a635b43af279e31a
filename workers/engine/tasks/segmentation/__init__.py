"""Segmentation: a label per pixel (voxel). The targets are integer label maps travelling under "mask" (0 the
background), the head has one output per label (background included), an epoch's outputs add up to a confusion matrix
of voxels (and, per sample, each case's own), and a sample larger than the patch the model learnt on is predicted by
MONAI's sliding window (overlapping windows, Gaussian weighting)."""
from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..task import Task, register
from . import metrics  # noqa: F401  (registers the segmentation metrics)

if TYPE_CHECKING:
    import torch

SLIDING_OVERLAP = 0.5        # a window's share that the next one covers again (nnU-Net's and MONAI Label's choice)
WINDOWS_PER_BATCH = 4        # windows through the model at once


@register
class Segmentation(Task):
    name, title = "segmentation", "Segmentation"
    help = "What the model learns: a label for every pixel or voxel (outlines of organs or lesions), from masks."
    target_key = "mask"
    spatial_output = True
    # A partial spec on top of the toolkit's defaults: a U-Net of the samples' dimensions (`architecture_for`),
    # Dice + cross-entropy, and mean foreground Dice monitored on the validation subset.
    defaults = {"loss": {"name": "dice_ce"}, "metrics": ["mean_dice", "class_dice", "iou", "pixel_accuracy"],
                "monitor": "validation.mean_dice"}
    architectures = {2: "unet_2d", 3: "unet_3d"}

    @property
    def outputs(self) -> int:
        """One output per label, the background's included (class 0)."""
        return len(self.classes)

    def targets_of(self, labels: Sequence[str]) -> list[int]:
        """A segmentation's targets are its masks; a sample's class label only groups it (shards, splits): all 0."""
        return [0] * len(labels)

    def tally(self, device, keep_scores: bool = False):
        from .tally import SegmentationTally
        return SegmentationTally(self.classes, device, keep_cases=keep_scores)

    def predict(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Per-voxel logits of whole samples (`windowed`). With test-time mirroring (`mirror_axes`), as nnU-Net does:
        the class probabilities averaged over the sample predicted as it is and mirrored along every combination of
        those axes (2^axes predictions, each flipped back), returned as their logarithms, logits whose softmax is that
        average (so every caller reads them as it reads one prediction's logits)."""
        if not self.mirror_axes:
            return self.windowed(model, images)
        import torch
        flips = [[2 + axis for axis in chosen] for count in range(len(self.mirror_axes) + 1)
                 for chosen in itertools.combinations(self.mirror_axes, count)]
        total = sum(self.probabilities(self.windowed(model, images.flip(axes)).float()).flip(axes) for axes in flips)
        return (total / len(flips)).clamp_min(torch.finfo(torch.float32).tiny).log()

    def windowed(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Per-voxel logits of whole samples: one forward pass when a sample is the patch's size (or no patch is known);
        else MONAI's sliding window over it, windows overlapping by half and blended with Gaussian weights (a window's
        centre counts more than its edges), a sample smaller than the patch padded to it and cropped back."""
        if self.window is None or tuple(images.shape[2:]) == self.window:
            return model(images)
        from monai.inferers import sliding_window_inference
        return sliding_window_inference(images, self.window, WINDOWS_PER_BATCH, model, overlap=SLIDING_OVERLAP,
                                        mode="gaussian")

    def postprocessing(self, model: torch.nn.Module, validation) -> dict:
        """Keep-the-largest-component per label, kept where it raises the label's mean validation Dice (nnU-Net's
        choice; postprocessing.py)."""
        from .postprocessing import choose_postprocessing
        return choose_postprocessing(model, validation, self)

    def export_metadata(self) -> dict[str, str]:
        return {"task": self.name, "classes": json.dumps(self.classes), "dims": str(self.dims),
                "patch_size": json.dumps(list(self.window) if self.window else None)}

    def describe_output(self, probabilities: str) -> str:
        sides = "D, H, W" if self.dims == 3 else "H, W"
        return (f"(N, {len(self.classes)}, {sides}) scores per {'voxel' if self.dims == 3 else 'pixel'} in the order of "
                f"'classes' (the first, label 0, the background); the largest is the label; {probabilities} over axis 1 "
                "turns them into probabilities. A sample larger than 'patch_size' is best read by overlapping windows "
                "of that size, blended with Gaussian weights.")

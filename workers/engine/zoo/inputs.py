"""The images a zoo network's layer summary is asked for (channels, size, classes), checked without torch:
the web tier checks them before asking the engine (a refusal then costs no torch import), and the engine's
question checks them again (summary.py), so both say the same thing in the same words."""
from __future__ import annotations

from dataclasses import dataclass

from .registry import ModelEntry, model_entry

MAX_CHANNELS = 64      # stacked sequences and phases; more is almost surely a mistake (a volume's depth as channels)
MAX_SIDE = 1024        # as the training spec's input_size: larger images are resized before a network sees them
MIN_CLASSES, MAX_CLASSES = 2, 1000


@dataclass(frozen=True)
class SummaryInput:
    """What a network is asked to take: `channels` × `height` × `width` images, `classes` outputs."""
    architecture: str
    channels: int
    height: int
    width: int
    classes: int

    @property
    def entry(self) -> ModelEntry:
        return model_entry(self.architecture)

    def problem(self) -> str:
        """Why the network cannot be summarised for this input ("" when it can), in a sentence to show the user."""
        return self.problem_and_field()[0]

    def problem_and_field(self) -> tuple[str, str]:
        """The problem and the value it is about: channels, size or classes ("", "" when there is none)."""
        if not 1 <= self.channels <= MAX_CHANNELS:
            return (f"Images have 1 to {MAX_CHANNELS} channels (1 for CT, MR or X-ray, 3 for colour); {self.channels} is "
                    "not possible."), "channels"
        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            return (f"Images of up to {MAX_SIDE}×{MAX_SIDE} pixels can be summarised; {self.height}×{self.width} is not: "
                    "resize them inside the network (the input size)."), "size"
        if not MIN_CLASSES <= self.classes <= MAX_CLASSES:
            return f"A classifier has {MIN_CLASSES} to {MAX_CLASSES} classes; {self.classes} is not possible.", "classes"
        refusal = size_refusal(self.entry, self.height, self.width)
        return refusal, "size" if refusal else ""


def size_refusal(entry: ModelEntry, height: int, width: int) -> str:
    """The zoo's reason a network cannot take `height` × `width` images, with the sizes it does take."""
    problem = entry.size_problem(height, width)
    if not problem:
        return ""
    return (f"{problem}; these are {height}×{width}. It takes {entry.accepted_sizes()}: resize the images inside the "
            "network (the run's input size) or choose another network.")


def usual_size(entry: ModelEntry) -> int:
    """The image side a network is shown at when nothing else is asked: its weights' size, LeNet's 32, or 64 (the demo's)."""
    if entry.weights:
        return entry.weights[0].size
    return entry.max_size or max(entry.min_size, 64)

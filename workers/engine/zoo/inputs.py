"""The images (volumes) a zoo network's layer summary is asked for (channels, size, classes), checked without torch:
the web tier checks them before asking the engine (a refusal then costs no torch import), and the engine's
question checks them again (summary.py), so both say the same thing in the same words."""
from __future__ import annotations

from dataclasses import dataclass

from .registry import ModelEntry, model_entry

MAX_CHANNELS = 64      # stacked sequences and phases; more is almost surely a mistake (a volume's depth as channels)
MAX_SIDE = 1024        # as the training spec's input_size: larger images are resized before a network sees them
                       # (a volume's depth too: on the meta device a summary costs no memory, whatever its size)
MIN_CLASSES, MAX_CLASSES = 2, 1000


@dataclass(frozen=True)
class SummaryInput:
    """What a network is asked to take: `channels` × `height` × `width` images, `classes` outputs; for a 3D
    network, `channels` × `depth` × `height` × `width` volumes (depth 0: a 2D network's images)."""
    architecture: str
    channels: int
    height: int
    width: int
    classes: int
    depth: int = 0

    @property
    def sides(self) -> tuple[int, ...]:
        """The spatial sizes in the network's order: (height, width), or (depth, height, width) for a volume."""
        return (self.depth, self.height, self.width) if self.depth else (self.height, self.width)

    @property
    def shown_size(self) -> str:
        return "×".join(map(str, self.sides))

    @property
    def entry(self) -> ModelEntry:
        return model_entry(self.architecture)

    def problem(self) -> str:
        """Why the network cannot be summarised for this input ("" when it can), in a sentence to show the user."""
        return self.problem_and_field()[0]

    def problem_and_field(self) -> tuple[str, str]:
        """The problem and the value it is about: channels, depth, size or classes ("", "" when there is none)."""
        if not 1 <= self.channels <= MAX_CHANNELS:
            return (f"Images have 1 to {MAX_CHANNELS} channels (1 for CT, MR or X-ray, 3 for colour); {self.channels} is "
                    "not possible."), "channels"
        if self.entry.dims == 3 and not 1 <= self.depth <= MAX_SIDE:
            return (f"{self.entry.title} takes volumes: give their depth, 1 to {MAX_SIDE} slices; {self.depth} is not "
                    "possible."), "depth"
        if self.entry.dims == 2 and self.depth:
            return f"{self.entry.title} takes 2D images, which have no depth; leave it out.", "depth"
        if not all(1 <= side <= MAX_SIDE for side in self.sides):
            things, units = ("Volumes", "voxels") if self.depth else ("Images", "pixels")
            return (f"{things} of up to {self.entry.side(MAX_SIDE)} {units} can be summarised; {self.shown_size} is not: "
                    "resize them inside the network (the input size)."), "size"
        if not MIN_CLASSES <= self.classes <= MAX_CLASSES:
            return f"A classifier has {MIN_CLASSES} to {MAX_CLASSES} classes; {self.classes} is not possible.", "classes"
        refusal = size_refusal(self.entry, self.height, self.width, self.depth or None)
        return refusal, "size" if refusal else ""


def size_refusal(entry: ModelEntry, height: int, width: int, depth: int | None = None) -> str:
    """The zoo's reason a network cannot take `height` × `width` images (`depth` × `height` × `width` volumes), with
    the sizes it does take."""
    problem = entry.size_problem(height, width, depth)
    if not problem:
        return ""
    these = "×".join(map(str, (height, width) if depth is None else (depth, height, width)))
    things = "volumes" if entry.dims == 3 else "images"
    return (f"{problem}; these are {these}. It takes {entry.accepted_sizes()}: resize the {things} inside the "
            "network (the run's input size) or choose another network.")


def usual_size(entry: ModelEntry) -> int:
    """The image side a network is shown at when nothing else is asked: its weights' size (ImageNet's crop; MedicalNet's
    have none), LeNet's 32, or 64 (the demo's; a volume's: a 64³ cube)."""
    trained_at = next((weights.size for weights in entry.weights if weights.size), None)
    if trained_at:
        return trained_at
    return entry.max_size or max(entry.min_size, 64)

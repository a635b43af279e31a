"""The task interface: everything that differs between what models learn, in one object per run.

A task is built for a run's data (`task_for(spec["task"], classes, dims, probabilities)`) and answers:
- what its targets are: `target_key` (the key of a sample record the target travels under: "target"
  for a class, "mask" for a segmentation), `targets_of` (a dataset's labels as targets) and `outputs`
  (how many outputs the model's head has);
- which losses and metrics suit it: a loss lists the tasks it serves (`Loss.tasks`), a metric too
  (`Metric.tasks`); the spec refuses the others;
- how an epoch's outputs add up: `tally()` gives a Tally (sums that can be added across processes, and
  the per-sample scores a ranking metric needs), whose `summary` gives the loss and the metrics;
- how a model predicts a whole sample: `predict` (a forward pass; a sliding window where a volume is
  larger than the model's input);
- what a per-sample prediction looks like: `Tally.predictions()`;
- what the exported model's metadata says of its output: `export_metadata`, and whether that output is a map as
  large as the input (`spatial_output`: the export then leaves the sides dynamic where the network allows);
- what a first run of the task should be (`defaults`: a partial spec; `architectures`: the network by dimensions).
The trainer, the evaluation and the export call these and never test a task's name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..params import registry_of

if TYPE_CHECKING:
    import torch

TASKS, register = registry_of("task")


class Tally(Protocol):
    """What one subset's batches of an epoch add up to, on the training device (read once, at the end)."""
    seen: int

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None: ...

    def sums(self) -> list[torch.Tensor]:
        """The tensors that add up across data-parallel processes (summed in place by the trainer)."""

    def summary(self, metric_names: list[str]) -> dict[str, float]:
        """{"loss": ..., metric: ...} over what was added ({} when nothing was)."""

    def predictions(self) -> list[dict]:
        """One record per sample added (kept only when the tally keeps scores), in the order added."""

    def state(self) -> dict: ...

    def load(self, state: dict) -> None: ...


class Task:
    name: ClassVar[str]
    title: ClassVar[str]
    help: ClassVar[str]
    target_key: ClassVar[str] = "target"
    spatial_output: ClassVar[bool] = False  # True: an output per pixel (voxel), as large as the input
    defaults: ClassVar[dict] = {}           # a partial spec over the toolkit's defaults (training/spec.py)
    architectures: ClassVar[dict[int, str]] = {}  # the default network for 2D images and volumes ({}: the toolkit's)

    def __init__(self, classes: Sequence[str], dims: int = 2, probabilities: Callable | None = None,
                 window: Sequence[int] | None = None, mirror_axes: Sequence[int] = ()):
        self.classes = list(classes)
        self.dims = dims  # spatial dimensions of the samples: 2 (images) or 3 (volumes)
        self.probabilities = probabilities or softmax
        self.window = tuple(window) if window else None  # the patch a model of volumes trains on: predictions slide it
        # Spatial axes (0: the first after the channels) a whole-sample prediction is also made mirrored along and
        # averaged over (test-time mirroring; the spec's `inference`); (): none. A task that cannot mirror ignores it.
        self.mirror_axes = tuple(mirror_axes)

    @property
    def outputs(self) -> int:
        """The number of outputs of the model's head."""
        raise NotImplementedError

    def targets_of(self, labels: Sequence[str]) -> list[int]:
        raise NotImplementedError

    def tally(self, device: torch.device, keep_scores: bool = False) -> Tally:
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The model's logits for a batch of whole samples."""
        raise NotImplementedError

    def postprocessing(self, model: torch.nn.Module, validation) -> dict:
        """What the task does to a kept model's predictions afterwards, decided on the validation subset's whole
        samples (a plain dict the run records; {}: nothing)."""
        return {}

    def export_metadata(self) -> dict[str, str]:
        """What the exported model's metadata says of its task and output (str -> str)."""
        raise NotImplementedError

    def describe_output(self, probabilities: str) -> str:
        """The output's sentence in the exported model's description."""
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict:
        return {"name": cls.name, "title": cls.title, "help": cls.help,
                "architectures": {str(dims): name for dims, name in cls.architectures.items()}}


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(1)


def task_for(name: str, classes: Sequence[str], dims: int = 2, probabilities: Callable | None = None,
             window: Sequence[int] | None = None, mirror_axes: Sequence[int] = ()) -> Task:
    """The task a run's spec names, built for its data (`window`: the patch size of a model of volumes; `mirror_axes`:
    the axes whole samples are also predicted mirrored along, `TrainingSpec.mirror_axes`)."""
    return TASKS[name](classes, dims, probabilities, window, mirror_axes)

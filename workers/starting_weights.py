"""Where a run's starting weights are on this worker, and what the run's log says about them.

The spec names a source (`model.weights`: random, imagenet, medicalnet, run, imported); the engine builds the model
from a `ModelStart` that says where its files are: the toolkit's folder of pretrained files for ImageNet (checked by
hash when read) and MedicalNet (checked by its tensors when read), the kept weights of the earlier run (written by the toolkit itself, read with
`weights_only=True`), or an imported model's weights (backend.zoo's). The launch checked that the source
exists and may be used (backend/runs/services.py); this finds it again when the job starts, because a file
can go in between, and says so in words (`WeightsUnavailable`) rather than with a traceback.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

from backend.runs.models import TrainingRun
from workers.engine.zoo.registry import MODELS, model_entry
from workers.engine.zoo.start import ModelStart
from workers.engine.zoo.weights import WeightsUnavailable, find_weights

IMAGENET_CLASSES, IMAGENET_CHANNELS = 1000, 3


def model_start(job) -> ModelStart:
    """The engine's ModelStart for a run's (or a learning-rate search's) spec."""
    model = job.spec["model"]
    folder = str(settings.PRETRAINED_WEIGHTS_DIR)
    weights = model.get("weights", "random")
    if weights == "run":
        path, classes = earlier_run_weights(model["start_run"])
        return ModelStart(folder, str(path), classes=classes)
    if weights == "imported":
        # Imported models (ONNX, safetensors) are backend.zoo's: it knows where their converted weights are.
        from backend.zoo.services import imported_model_start

        return imported_model_start(model["imported_model"])
    entry = MODELS.get(model.get("architecture"))
    pretrained = entry.weights_named(weights) if entry else None
    if pretrained:
        find_weights(pretrained, folder)  # the launch found it; it may have gone since: say so before any work
    return ModelStart(folder)


def earlier_run_weights(run_id: int) -> tuple[Path, tuple[str, ...]]:
    """The kept weights file of the run a run starts from (the launch checked it; it may have gone since) and its
    class names in output order (the engine matches its head to the new run's classes by name)."""
    earlier = TrainingRun.objects.filter(pk=run_id).first()
    if earlier is None:
        raise WeightsUnavailable(f"Run {run_id}, which this run starts from, was deleted after this run was launched; "
                                 "launch it again from another run, or from ImageNet or random weights.")
    if not earlier.weights_path.is_file():
        raise WeightsUnavailable(f"The kept model of run {run_id} '{earlier.name}', which this run starts from, is missing "
                                 f"({earlier.weights_path}); launch it again from another run, or from ImageNet or random weights.")
    return earlier.weights_path, tuple(earlier.results.get("classes") or earlier.partition.dataset.labels)


def start_note(spec: dict, started_from: dict, classes: list[str], channels: int) -> str:
    """What the run starts from and what of it changes, for the run's log: a new head when the classes differ,
    the first layer adapted when the channels do."""
    model = spec["model"]
    weights = started_from.get("weights", model.get("weights", "random"))
    if weights == "random":
        return f"Starting from random weights (seed {spec['seed']})."
    if weights == "imagenet":
        title = model_entry(model["architecture"]).title
        source = f"the ImageNet weights of {title} (torchvision, {started_from.get('filename', 'checked by hash')})"
        return f"Starting from {source}: " + changes(IMAGENET_CLASSES, None, IMAGENET_CHANNELS, classes, channels)
    if weights == "medicalnet":
        network = network_title(model["architecture"])
        source = f"MedicalNet's {network} weights ({started_from.get('filename', 'Tencent')}, trained to segment 23 datasets)"
        return (f"Starting from {source}: its segmentation head is dropped and a new head made for this run's "
                f"{len(classes)} classes ({listed(classes)})" + first_layer(1, channels) + "; everything else is carried over.")
    if weights == "run":
        source = f"run {started_from.get('run')} '{started_from.get('name', '')}'"
        its_classes = started_from.get("classes") or []
        return f"Starting from {source}: " + changes(len(its_classes), its_classes, started_from.get("channels"), classes, channels)
    return f"Starting from imported model {model.get('imported_model')}; its head and first layer are fitted to this data."


def changes(its_count: int, its_classes: list[str] | None, its_channels: int | None, classes: list[str], channels: int) -> str:
    # As the engine does it (workers/engine/zoo/start.py fit_head): a head is kept only for the same classes.
    if its_count and its_count != len(classes):
        head = f"its head ({its_count} classes) is replaced by a new one for this run's {len(classes)} classes ({listed(classes)})"
    elif its_classes and sorted(its_classes) == sorted(classes) and its_classes != classes:
        head = f"its head is kept, its outputs put in this run's order of the classes ({listed(classes)})"
    elif its_classes and its_classes != classes:
        head = (f"its head (classes {listed(its_classes)}) is replaced by a new one for this run's classes ({listed(classes)}), "
                "as many but others")
    else:
        head = "its head is kept (the same classes)"
    return f"{head}{first_layer(its_channels, channels)}; everything else is carried over."


def first_layer(its_channels: int | None, channels: int) -> str:
    if its_channels and its_channels != channels:
        return f"; its first layer is adapted from {its_channels} to {channels} channel{'s' if channels > 1 else ''}"
    return ""


def network_title(architecture: str) -> str:
    """"ResNet-18 (3D)" as MedicalNet names it: "ResNet-18"."""
    return model_entry(architecture).title.removesuffix(" (3D)")


def listed(classes: list[str], most: int = 10) -> str:
    return ", ".join(classes[:most]) + (f" and {len(classes) - most} more" if len(classes) > most else "")

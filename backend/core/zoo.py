"""The model zoo as the web tier serves it: the registry's networks with whether their pretrained weights are on
this server, and a network's layer summary for given images and phase settings.

The summary is the engine's (workers/engine/zoo/summary.py, asked in a child process: torch never loads into a
web worker); each answer costs about 3 s of torch import, so answers are kept per web process. One answer
covers every phase setting (it lists the blocks each setting freezes), so moving the page's "frozen blocks"
control asks the engine nothing.
"""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from backend.datasets.models import Dataset
from backend.datasets.services import datasets_for
from workers.engine.zoo.inputs import SummaryInput, usual_size
from workers.engine.zoo.registry import MODELS, ModelEntry, WeightsEntry
from workers.engine.zoo.weights import WeightsUnavailable, find_weights

from .engine import ask_engine
from .errors import ServiceError

TRAIN_CHOICES = ("all", "head")


def architectures() -> list[dict]:
    """Every network of the registry, each pretrained weights entry saying whether its file is on this server."""
    return [{**entry.describe(), "weights": [{**weights.describe(), **weights_presence(weights)} for weights in entry.weights]}
            for entry in MODELS.values()]


def weights_presence(weights: WeightsEntry) -> dict:
    """Whether the weights file is in the toolkit's weights folder or torchvision's cache (found by name only:
    its hash is checked when a run starts from it, as reading 500 MB per page view would be too slow)."""
    try:
        path = find_weights(weights, settings.PRETRAINED_WEIGHTS_DIR)
    except WeightsUnavailable as missing:
        return {"available": False, "where": str(missing)}
    return {"available": True, "where": f"Found at {path}."}


def architecture_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ServiceError(f"There is no architecture '{name}'; choose one of {', '.join(MODELS)}.", code="not_found",
                           status_code=404)
    return MODELS[name]


def dataset_input(user, dataset_id: int) -> dict:
    """A readable dataset's channels, image size (its training cache's) and classes, or a 400 saying why not."""
    dataset = datasets_for(user).filter(pk=dataset_id).first()
    if dataset is None:
        raise ServiceError(f"No dataset with id {dataset_id} exists in your projects.", field="dataset")
    if dataset.status != Dataset.Status.READY or not dataset.channels:
        raise ServiceError(f"The dataset '{dataset.name}' is not ready ({dataset.get_status_display().lower()}); its image size "
                           "is known once its images are in.", field="dataset")
    classes = len(dataset.labels)
    if classes < 2:
        raise ServiceError(f"The dataset '{dataset.name}' has {classes} class{'es' if classes != 1 else ''}; a classifier needs "
                           "two or more: add labels from a table on the dataset page.", field="dataset")
    return {"channels": dataset.channels, "height": dataset.height, "width": dataset.width, "classes": classes,
            "dataset": {"id": dataset.pk, "name": dataset.name}}


def usual_input(entry: ModelEntry) -> dict:
    """What a summary shows when neither a dataset nor a size is given: RGB images at the network's usual size."""
    side = usual_size(entry)
    return {"channels": 3, "height": side, "width": side, "classes": 2, "dataset": None}


def layer_summary(name: str, images: dict, input_size: int = 0, train: str = "all", frozen_blocks: int = 0) -> dict:
    """The network `name`'s layers for `images` ({channels, height, width, classes, dataset}), resized inside the
    network to `input_size` when it is set, each layer marked frozen or trainable for the phase settings."""
    entry = architecture_entry(name)
    seen = (input_size, input_size) if input_size else (images["height"], images["width"])
    problem, about = SummaryInput(name, images["channels"], *seen, images["classes"]).problem_and_field()
    if problem:
        raise ServiceError(problem, field=problem_field(about, images, input_size))
    answer = engine_summary(name, images["channels"], *seen, images["classes"])
    return summary_for_phase(entry, answer, images, input_size, train, frozen_blocks)


def summary_for_phase(entry: ModelEntry, answer: dict, images: dict, input_size: int, train: str, frozen_blocks: int) -> dict:
    """The engine's answer with each block and layer marked frozen or trainable for one phase's settings."""
    frozen = frozen_block_indices(answer["freezes"], train, frozen_blocks)
    seen = [input_size, input_size] if input_size else [images["height"], images["width"]]
    return {
        "architecture": entry.name, "title": entry.title,
        "input": {**images, "input_size": input_size, "network_input": [images["channels"], *seen],
                  "accepted_sizes": entry.accepted_sizes()},
        "phase": {"train": train, "frozen_blocks": frozen_blocks, "frozen_block_count": len(frozen)},
        "blocks": [{**block, "frozen": block["index"] in frozen} for block in answer["blocks"]],
        "layers": [{**layer, "frozen": layer["block"] in frozen, "trainable": bool(layer["parameters"]) and layer["block"] not in frozen}
                   for layer in answer["layers"]],
        "totals": totals(answer, frozen),
        "output_shape": answer["output_shape"],
    }


def problem_field(about: str, images: dict, input_size: int) -> str:
    """The request field a problem names: the input size for a size it set, else the dataset the values came from."""
    if about == "size" and input_size:
        return "input_size"
    if images.get("dataset"):
        return "dataset"
    return "height" if about == "size" else about


@lru_cache(maxsize=256)
def engine_summary(name: str, channels: int, height: int, width: int, classes: int) -> dict:
    """The engine's summary, kept for the life of the web process (the registry cannot change under it)."""
    return ask_engine("layer_summary", architecture=name, channels=channels, height=height, width=width, classes=classes)


def frozen_block_indices(freezes: dict, train: str, frozen_blocks: int) -> set[int]:
    """The blocks the phase freezes, as the engine's transfer.frozen_prefixes listed them for each setting."""
    if train == "head":
        return set(freezes["head"])
    settings_listed = freezes["first_blocks"]
    return set(settings_listed[min(frozen_blocks, len(settings_listed) - 1)])


def totals(answer: dict, frozen: set[int]) -> dict:
    frozen_parameters = sum(block["parameters"] for block in answer["blocks"] if block["index"] in frozen)
    return {"parameters": answer["parameters"], "trainable_parameters": answer["parameters"] - frozen_parameters,
            "frozen_parameters": frozen_parameters, "multiply_accumulates": answer["multiply_accumulates"],
            "layers": len(answer["layers"])}

"""External validation: a run's kept model measured on another dataset. What must fit before it is queued (channels,
dimensions, intensities, classes), and how the other dataset's class names map onto the run's."""
from __future__ import annotations

import re

from backend.core.errors import ServiceError
from backend.datasets.models import Dataset, PartitionMember, Sample
from backend.datasets.services import datasets_for

from .models import TrainingRun


def readable_dataset(user, pk: int) -> Dataset:
    """A dataset of any project the user can read (a model is often validated on another hospital's data)."""
    dataset = datasets_for(user).filter(pk=pk).first()
    if dataset is None:
        raise ServiceError(f"There is no dataset {pk} that you can read.", field="dataset", code="not_found", status_code=404)
    return dataset


def comparable_name(name: str) -> str:
    """A class name as people vary it: "Pneumonia", "PNEUMONIA" and "pneumonia_" are one class."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def suggested_mapping(run_classes: list[str], dataset_classes: list[str]) -> dict[str, str | None]:
    """Each of the dataset's classes to the run's class of the same name, or of the same name once case, spaces and
    punctuation are set aside; None where no name fits (the user chooses)."""
    by_name = {comparable_name(name): name for name in run_classes}
    return {name: name if name in run_classes else by_name.get(comparable_name(name)) for name in dataset_classes}


def mapping_facts(run: TrainingRun, dataset: Dataset) -> dict:
    """What the evaluation form shows: both class lists, the suggested mapping, how many samples each class has, and
    how many of the dataset's images are also the run's own (the form warns: those are no external validation)."""
    shared = shared_images(run, dataset)
    return {"run_classes": run.partition.dataset.labels, "dataset_classes": dataset.labels,
            "samples": dataset.class_counts, "suggested": suggested_mapping(run.partition.dataset.labels, dataset.labels),
            "shared_samples": shared["shared"], "shared_with_training": shared["trained_on"]}


def shared_images(run: TrainingRun, dataset: Dataset) -> dict:
    """How many of the dataset's samples are images of the run's own dataset (the same content: the same sha256), and
    how many of those the model trained on (its partition's training subset). A re-upload of the run's data under
    another name is then told apart from another hospital's images."""
    own = Sample.objects.filter(dataset=run.partition.dataset).exclude(sha256="").values("sha256")
    trained = PartitionMember.objects.filter(partition=run.partition, subset="train").exclude(sample__sha256="").values("sample__sha256")
    samples = Sample.objects.filter(dataset=dataset)
    return {"shared": samples.filter(sha256__in=own).count(), "trained_on": samples.filter(sha256__in=trained).count(),
            "samples": samples.count(), "own": own.count()}


def check_fits(run: TrainingRun, dataset: Dataset) -> None:
    """The other dataset can be read as the run's data was: ready, labelled with classes, the same dimensions and
    channels, and intensities of the same kind (8-bit images, or real intensities read through the run's plan)."""
    trained_on = run.partition.dataset
    if dataset.pk == trained_on.pk:
        raise ServiceError(f"Dataset {dataset.name} is the one run {run.pk} was trained on; measure its test or validation "
                           "subset instead (subset), or choose another dataset.", field="dataset")
    if dataset.status == Dataset.Status.READY:
        shared = shared_images(run, dataset)
        if shared["samples"] and shared["shared"] == shared["samples"] == shared["own"]:
            raise ServiceError(f"Dataset {dataset.name} holds the same {shared['samples']} images as dataset "
                               f"{trained_on.name}, which run {run.pk} was trained on: measuring it is no external validation. "
                               "Measure the run's test subset instead (subset), or choose another dataset.",
                               field="dataset", code="same_images")
    if dataset.status != Dataset.Status.READY:
        raise ServiceError(f"Dataset {dataset.name} is not ready ({dataset.status}); wait for its ingest to finish.", field="dataset")
    if dataset.task == Dataset.Task.SEGMENTATION or not any(dataset.labels):
        raise ServiceError(f"Dataset {dataset.name} has no classes to compare with the model's predictions; choose a dataset "
                           "labelled with classes.", field="dataset")
    if dataset.dimensions != trained_on.dimensions:
        raise ServiceError(f"Dataset {dataset.name} holds {dims_words(dataset.dimensions)} and run {run.pk}'s model takes "
                           f"{dims_words(trained_on.dimensions)}; choose a dataset of the same kind.", field="dataset")
    if dataset.channels != trained_on.channels:
        raise ServiceError(f"Dataset {dataset.name}'s samples have {dataset.channels} channel(s) and run {run.pk}'s model takes "
                           f"{trained_on.channels}; convert it with a preprocessing pipeline, or choose another.", field="dataset")
    planned = bool(run.spec["data"].get("plan"))
    if planned != dataset.planned:
        raise ServiceError(intensity_words(run, dataset, planned), field="dataset")


def dims_words(dimensions: set[int]) -> str:
    return " and ".join({2: "2D images", 3: "volumes"}[d] for d in sorted(dimensions))


def intensity_words(run: TrainingRun, dataset: Dataset, planned: bool) -> str:
    if planned:
        return (f"Run {run.pk} was trained on real intensities (its plan) and dataset {dataset.name} holds 8-bit images; "
                "choose a dataset with the same kind of intensities.")
    return (f"Run {run.pk} was trained on 8-bit images and dataset {dataset.name} holds real intensities (more than 8 bits); "
            "choose a dataset of 8-bit images, or train a run on real intensities.")


def checked_mapping(run: TrainingRun, dataset: Dataset, asked: dict | None) -> dict[str, str | None]:
    """The mapping to store: the suggestion, with the user's choices over it. A class mapped to None (null) is left out
    (a class the model never learned); every class must be mapped or left out, and something must remain."""
    run_classes = run.partition.dataset.labels
    mapping = suggested_mapping(run_classes, dataset.labels)
    asked = asked or {}
    unknown = sorted(set(asked) - set(mapping))
    if unknown:
        raise ServiceError(f"Dataset {dataset.name} has no class {', '.join(map(repr, unknown))}; its classes are "
                           f"{', '.join(dataset.labels)}.", field="class_mapping")
    wrong = sorted(f"{key!r}: {value!r}" for key, value in asked.items() if value is not None and value not in run_classes)
    if wrong:
        raise ServiceError(f"Map each class to one of the run's classes ({', '.join(run_classes)}) or to null to leave it out; "
                           f"not {', '.join(wrong)}.", field="class_mapping")
    mapping.update(asked)
    unmatched = sorted(name for name, value in mapping.items() if value is None and name not in asked)
    if unmatched:
        message = (f"The classes {', '.join(map(repr, unmatched))} of dataset {dataset.name} match none of run {run.pk}'s "
                   f"classes ({', '.join(run_classes)}) by name; map each to one of them, or to null to leave its samples out "
                   "(class_mapping).")
        # The mapping so far rides with the refusal, so a form or script can show it and fill in the rest.
        raise ServiceError(message, field="class_mapping", code="unmapped_classes",
                           errors=[{"code": "unmapped_classes", "message": message, "field": "class_mapping", "mapping": mapping}])
    if not any(mapping.values()):
        raise ServiceError("Every class is left out: map at least one to a class of the run.", field="class_mapping")
    return mapping

"""A pipeline is data: an ordered list of {"op": name, "params": {...}} that the registry turns into
operations. Applying it with a seed gives the same result every time."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..params import ParamError
from .operations import OPERATIONS, SPATIAL, Context, Operation, UnsupportedInput

MAX_STEPS = 50


@dataclass
class StepError:
    step: int        # index in the list, from 0
    param: str       # "" when the step as a whole is wrong
    message: str


class PipelineError(ValueError):
    def __init__(self, errors: list[StepError]):
        super().__init__("; ".join(f"step {e.step + 1}: {e.message}" for e in errors))
        self.errors = errors


class Pipeline:
    def __init__(self, operations: list[Operation]):
        self.operations = operations

    @classmethod
    def from_steps(cls, steps) -> Pipeline:
        """Validates every step and reports all the problems at once."""
        if not isinstance(steps, list):
            raise PipelineError([StepError(0, "", "A pipeline is a list of steps, each {\"op\": name, \"params\": {...}}.")])
        if len(steps) > MAX_STEPS:
            raise PipelineError([StepError(MAX_STEPS, "", f"A pipeline has at most {MAX_STEPS} steps.")])
        operations, errors = [], []
        for index, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("op"), str):
                errors.append(StepError(index, "", "Each step is {\"op\": name, \"params\": {...}}."))
                continue
            kind = OPERATIONS.get(step["op"])
            if kind is None:
                errors.append(StepError(index, "op", f"There is no operation '{step['op']}'; GET /api/operations/ lists them."))
                continue
            params = step.get("params")
            params = {} if params is None else params
            if not isinstance(params, dict):
                errors.append(StepError(index, "params", "params must be an object of parameter values."))
                continue
            try:
                operations.append(kind(**params))
            except ParamError as exc:
                errors.append(StepError(index, exc.param, f"{kind.title}: {exc}"))
        if errors:
            raise PipelineError(errors)
        return cls(operations)

    def steps(self) -> list[dict]:
        """The canonical JSON: every parameter written out, defaults included."""
        return [{"op": op.name, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in op.values().items()}}
                for op in self.operations]

    @property
    def is_random(self) -> bool:
        return any(op.random for op in self.operations)

    def __call__(self, image: np.ndarray, seed: int, context: Context | None = None) -> np.ndarray:
        return self.apply(image, seed, context)[0]

    def apply(self, image: np.ndarray, seed: int, context: Context | None = None) -> tuple[np.ndarray, Context]:
        """The output and the context as the steps left it (its spacing after a resample, say);
        the caller's context is not changed."""
        rng = np.random.default_rng(seed)
        context = dataclasses.replace(context) if context is not None else Context()
        for operation in self.operations:
            image = operation(image, rng, context)
        return image, context


    def apply_record(self, record: dict, seed: int, context: Context | None = None) -> dict:
        """A sample record ({"image", and "mask" when it has one, ...}) through the steps, as MONAI's dictionary
        transforms go: every step changes the image; a spatial step (operations.SPATIAL) also moves the mask, with
        the very draw the image got (the generator is put back to where it was before the image's turn) and
        nearest-neighbour interpolation, so the outline stays on the anatomy and no label value is invented. The
        image's result is the one `apply` gives for the same seed. Other keys are passed on untouched."""
        rng = np.random.default_rng(seed)
        context = dataclasses.replace(context) if context is not None else Context()
        record = dict(record)
        mask = record.get("mask")
        labels_dtype = None if mask is None else np.asarray(mask).dtype
        for operation in self.operations:
            before, as_given = copy.deepcopy(rng.bit_generator.state), dataclasses.replace(context, nearest=True)
            record["image"] = operation(record["image"], rng, context)
            if mask is not None and operation.acts_on == SPATIAL:
                replay = np.random.Generator(type(rng.bit_generator)())
                replay.bit_generator.state = before
                mask = operation(mask, replay, as_given)  # the context as the image's turn found it (its spacing)
        if mask is not None:
            record["mask"] = np.rint(mask).astype(labels_dtype)
        return record


class Statistics:
    """Mean, standard deviation, minimum and maximum per patient and over the dataset, gathered one
    image at a time (for z-score and min-max per patient or dataset)."""

    def __init__(self):
        self.sums: dict[tuple[str, str], list[float]] = {}

    def add(self, image: np.ndarray, patient: str) -> None:
        values = np.asarray(image, dtype=np.float64)
        part = [values.size, float(values.sum()), float(np.square(values).sum()), float(values.min()), float(values.max())]
        for key in (("dataset", ""), ("patient", patient)):
            total = self.sums.setdefault(key, [0, 0.0, 0.0, np.inf, -np.inf])
            total[0] += part[0]
            total[1] += part[1]
            total[2] += part[2]
            total[3], total[4] = min(total[3], part[3]), max(total[4], part[4])

    def fitted(self) -> dict[tuple[str, str], tuple[float, float, float, float]]:
        result = {}
        for key, (count, total, squares, low, high) in self.sums.items():
            mean = total / count
            result[key] = (mean, float(np.sqrt(max(squares / count - mean * mean, 0.0))), low, high)
        return result


def fit_statistics(pipeline: Pipeline, images: Iterable[tuple[Callable[[], np.ndarray], Context]],
                   check_stop: Callable[[], None] = lambda: None) -> dict:
    """Statistics of the images as they reach the first step that needs them (z-score or min-max per
    patient or dataset); {} when no step does. Images come as (load, context) so that a pipeline that
    needs no statistics reads none. An image the earlier steps cannot take is left out: the job
    reports it when it processes that image."""
    first = next((k for k, op in enumerate(pipeline.operations) if getattr(op, "scope", "image") != "image"), None)
    if first is None:
        return {}
    before = Pipeline(pipeline.operations[:first])
    statistics = Statistics()
    for index, (load, context) in enumerate(images):
        check_stop()
        try:
            statistics.add(before(load(), index, context), context.patient)
        except (UnsupportedInput, ParamError, ValueError):
            continue
    return statistics.fitted()

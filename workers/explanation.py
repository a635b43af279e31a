"""The explanation job: one sample through a run's kept model, its class probabilities and a Grad-CAM heat map
(workers/engine/explain.py) computed on the input the model saw, then stored on the sample's own grid for the viewer.
A worker lost mid-explanation queues it again (the default): it is one pass over one sample and starts over."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.datasets.models import Sample
from backend.datasets.viewer import load, volume_of
from backend.runs.models import Explanation, TrainingRun
from workers.engine.data import CachedImages
from workers.engine.explain import METHOD, Explained, explain, resized, target_layer_of
from workers.engine.store import VolumeRecords
from workers.engine.training.spec import resolve_spec

from .evaluation import kept_model
from .jobs import JobRunner, register
from .training import stored_paths

Status = Explanation.Status
STEPS = 3  # reading the model, reading the sample, the heat map


@dataclass(frozen=True)
class ModelInput:
    """What `kept_model` needs of a run's data to rebuild its network: the channels it takes and the classes it gives."""
    in_channels: int
    classes: list[str]


class ExplanationJob(JobRunner):
    model = Explanation
    task = "workers.tasks.explain_sample"
    noun = "explanation"
    queue = "train-cpu"  # only a default: each is sent to its run's queue (queue_of)

    def work(self, explanation: Explanation, reporter) -> None:
        explanation = Explanation.objects.select_related("run__project", "sample__dataset__project").get(pk=explanation.pk)
        run, sample = explanation.run, explanation.sample
        reporter.progress(0, STEPS, "reading the kept model")
        classes = run_classes(run)
        model = kept_model(run, ModelInput(input_channels(run), classes))
        reporter.progress(1, STEPS, "reading the sample as the model saw it")
        image = model_input(run, sample, reporter)
        reporter.progress(2, STEPS, "computing the class probabilities and the heat map")
        plan = run.spec["data"].get("plan")
        layer = target_layer_of(model, run.architecture)
        explained = explain(model, image, resolve_spec(run.spec).loss.probabilities, layer,
                            window=tuple(plan["patch_size"]) if plan else None)
        results = results_of(explained, classes, layer, list(image.shape))
        if explained.heat_map is not None:
            grid = display_grid(sample)
            heat_map = resized(explained.heat_map, grid if image.dim() == 4 else grid[1:])
            results["heat_map_shape"] = list(grid)
            save_heat_map(heat_map.reshape(grid), explanation.heat_map_path)
        self.finish(explanation, Status.DONE, done_words(results), results=results, progress_done=STEPS,
                    progress_total=STEPS)

    def discard(self, explanation: Explanation, status: str) -> None:
        explanation.heat_map_path.unlink(missing_ok=True)

    def failure_message(self, exc: Exception) -> str:
        return f"The explanation failed ({type(exc).__name__}: {exc}); the worker log has the details."


EXPLANATION = register(ExplanationJob())


def run_classes(run: TrainingRun) -> list[str]:
    """The classes of the model's outputs, in order (as the run stored them; older runs: its dataset's)."""
    return list(run.results.get("classes") or run.partition.dataset.labels)


def input_channels(run: TrainingRun) -> int:
    shape = run.results.get("input_shape")
    return int(shape[0]) if shape else run.partition.dataset.channels


def model_input(run: TrainingRun, sample: Sample, observer=None) -> torch.Tensor:
    """The sample as the run's model reads its test samples: the 8-bit image of its dataset's training cache, or (a run
    with a plan) its real intensities at the plan's spacing, normalised by the plan, from its dataset's store."""
    plan = run.spec["data"].get("plan")
    if not plan:
        return CachedImages(sample.dataset.cache_path, [sample.cache_index], [0])[0]["image"]
    paths = stored_paths(sample.dataset, [sample], plan, observer)
    return VolumeRecords(paths, [0], [sample.meta], plan, patches=False)[0]["image"]


def display_grid(sample: Sample) -> tuple[int, int, int]:
    """(D, H, W) of what the viewer shows of the sample (D 1 for a 2D image): its stored array's planes."""
    return tuple(int(n) for n in volume_of(sample, load(sample, sample.array), 0).shape[:3])


def save_heat_map(heat_map: np.ndarray, path: Path) -> None:
    """As float16 (half the bytes; the overlay draws 8 bits of it), written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as handle:  # a handle: np.save would add .npy to the name
        np.save(handle, heat_map.astype(np.float16))
    os.replace(partial, path)


def results_of(explained: Explained, classes: list[str], layer: str | None, input_shape: list[int]) -> dict:
    predicted = int(np.argmax(explained.probabilities))
    return {"classes": classes, "probabilities": [round(p, 6) for p in explained.probabilities],
            "predicted": classes[predicted], "explained_class": classes[explained.explained_class],
            "method": METHOD if explained.heat_map is not None else "", "layer": layer if explained.heat_map is not None else "",
            "input_shape": input_shape, "windows": explained.windows, "heat_map_shape": None, "note": explained.note}


def done_words(results: dict) -> str:
    probability = results["probabilities"][results["classes"].index(results["predicted"])]
    words = f"Predicted {results['predicted']} ({probability:.1%})"
    if results["heat_map_shape"] is None:
        return f"{words}; no heat map: {results['note']}"
    return f"{words}; the heat map shows where the model found evidence for {results['explained_class']}."

"""The explanation job: one image (a dataset's sample, or an uploaded file) through a model (a run's kept model, or an
imported model), its class probabilities and a Grad-CAM heat map (workers/engine/explain.py) computed on the input the
model saw, then stored on the image's own grid for the viewer. An uploaded file reaches a run's model as its training
samples did: through its dataset's preprocessing pipelines, then the training cache's 8 bits or the run's plan.
A worker lost mid-explanation queues it again (the default): it is one pass over one image and starts over."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.datasets.models import Sample
from backend.datasets.viewer import load, volume_of
from backend.runs.explanations import image_of, pipeline_chain
from backend.runs.models import Explanation, TrainingRun
from backend.runs.segmentations import draws_a_map, mask_dir
from backend.zoo.models import ImportedModel
from workers.engine.data import CachedImages
from workers.engine.explain import METHOD, Explained, explain, resized, target_layer_of
from workers.engine.pipelines import Context, Pipeline
from workers.engine.pipelines.pipeline import fit_statistics
from workers.engine.samples import channels_first, stored_layout
from workers.engine.store import VolumeRecords
from workers.engine.training.spec import resolve_spec
from workers.engine.uploaded import UPLOAD_PATIENT, cached_input, planned_input

from .datasets import statistics_for
from .evaluation import kept_model
from .jobs import JobRunner, register
from .preprocess import DROPS_RESCALE, DROPS_WINDOW
from .segment_upload import STEPS as SEGMENT_STEPS
from .segment_upload import segment
from .training import stored_paths

Status = Explanation.Status
STEPS = 3  # reading the model, reading the image, the heat map


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
        explanation = Explanation.objects.select_related("run__project", "run__partition__dataset", "imported_model__project",
                                                         "sample__dataset__project").get(pk=explanation.pk)
        if draws_a_map(explanation.run):  # a segmentation's model: its explanation is the label map
            results, words = segment(explanation, reporter, model_input, upload_input, kept_model, model_facts)
            self.finish(explanation, Status.DONE, words, results=results, progress_done=SEGMENT_STEPS,
                        progress_total=SEGMENT_STEPS)
            return
        reporter.progress(0, STEPS, "reading the model")
        explainer = run_explainer(explanation.run) if explanation.run_id else imported_explainer(explanation.imported_model)
        reporter.progress(1, STEPS, "reading the image as the model's training samples were read")
        if explanation.sample_id:
            image = model_input(explanation.run, explanation.sample, reporter)
        else:
            image = upload_input(explanation, reporter)
        reporter.progress(2, STEPS, "computing the class probabilities and the heat map")
        explained = explain(explainer.model, image, explainer.probabilities, explainer.layer, window=explainer.window)
        if explainer.note and explained.heat_map is None:
            explained.note = explainer.note
        results = results_of(explained, explainer.classes, explainer.layer, list(image.shape))
        if explained.heat_map is not None:
            grid = display_grid(image_of(explanation))
            heat_map = resized(explained.heat_map, grid if image.dim() == 4 else grid[1:])
            results["heat_map_shape"] = list(grid)
            save_heat_map(heat_map.reshape(grid), explanation.heat_map_path)
        self.finish(explanation, Status.DONE, done_words(results), results=results, progress_done=STEPS,
                    progress_total=STEPS)

    def discard(self, explanation: Explanation, status: str) -> None:
        explanation.heat_map_path.unlink(missing_ok=True)
        shutil.rmtree(mask_dir(explanation), ignore_errors=True)
        if explanation.upload:  # the upload's pixels stay (the page shows them); what the worker derived goes
            (explanation.upload_dir / STORED).unlink(missing_ok=True)

    def failure_message(self, exc: Exception) -> str:
        return f"The explanation failed ({type(exc).__name__}: {exc}); the worker log has the details."


EXPLANATION = register(ExplanationJob())
STORED = "stored.npy"  # an upload at a plan's spacing, as the plan's store keeps a sample


@dataclass
class Explainer:
    """A model ready to explain: its network, class names in output order, how its outputs become probabilities, the
    layer Grad-CAM looks at (None: none), the patch a model of volumes learnt on, and why there is no map (known
    before any pass: a model that runs outside PyTorch)."""
    model: nn.Module
    classes: list[str]
    probabilities: Callable[[torch.Tensor], torch.Tensor]
    layer: str | None
    window: tuple | None = None
    note: str = ""


def run_explainer(run: TrainingRun) -> Explainer:
    classes = run_classes(run)
    model = kept_model(run, ModelInput(input_channels(run), classes))
    plan = run.spec["data"].get("plan")
    return Explainer(model, classes, resolve_spec(run.spec).loss.probabilities, target_layer_of(model, run.architecture),
                     tuple(plan["patch_size"]) if plan else None)


def as_probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """An imported model's outputs as probabilities: softmax of scores, or the outputs themselves when the file ends in
    its own softmax (non-negative, summing to 1), as prediction reads them (workers/engine/zoo/imports.py)."""
    if outputs.shape[-1] > 1 and bool((outputs >= 0).all()) and bool(((outputs.sum(-1) - 1).abs() < 1e-3).all()):
        return outputs
    return torch.softmax(outputs, dim=-1)


class OnnxRuntimeModel(nn.Module):
    """A prediction-only imported model as a module: its ONNX file run by onnxruntime (no gradients), the import's
    mean and std applied first, as prediction applies them."""

    def __init__(self, path: Path, mean, std):
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.mean, self.std = mean, std

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        values = batch.detach().numpy().astype(np.float32)
        if self.mean and self.std:
            values = (values - np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return torch.from_numpy(np.asarray(self.session.run(None, {self.name: values})[0], dtype=np.float32).reshape(len(values), -1))


def imported_explainer(imported: ImportedModel) -> Explainer:
    """An imported model as the explanation runs it: its weights on the zoo network they were copied onto, or its ONNX
    file converted by onnx2torch (both give gradients: Grad-CAM), or, prediction only, the file run by onnxruntime."""
    from workers.engine.zoo.conversion import onnx_network, zoo_model_from_state
    from workers.engine.zoo.networks import ZooModel
    from workers.engine.zoo.start import read_state

    classes = list(imported.classes)
    if imported.mode == ImportedModel.Mode.WEIGHTS_COPIED:
        model = zoo_model_from_state(imported.architecture, read_state(imported.weights_path), imported.input_size)
        return Explainer(model.eval(), classes, as_probabilities, target_layer_of(model, imported.architecture))
    if imported.mode == ImportedModel.Mode.CONVERTED:
        channels = imported.channels
        model = ZooModel(onnx_network(imported.onnx_path), imported.mean or [0.0] * channels, imported.std or [1.0] * channels)
        return Explainer(model.eval(), classes, as_probabilities, target_layer_of(model, "imported"))
    why = imported.reason or imported.message or "onnx2torch could not convert it"
    return Explainer(OnnxRuntimeModel(imported.onnx_path, imported.mean, imported.std), classes, as_probabilities, None,
                     note=f"This model is for prediction only ({why.rstrip('.')}): it runs in onnxruntime, which gives no "
                          "gradients, so there is no heat map, only the prediction.")


def model_facts(run: TrainingRun) -> ModelInput:
    """What rebuilds the run's network: its input channels and its output classes."""
    return ModelInput(input_channels(run), run_classes(run))


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


def upload_input(explanation: Explanation, observer=None) -> torch.Tensor:
    """An uploaded file as the model reads it. An imported model: its picture prepared as prediction prepares one (8 bits
    through its window, resized to the model's sides, [0, 1]). A run's: through the pipelines that made the run's
    dataset (their dataset-wide statistics fitted on the datasets they ran over; per-patient ones on the file alone),
    then as the run read its test samples (the training cache's 8-bit grid, or its plan's spacing and normalisation)."""
    image = image_of(explanation)
    pixels = np.load(image.project_dir / image.array, allow_pickle=False)
    if explanation.imported_model_id:
        from workers.engine.zoo.imports import picture_input

        imported = explanation.imported_model
        shape = (imported.inputs[0].get("shape") if imported.inputs else None) or []
        height, width = (side if isinstance(side, int) else 0 for side in (shape[2:4] if len(shape) >= 4 else [0, 0]))
        return torch.from_numpy(picture_input(pixels, image.meta, imported.channels, height, width))
    run = explanation.run
    dataset = run.partition.dataset
    _, derived = pipeline_chain(dataset)
    if derived:
        image = through_pipelines(explanation, image, pixels, derived, observer)
    plan = run.spec["data"].get("plan")
    if plan:
        return torch.from_numpy(planned_input(image.project_dir / image.array, image.spacing, image.meta, plan,
                                              explanation.upload_dir / STORED))
    return torch.from_numpy(cached_input(np.load(image.project_dir / image.array), image.meta,
                                         (dataset.channels, dataset.height, dataset.width)))


def through_pipelines(explanation: Explanation, image, pixels: np.ndarray, derived: list, observer=None):
    """The upload through each pipeline of the chain, as the preprocessing job took each sample (workers/preprocess.py);
    the result is what the page shows and the heat map lies on (as a derived dataset's sample viewer shows its own)."""
    kind = image.kind
    spacing, meta = tuple(image.spacing), dict(image.meta)
    for dataset in derived:
        pipeline = Pipeline.from_steps(dataset.pipeline_version.steps)
        context = Context(spacing=spacing, meta=meta, patient=UPLOAD_PATIENT)
        own = fit_statistics(pipeline, [(lambda: channels_first(pixels, kind), context)])
        statistics = {key: value for key, value in own.items() if key[0] == "patient"}
        if own:  # dataset-wide statistics: the ones the preprocessing fitted on its source's samples
            fitted = statistics_for(pipeline, list(dataset.derived_from.samples.order_by("id")), observer)
            statistics.update({key: value for key, value in fitted.items() if key[0] == "dataset"})
        output, context = pipeline.apply(channels_first(pixels, kind), 0, replace(context, statistics=statistics))
        pixels = stored_layout(output, kind)
        names = {op.name for op in pipeline.operations}
        meta = {k: v for k, v in meta.items() if not (k in ("rescale_slope", "rescale_intercept") and names & DROPS_RESCALE)
                and not (k in ("window_center", "window_width") and names & DROPS_WINDOW)}
        spacing = tuple(round(float(v), 6) for v in context.spacing)
    relative = str(Path(image.array).with_name("prepared.npy"))
    save_array(pixels, image.project_dir / relative)
    shape = pixels.shape
    depth, height, width = (1, *shape[:2]) if kind == "image" else (tuple(shape[-4:-1]) if image.channels == 3 else tuple(shape[-3:]))
    upload = {**explanation.upload, "array": relative, "spacing": list(spacing), "meta": meta, "shape": list(shape),
              "depth": int(depth), "height": int(height), "width": int(width),
              "fits": f"{explanation.upload.get('fits', '')} First through the preprocessing of {', '.join(d.name for d in derived)}."}
    Explanation.objects.filter(pk=explanation.pk).update(upload=upload)
    explanation.upload = upload
    return image_of(explanation)


def save_array(array: np.ndarray, path: Path) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(partial, path)


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
    if len(classes) != len(explained.probabilities):  # an imported model whose file names no classes: its outputs' numbers
        classes = [str(i) for i in range(len(explained.probabilities))]
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

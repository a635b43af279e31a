"""The kept model as files that work outside the toolkit: ONNX (with a parity check against PyTorch) and safetensors.

Both carry the same metadata (string keys and values: ONNX's `metadata_props`, safetensors' header): the
classes in output order, the input's shape, the preprocessing the images went through before they became
the [0, 1] input, the normalisation (already inside the model), the training spec, the architecture, the
toolkit's code version and the run. docs/models.md ("Exporting a model") is the user's side of this.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from safetensors.torch import save_file
from torch import nn

from .tasks import Task

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
PARITY_TOLERANCE = 1e-4  # the largest |onnxruntime - PyTorch| logit difference that passes (issue 13)
PARITY_IMAGES = 64       # validation images the check runs on, at most
PARITY_BATCH = 16        # in batches this big: VGG-16's activations for 64 images at 224 px would take ~1 GB at once
# The protobuf limit: one ModelProto (graph and weights together) cannot be serialised past 2 GiB.
PROTOBUF_LIMIT = 2**31
# How images became the model's input, before any preprocessing pipeline's steps (the training cache's rules:
# workers/engine/ingest/job.py build_cache, workers/engine/display.py to_uint8, workers/engine/data.py).
IMAGE_TO_INPUT = ("Each image as the toolkit's training cache holds it: grey images' modality values (DICOM rescale "
                  "slope and intercept applied) mapped linearly through the file's own window, else through their "
                  "0.5-99.5 percentile range, to 0-255 (MONOCHROME1 inverted); 8-bit and colour images as they are "
                  "(colour of more bits scaled by its maximum); grey images repeated to 3 channels when the dataset "
                  "has colour ones; resized bilinearly to the input's height and width when they differ; then "
                  "divided by 255 into float32 [0, 1], channels first.")
VALUES_IN = {True: "values in [0, 1] (see preprocessing); normalisation and any resizing are inside the model",
             False: "values normalised as 'preprocessing' says (the plan's resampling and normalisation, outside the model)"}
METADATA_KEYS = ("description", "task", "classes", "dims", "input_name", "output_name", "input_shape", "channels", "value_range",
                 "probabilities", "mean", "std", "normalisation", "preprocessing", "training_spec", "architecture",
                 "toolkit_version", "run_id", "run_name")


class ExportTooLarge(ValueError):
    """The model's weights cannot go into one ONNX file (the protobuf limit)."""


@dataclass(frozen=True)
class ModelFacts:
    """What a user of the file needs to know about the model, as the worker knows it (the engine knows no runs)."""
    architecture: str
    task: Task                          # what the model learnt (its classes, dimensions and output)
    input_shape: tuple[int, ...]        # (C, H, W) or (C, D, H, W) of the samples the model takes: the graph's fixed sides
    spec: dict                          # the run's resolved training spec
    probabilities: str = "softmax"      # how the run's loss turns logits into probabilities: softmax or sigmoid
    preprocessing: list[dict] = field(default_factory=list)  # the dataset's preprocessing pipelines, oldest first
    run_id: int | None = None
    run_name: str = ""
    input_rule: str = IMAGE_TO_INPUT    # how a sample became the input (volumes: the plan's resampling and normalisation)
    toolkit_version: str = "unknown"


def model_metadata(model: nn.Module, facts: ModelFacts) -> dict[str, str]:
    """The file's metadata (str -> str, as both formats need it; lists and dicts as JSON)."""
    channels = facts.input_shape[0]
    mean, std = normalisation_of(model, channels)
    return {
        "description": description(facts),
        **facts.task.export_metadata(),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": json.dumps(list(facts.input_shape)),
        "channels": str(channels),
        "value_range": json.dumps([0.0, 1.0] if facts.input_rule == IMAGE_TO_INPUT else None),
        "probabilities": facts.probabilities,
        "mean": json.dumps(mean),
        "std": json.dumps(std),
        "normalisation": "inside the model: (image - mean) / std per channel; do not apply it again",
        "preprocessing": json.dumps({"image_to_input": facts.input_rule, "pipelines": facts.preprocessing}),
        "training_spec": json.dumps(facts.spec, sort_keys=True),
        "architecture": facts.architecture,
        "toolkit_version": facts.toolkit_version,
        "run_id": "" if facts.run_id is None else str(facts.run_id),
        "run_name": facts.run_name,
    }


def description(facts: ModelFacts) -> str:
    made_by = f"run {facts.run_id} ({facts.run_name})" if facts.run_id is not None else "a run"
    sides = ", ".join(str(side) for side in facts.input_shape)
    return (f"{facts.architecture} {facts.task.name} model of {len(facts.task.classes)} classes ({facts.task.dims}D), "
            f"trained by {made_by} of the medical imaging toolkit. Input '{INPUT_NAME}': float32 (N, {sides}), N any batch "
            f"size, {VALUES_IN[facts.input_rule == IMAGE_TO_INPUT]}. Output "
            f"'{OUTPUT_NAME}': {facts.task.describe_output(facts.probabilities)}")


def probabilities_of(loss) -> str:
    """"softmax" or "sigmoid": how a run's loss (training/losses.py) turns logits into probabilities. Probed on
    three equal logits (softmax: thirds that sum to 1; sigmoid: halves), so a new loss needs nothing here."""
    return "softmax" if abs(float(loss.probabilities(torch.zeros(1, 3)).sum()) - 1.0) < 1e-6 else "sigmoid"


def normalisation_of(model: nn.Module, channels: int) -> tuple[list[float], list[float]]:
    """The mean and std inside the model (a ZooModel's buffers), per channel; none: 0 and 1."""
    buffers = dict(model.named_buffers())
    if "mean" in buffers and "std" in buffers:
        return buffers["mean"].flatten().tolist(), buffers["std"].flatten().tolist()
    return [0.0] * channels, [1.0] * channels


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, metadata: dict[str, str] | None = None,
                dynamic_sides: bool = False) -> Path:
    """Write the model as one self-contained ONNX file with a dynamic batch axis; the input is (N, C, H, W) in [0, 1].
    With `dynamic_sides` (a segmentation network, whose output is a map as large as its input: `Task.spatial_output`)
    the spatial axes are dynamic too wherever the network allows (torch.export works out what each side must be, a
    multiple of 8 for a U-Net; a network built for one size, like UNETR, keeps its sides fixed).

    One file, always: what the user downloads must load on its own. The dynamo exporter's own `save` writes the
    weights to a second file, silently, once they pass 1.5 GB (torch/onnx/_internal/exporter/_onnx_program.py,
    _LARGE_MODEL_THRESHOLD), and a single protobuf cannot pass 2 GiB at all. So the program is serialised here
    with onnx, which never moves weights out unless asked; the zoo's largest, VGG-16 (~530 MB), is far below the
    limit, and a model past it is refused with ExportTooLarge rather than split."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    check_fits_one_file(model)
    axes = {0: torch.export.Dim("batch")}
    if dynamic_sides:
        axes.update({axis: torch.export.Dim.AUTO for axis in range(2, example.dim())})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (batch_of_two(example.cpu()),), dynamo=True, verbose=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=(axes,),
        )
        proto = program.model_proto
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
        proto.doc_string = metadata.get("description", "")
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def batch_of_two(example: torch.Tensor) -> torch.Tensor:
    """torch.export takes a batch of one as a fixed size: an example of at least two keeps the batch axis dynamic."""
    return example if len(example) >= 2 else example.repeat(2, *([1] * (example.dim() - 1)))


def check_fits_one_file(model: nn.Module) -> None:
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if weight_bytes >= PROTOBUF_LIMIT:
        raise ExportTooLarge(f"the model's weights take {weight_bytes / 2**30:.1f} GiB; one ONNX file holds less than 2 GiB")


def unshared(state: dict) -> dict:
    """The state's tensors on the CPU, those that share memory with one before them copied: safetensors refuses
    aliases, and MONAI's DynUNet registers its encoder and decoder twice (as its stages and as its skip chain), while
    every key must stay for the state to load back whole."""
    tensors, seen = {}, set()
    for key, value in state.items():
        tensor = value.detach().cpu()
        where = tensor.untyped_storage().data_ptr()
        tensors[key] = (tensor.clone() if where in seen and tensor.numel() else tensor).contiguous()
        seen.add(where)
    return tensors


def write_safetensors(model: nn.Module, metadata: dict[str, str], path: str | Path) -> Path:
    """The model's state dict (the ZooModel's keys: `mean`, `std`, `network.…`) as safetensors with the metadata:
    nothing in it is executable, unlike a pickle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(unshared(model.state_dict()), str(path), metadata={"format": "pt", **metadata})
    return path


def cpu_session(path: str | Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_predict(path: str | Path, images: np.ndarray) -> np.ndarray:
    return cpu_session(path).run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})[0]


@torch.no_grad()
def both_outputs(model: nn.Module, path: str | Path, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The logits of PyTorch (eval, CPU) and of onnxruntime (CPU) for the same images, in batches of PARITY_BATCH."""
    model = model.cpu().eval()
    session = cpu_session(path)
    expected, got = [], []
    for batch in images.cpu().split(PARITY_BATCH):
        expected.append(model(batch).numpy())
        got.append(session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy().astype(np.float32)})[0])
    return np.concatenate(expected), np.concatenate(got)


def parity_check(model: nn.Module, path: str | Path, images: torch.Tensor, subset: str = "validation") -> dict:
    """Does onnxruntime give what PyTorch gives? The largest logit difference and whether every predicted class is
    the same, on `images` (up to PARITY_IMAGES of a subset the model did not learn from, not the export example)."""
    if not len(images):
        return {"images": 0, "subset": subset, "max_abs_difference": None, "same_predictions": False,
                "tolerance": PARITY_TOLERANCE, "passed": False}
    expected, got = both_outputs(model, path, images)
    difference = float(np.abs(got - expected).max())
    same = bool((got.argmax(1) == expected.argmax(1)).all())
    finite = math.isfinite(difference)
    return {"images": len(images), "subset": subset, "max_abs_difference": difference if finite else None,
            "same_predictions": same, "tolerance": PARITY_TOLERANCE, "passed": finite and difference <= PARITY_TOLERANCE and same}


def max_abs_difference(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    expected, got = both_outputs(model, path, images)
    return float(np.abs(got - expected).max())

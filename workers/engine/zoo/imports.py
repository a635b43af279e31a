"""Imported models (ONNX, safetensors): the checks an upload gets before anything is kept, and prediction.

These are the web tier's engine questions (workers/engine/call.py): each runs in a child process, so a
hostile or huge file is parsed away from the web worker (its memory, and a parser that crashes takes only
the child with it). Nothing here unpickles: ONNX is protobuf (onnx.load, external data never followed),
safetensors is an 8-byte length, a JSON header and raw bytes (read here by hand, the tensors by the
safetensors library). A pickle, whatever its name, is refused by its first bytes.

The slow part of an import (recognising a zoo network, converting with onnx2torch, checking against
onnxruntime) is the worker's: conversion.py.
"""
from __future__ import annotations

import gc
import json
import math
import re
import struct
from pathlib import Path

from ..call import Refusal, question
from ..tasks import TASKS
from .registry import MODELS

MAX_CHANNELS = 16
METADATA_VALUE_CHARS = 20_000   # a metadata value is shown, not stored whole beyond this
METADATA_KEYS_KEPT = 100
SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors library's own limit
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                      "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
OPTIONAL_KEYS = ("mean", "std")   # a ZooModel's normalisation: the file may carry it or not
PICKLED = "pickled files can run code when loaded; export safetensors or ONNX"
CLASS_KEYS = ("classes", "class_names", "labels")
MISMATCHES_SHOWN = 5


def foreign_format(head: bytes) -> str:
    """What a file is by its first bytes, when it is something an importer must not (or cannot) read as ONNX."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return f"a Python pickle ({PICKLED})"
    if head[:4] == b"PK\x03\x04":
        return f"a zip archive, as PyTorch's torch.save writes (.pt, .pth, .ckpt: a zip of pickles; {PICKLED})"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy array file"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file (as Keras writes); export the model as ONNX"
    if head[:2] == b"\x1f\x8b":
        return "a gzip archive; upload the file it holds"
    if len(head) >= 9 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] < SAFETENSORS_HEADER_LIMIT:
        return "a safetensors file; import it as safetensors, naming its architecture"
    return ""


def head_of(path: str | Path, size: int = 16) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


# ----------------------------------------------------------------------------------------------- ONNX


def not_onnx(what: str) -> Refusal:
    return Refusal(f"This is not an ONNX file: {what}. Export the model with torch.onnx.export (or your framework's ONNX "
                   "exporter) and upload the .onnx file.")


@question
def inspect_onnx(path: str, field: str = "file") -> dict:
    """The facts of an uploaded ONNX file, or a Refusal saying why it cannot be imported."""
    import onnx

    foreign = foreign_format(head_of(path))
    if foreign:
        raise not_onnx(f"it is {foreign}")
    try:
        # External data is never followed: a tensor's "location" could name any file on this machine.
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and whatever else a damaged file makes the reader raise
        raise not_onnx(f"it could not be read as one ({type(error).__name__})") from None
    if not model.graph.node or not model.opset_import:
        raise not_onnx("it holds no graph of operations")
    external = external_tensors(model)
    if external:
        shown = ", ".join(external[:MISMATCHES_SHOWN]) + (f" and {len(external) - MISMATCHES_SHOWN} more" if len(external) > MISMATCHES_SHOWN else "")
        raise Refusal(f"The model keeps {len(external)} weight tensor(s) in external data outside the upload ({shown}): "
                      "only one self-contained file can be imported. Export it again with its weights inside "
                      "(torch.onnx.export(..., external_data=False), or onnx.save(model, path, save_as_external_data=False)).")
    try:
        facts, refusal = onnx_facts(model), None
    except Refusal as refused:
        facts, refusal = None, refused
    # The checker reads the file itself (no external data is left to follow): the Python copy goes first, so a large
    # model is in memory once, not twice (VGG-16's 537 MB: 1.1 GB at most instead of 2.1 GB, and in half the time).
    del model
    gc.collect()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:
        raise Refusal(f"The ONNX file is not valid: {first_line(error)}. Export it again, or check it with "
                      "onnx.checker.check_model.") from None
    if refusal is not None:
        raise refusal
    return facts


def runtime_message(error: Exception, limit: int = 300) -> str:
    """onnxruntime's error without its C++ source location, function signature and the file's temporary path."""
    text = " ".join(str(error).split())
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"Load model from \S+ failed:", "", text)
    text = re.sub(r"\S*\.(?:cc|cpp|h):\d+ [\w:~<>]+\([^()]*\)\s*", "", text)
    return (text[:limit] + "…") if len(text) > limit else (text or type(error).__name__)


def first_line(error: Exception, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    line = (text[0] if text else type(error).__name__)[:limit]
    return line.rstrip(".")


def external_tensors(model) -> list[str]:
    """Names of the tensors stored outside the file, anywhere in the model (subgraphs and functions too)."""
    import onnx

    found = []

    def tensor(t, where=""):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            found.append(t.name or where or "(unnamed)")

    def graph(g):
        for t in g.initializer:
            tensor(t)
        for sparse in g.sparse_initializer:
            tensor(sparse.values)
            tensor(sparse.indices)
        nodes(g.node)

    def nodes(node_list):
        for node in node_list:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensor(attribute.t, f"{node.name or node.op_type}.{attribute.name}")
                for t in attribute.tensors:
                    tensor(t, f"{node.name or node.op_type}.{attribute.name}")
                if attribute.HasField("sparse_tensor"):
                    tensor(attribute.sparse_tensor.values)
                for sparse in attribute.sparse_tensors:
                    tensor(sparse.values)
                if attribute.HasField("g"):
                    graph(attribute.g)
                for g in attribute.graphs:
                    graph(g)

    graph(model.graph)
    for function in model.functions:
        nodes(function.node)
    return found


def value_info(value) -> dict:
    """An input's or output's name, element type and shape (sides as numbers, or their symbolic names)."""
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value.name, "type": kind or "unknown", "shape": None}
    tensor = value.type.tensor_type
    try:
        element = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    except Exception:
        element = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type in onnx.TensorProto.DataType.values() else "unknown"
    shape = None
    if tensor.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return {"name": value.name, "type": element, "shape": shape}


def real_inputs(graph) -> list:
    """The graph's inputs less those that are initializers (older exporters list every weight as an input)."""
    weights = {t.name for t in graph.initializer}
    return [value for value in graph.input if value.name not in weights]


def onnx_facts(model) -> dict:
    inputs = [value_info(v) for v in real_inputs(model.graph)]
    outputs = [value_info(v) for v in model.graph.output]
    if not inputs:
        raise Refusal("The model takes no input; the toolkit imports models that take one batch of images (N, C, H, W).")
    if len(inputs) > 1:
        raise Refusal(f"The model takes {len(inputs)} inputs ({', '.join(repr(i['name']) for i in inputs)}); the toolkit imports "
                      "models that take one batch of images (N, C, H, W). Export it with a single image input.")
    if not outputs:
        raise Refusal("The model has no output.")
    image = inputs[0]
    shape = image["shape"]
    if shape is None or len(shape) != 4:
        described = "no fixed rank" if shape is None else f"shape {shape}"
        raise Refusal(f"The model's input '{image['name']}' has {described}: the toolkit imports image models whose input is a "
                      "batch of 2D images, (N, C, H, W).")
    channels = shape[1]
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise Refusal(f"The model's input '{image['name']}' has shape {shape}: its second side must be a fixed number of image "
                      f"channels (1 to {MAX_CHANNELS}), as in (N, C, H, W).")
    if image["type"] != "float32":
        raise Refusal(f"The model's input '{image['name']}' holds {image['type']} values; the toolkit gives models float32 images. "
                      "Export it with a float32 input.")
    metadata = {}
    for prop in list(model.metadata_props)[:METADATA_KEYS_KEPT]:
        metadata[prop.key[:200]] = prop.value[:METADATA_VALUE_CHARS]
    height, width = (side if isinstance(side, int) else 0 for side in shape[2:])
    out_shape = outputs[0]["shape"] or []
    class_count = out_shape[1] if len(out_shape) >= 2 and isinstance(out_shape[1], int) and all(side == 1 for side in out_shape[2:]) else 0
    default_domain = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return {
        "opset": default_domain[0] if default_domain else None,
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip()[:200],
        "inputs": inputs, "outputs": outputs, "metadata": metadata,
        "channels": channels, "height": height, "width": width, "input_size": height if height and height == width else 0,
        "class_count": class_count,
        "classes": classes_from(metadata, class_count),
        "architecture_hint": metadata.get("architecture", "") if metadata.get("architecture", "") in MODELS else "",
        "operators": sorted({node.op_type for node in model.graph.node})[:100],
    }


def classes_from(metadata: dict, count: int) -> list[str]:
    """Class names the file's metadata gives (a JSON list, or names separated by commas), when their number fits."""
    for key in CLASS_KEYS:
        raw = metadata.get(key)
        if not raw:
            continue
        try:
            names = json.loads(raw)
        except ValueError:
            names = [part.strip() for part in raw.split(",")]
        if isinstance(names, list) and names and all(isinstance(n, str | int) for n in names) and (not count or len(names) == count):
            return [str(n)[:100] for n in names][:10_000]
    return []


# ----------------------------------------------------------------------------------------------- safetensors


def not_safetensors(what: str) -> Refusal:
    return Refusal(f"This is not a safetensors file: {what}. Save the weights with safetensors.torch.save_file "
                   "(or model.save_pretrained(..., safe_serialization=True)).")


def safetensors_header(path: str | Path) -> tuple[dict, dict]:
    """(tensors: name -> {dtype, shape, data_offsets}, metadata) from the file's header, checked against its size."""
    size = Path(path).stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
        foreign = foreign_format(head + file.read(8))
        if foreign and not foreign.startswith("a safetensors"):
            raise not_safetensors(f"it is {foreign}")
        if len(head) < 8:
            raise not_safetensors("it is too short to hold a header")
        length = struct.unpack("<Q", head)[0]
        if not 2 <= length <= min(SAFETENSORS_HEADER_LIMIT, size - 8):
            raise not_safetensors("its first 8 bytes do not give the length of a header inside the file")
        file.seek(8)
        raw = file.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise not_safetensors("its header is not JSON") from None
    if not isinstance(header, dict):
        raise not_safetensors("its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise not_safetensors("its __metadata__ is not an object of texts")
    data_size = size - 8 - length
    for name, entry in header.items():
        if not (isinstance(entry, dict) and entry.get("dtype") in SAFETENSORS_DTYPES and isinstance(entry.get("shape"), list)
                and all(isinstance(s, int) and s >= 0 for s in entry["shape"]) and isinstance(entry.get("data_offsets"), list)
                and len(entry["data_offsets"]) == 2 and all(isinstance(o, int) for o in entry["data_offsets"])):
            raise not_safetensors(f"the header's entry for '{str(name)[:100]}' is not a tensor's dtype, shape and offsets")
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= data_size or end - begin != math.prod(entry["shape"]) * SAFETENSORS_DTYPES[entry["dtype"]]:
            raise not_safetensors(f"the tensor '{str(name)[:100]}' lies outside the file or has the wrong length (truncated?)")
    if not header:
        raise not_safetensors("it holds no tensor")
    return header, {str(k)[:200]: str(v)[:METADATA_VALUE_CHARS] for k, v in list(metadata.items())[:METADATA_KEYS_KEPT]}


def zoo_keys(names, architecture: str) -> dict[str, str]:
    """{name in the file: the ZooModel key it stands for}: keys without the `network.` prefix (torchvision's own
    files) get it; DenseNet's published names and Inception's auxiliary head (not part of the zoo's network) are
    dealt with as when pretrained weights are read."""
    from .weights import rename_densenet

    names = list(names)
    prefixed = any(n.startswith("network.") for n in names)
    mapped = {}
    for name in names:
        key = name if prefixed or name in OPTIONAL_KEYS else f"network.{name}"
        if architecture == "densenet121":
            key = "network." + rename_densenet(key.removeprefix("network.")) if key.startswith("network.") else key
        if architecture == "inception_v3" and key.startswith("network.AuxLogits."):
            continue
        mapped[name] = key
    return mapped


def expected_shapes(architecture: str, channels: int, classes: int) -> dict[str, tuple]:
    """The ZooModel's state dict shapes for these channels and classes (built on the meta device: no memory, no time)."""
    import torch

    from .networks import build_network

    with torch.device("meta"):
        model = build_network(architecture, channels, classes)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def first_and_head_keys(architecture: str) -> tuple[str, str, int]:
    """The state keys of the first convolution's weight and of a tensor shaped by the class count, and the axis of
    that tensor which is the count: a classifier's head (rows), or a map network's output layer (found by building it
    for two label counts: no single module is its head)."""
    import torch

    from .networks import build_network, first_conv
    from .start import label_shaped_keys

    entry = MODELS[architecture]
    with torch.device("meta"):
        model = build_network(architecture, 3, 10)
    first = f"network.{first_conv(model.network)[0]}.weight"
    if not TASKS[entry.task].spatial_output:
        return first, f"network.{entry.head}.weight", 0
    key, axis = sorted(label_shaped_keys(architecture, None).items())[0]
    return first, f"network.{key}", axis


@question
def inspect_safetensors(path: str, architecture: str, field: str = "file") -> dict:
    """The facts of an uploaded safetensors file for a zoo architecture, or a Refusal: another architecture's weights
    (keys or shapes that do not fit), or not a safetensors file at all. Only the header is read, and `mean`/`std`."""
    if architecture not in MODELS:
        raise Refusal(f"There is no architecture '{architecture}'; choose one of {', '.join(MODELS)}.")
    entry = MODELS[architecture]
    header, metadata = safetensors_header(path)
    mapped = zoo_keys(header, architecture)
    shapes = {mapped[name]: tuple(header[name]["shape"]) for name in mapped}
    if entry.planned:
        raise Refusal(f"{entry.title} is built from a dataset's plan (its depth and kernels follow the patch and spacing), so "
                      "its weights alone do not say how to build it: start from the run that trained it instead.")
    first_key, head_key, head_axis = first_and_head_keys(architecture)
    head_rank = 2 if not TASKS[entry.task].spatial_output else None  # a map network's output layer is a convolution
    if (first_key not in shapes or head_key not in shapes or len(shapes[first_key]) != entry.dims + 2
            or (head_rank and len(shapes[head_key]) != head_rank)):
        missing = [k for k in (first_key, head_key) if k not in shapes]
        raise another_architecture(entry.title, missing=missing or [first_key], unexpected=sorted(set(shapes) - {first_key, head_key}), wrong=[])
    channels, classes = shapes[first_key][1], shapes[head_key][head_axis]
    if not 1 <= channels <= MAX_CHANNELS or classes < 1:
        raise another_architecture(entry.title, [], [], [f"{first_key} takes {channels} channels"])
    expected = expected_shapes(architecture, channels, classes)
    optional = {k for k in expected if k.endswith("num_batches_tracked") or k in OPTIONAL_KEYS}
    missing = sorted(set(expected) - set(shapes) - optional)
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [f"{key} is {list(shapes[key])} where {entry.title} has {list(expected[key])}"
             for key in expected if key in shapes and shapes[key] != expected[key]]
    if missing or unexpected or wrong:
        raise another_architecture(entry.title, missing, unexpected, wrong)
    not_float = [name for name in mapped if mapped[name] in expected and not mapped[name].endswith("num_batches_tracked")
                 and header[name]["dtype"] not in FLOAT_DTYPES]
    if not_float:
        raise Refusal(f"The weights {', '.join(not_float[:MISMATCHES_SHOWN])} are not floating-point numbers "
                      f"({header[not_float[0]]['dtype']}); save the model's float weights.")
    facts = {"architecture": architecture, "channels": channels, "class_count": classes, "metadata": metadata,
             "tensors": len(mapped), "parameters": sum(math.prod(shapes[k]) for k in shapes if k not in optional),
             "classes": classes_from(metadata, classes)}
    facts.update(stored_normalisation(path, header, mapped, channels))
    return facts


def another_architecture(title: str, missing: list[str], unexpected: list[str], wrong: list[str]) -> Refusal:
    parts = []
    for label, keys in (("missing", missing), ("not in it", unexpected), ("of another shape", wrong)):
        if keys:
            more = f" and {len(keys) - MISMATCHES_SHOWN} more" if len(keys) > MISMATCHES_SHOWN else ""
            parts.append(f"{label}: {', '.join(keys[:MISMATCHES_SHOWN])}{more}")
    return Refusal(f"This is a weights file for another architecture than {title} ({'; '.join(parts)}). Choose the architecture "
                   "the weights were trained with, or import the model as ONNX.")


def stored_normalisation(path: str, header: dict, mapped: dict, channels: int) -> dict:
    """The file's own `mean` and `std` (a ZooModel's), read through safetensors (raw bytes: no code runs)."""
    names = {mapped[name]: name for name in mapped if mapped[name] in OPTIONAL_KEYS}
    if set(names) != set(OPTIONAL_KEYS):
        return {}
    from safetensors import safe_open

    values = {}
    with safe_open(str(path), framework="numpy") as file:
        for key, name in names.items():
            array = file.get_tensor(name).astype("float64").reshape(-1)
            if array.size not in (1, channels) or not all(math.isfinite(v) for v in array):
                return {}
            values[key] = [float(v) for v in array] * (channels if array.size == 1 else 1)
    if any(v <= 0 for v in values["std"]):
        return {}
    return {"mean": values["mean"], "std": values["std"]}


# ----------------------------------------------------------------------------------------------- prediction

MAX_PREDICT_SIDE = 1024  # a model with free sides gets the image at its own size, up to this


@question
def predict_image(onnx_path: str, image_path: str, channels: int, height: int = 0, width: int = 0, mean=None, std=None,
                  classes=None, field: str = "image") -> dict:
    """The model's scores for one picture (PNG, JPEG, ... or a 2D DICOM), prepared as the training cache prepares
    images (windowed to 8 bits, resized, [0, 1]), normalised with the import's mean and std when the file does not
    do it itself; run by onnxruntime."""
    import numpy as np
    import onnxruntime

    pixels = image_input(Path(image_path).read_bytes(), channels, height, width)
    if mean and std:
        pixels = (pixels - np.asarray(mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    try:
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        scores = session.run(None, {session.get_inputs()[0].name: pixels.astype(np.float32)})[0]
    except Exception as error:
        raise Refusal(f"onnxruntime could not run the model on this image: {runtime_message(error)}.") from None
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise Refusal("The model's outputs for this image are not finite numbers.")
    looks_like_probabilities = values.size > 1 and values.min() >= 0 and abs(values.sum() - 1) < 1e-3
    probabilities = values if looks_like_probabilities else np.exp(values - values.max()) / np.exp(values - values.max()).sum()
    names = classes if classes and len(classes) == values.size else [str(i) for i in range(values.size)]
    top = int(probabilities.argmax())
    return {"outputs": [float(v) for v in values], "probabilities": [float(p) for p in probabilities], "classes": names,
            "top": {"index": top, "class": names[top], "probability": float(probabilities[top])},
            "input_shape": list(pixels.shape[1:]), "outputs_are": "probabilities" if looks_like_probabilities else "scores (softmax taken)"}


def image_input(data: bytes, channels: int, height: int, width: int):
    """(1, C, H, W) float32 in [0, 1] from a picture's bytes, as the ingest would cache it."""
    from ..ingest.decoded import IMAGE, SLICE, FileOutcome
    from ..ingest.dicom import looks_like_dicom, read_dicom
    from ..ingest.nifti import looks_like_nifti
    from ..ingest.raster import read_raster

    head = data[:352]
    if looks_like_nifti("", head):
        raise Refusal("This is a NIfTI volume; prediction takes one 2D image (PNG, JPEG, BMP, TIFF or a 2D DICOM).")
    try:
        decoded = read_dicom(data, None) if looks_like_dicom("", head) else read_raster(data, keep_original=False)
    except FileOutcome as outcome:
        raise Refusal(f"The image could not be read: {outcome}.") from None
    if decoded.kind not in (IMAGE, SLICE) or decoded.pixels.ndim not in (2, 3) or (decoded.pixels.ndim == 3 and decoded.pixels.shape[-1] != 3):
        raise Refusal("This file holds a volume or several frames; prediction takes one 2D image.")
    return picture_input(decoded.pixels, decoded.meta, channels, height, width)[None]


def picture_input(pixels, meta: dict, channels: int, height: int, width: int):
    """(C, H, W) float32 in [0, 1] from a 2D picture's decoded pixels ((H, W) or (H, W, 3)), as the ingest would cache
    it, at the model's sides (free sides: the picture's own, up to MAX_PREDICT_SIDE), with the model's channels."""
    import numpy as np

    from ..ingest.job import cache_pixels

    source_height, source_width = pixels.shape[:2]
    if not (height and width):
        scale = min(1.0, MAX_PREDICT_SIDE / max(source_height, source_width))
        height = height or max(1, round(source_height * scale))
        width = width or max(1, round(source_width * scale))
    colour = 3 if pixels.ndim == 3 else 1
    cached, _ = cache_pixels(np.asarray(pixels), meta, (colour, height, width))
    image = cached.astype(np.float32) / 255.0
    if image.shape[0] != channels:
        image = image.mean(axis=0, keepdims=True) if channels == 1 else np.stack([image[i % image.shape[0]] for i in range(channels)])
    return image

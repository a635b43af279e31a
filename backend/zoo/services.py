"""Imported models: the checks an upload gets before anything is kept, the import job, prediction, deleting, and
what a run that starts from one needs (the launch's checks, the worker's ModelStart).

An upload is refused (400, with the reason) before a row or a file is kept: a pickle under any name, a file over
settings.MODEL_IMPORT_MAX_BYTES, an ONNX file that does not parse or check, keeps weights outside itself, takes more
than one input or no batch of images; safetensors weights of another architecture. The file is parsed by an engine
question in a child process (backend/core/engine.py): a hostile or huge file never loads into a web worker, and a
parser that crashes on it takes only the child. Nothing uploaded is ever unpickled, here or in the worker.
"""
from __future__ import annotations

import hashlib
import math
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import transaction

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlan, Thing, carry_out
from backend.core.engine import ask_engine
from backend.core.errors import ServiceError
from backend.core.jobs import require_stoppable, stop
from backend.core.tasks import INGEST_QUEUE, send_after_commit
from backend.projects.access import projects_for, require_owner
from workers.engine.zoo.imports import PICKLED, foreign_format
from workers.engine.zoo.registry import MODELS

from .models import ImportedModel

TASK = "workers.tasks.import_model"
SUFFIXES = {".onnx": ImportedModel.Kind.ONNX, ".safetensors": ImportedModel.Kind.SAFETENSORS}
PICKLED_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".tar", ".pth.tar")
PREDICT_MAX_BYTES = 64 * 1024**2
CHECK_TIMEOUT = 300.0  # seconds: the checker reads the whole file (up to MODEL_IMPORT_MAX_BYTES)
IMPORTED_ARCHITECTURE = "imported"  # the spec's architecture of a run from a converted model (workers.engine.training.spec)


def architecture_choices() -> list[tuple[str, str]]:
    """(name, title) of the zoo's networks, for the import form's safetensors architecture."""
    return [(entry.name, entry.title) for entry in MODELS.values()]


def imported_models_for(user):
    """Imported models of the projects the user may read."""
    return ImportedModel.objects.filter(project__in=projects_for(user))


def kind_of(file_name: str) -> str:
    """The kind an upload's name says it is, or the refusal: pickled formats first, whatever else the name says."""
    name = (file_name or "").lower()
    if name.endswith(PICKLED_SUFFIXES):
        raise ServiceError(f"'{file_name}' is a pickled PyTorch file; {PICKLED}.", field="file", code="pickled")
    suffix = next((s for s in SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise ServiceError(f"'{file_name}' is neither an ONNX file (.onnx) nor safetensors weights (.safetensors); export the "
                           "model as one of those.", field="file", code="unsupported_format")
    return SUFFIXES[suffix]


def check_size(size: int) -> None:
    limit = settings.MODEL_IMPORT_MAX_BYTES
    if size > limit:
        raise ServiceError(f"The file is {size / 1024**2:,.1f} MB; imported models are limited to {limit / 1024**2:,.0f} MB "
                           "(TOOLKIT_MODEL_IMPORT_MAX_BYTES).", field="file", code="too_large")


def normalisation(mean, std) -> tuple[list[float] | None, list[float] | None]:
    """Mean and std given together (one value, or one per channel), std above zero; or neither."""
    if not mean and not std:
        return None, None
    if not (mean and std) or len(mean) != len(std):
        raise ServiceError("Give the mean and the std together, with as many values each (one, or one per channel).",
                           field="std" if mean else "mean")
    if not all(math.isfinite(v) for v in [*mean, *std]) or any(v <= 0 for v in std):
        raise ServiceError("The mean and std must be finite numbers, the std above zero.", field="std")
    return list(mean), list(std)


def parse_numbers(raw: str, field: str) -> list[float] | None:
    """"0.485, 0.456, 0.406" or "[0.485, 0.456, 0.406]" as numbers (a form's text field)."""
    raw = (raw or "").strip().strip("[]")
    if not raw:
        return None
    try:
        values = [float(part) for part in re.split(r"[,\s]+", raw) if part]
    except ValueError:
        raise ServiceError(f"The {field} is a list of numbers, e.g. 0.485, 0.456, 0.406.", field=field) from None
    if not 1 <= len(values) <= 16:
        raise ServiceError(f"Give one {field} value, or one per channel.", field=field)
    return values


@contextmanager
def staged(project, upload):
    """The upload as a file beside the storage (moved when Django already spooled it), with its SHA-256; removed
    on the way out unless the import took it (`keep`)."""
    incoming = project.storage_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=incoming, prefix="model-"))
    path = folder / "upload"
    digest = hashlib.sha256()
    try:
        if hasattr(upload, "temporary_file_path"):
            shutil.move(upload.temporary_file_path(), path)
            with open(path, "rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            with open(path, "wb") as file:
                for chunk in upload.chunks(1 << 20):
                    digest.update(chunk)
                    file.write(chunk)
        yield path, digest.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def engine_check(question: str, **arguments) -> dict:
    """The engine's facts of a staged file, a refusal (400), or, when the checker died on the file, a 400 that says so."""
    return ask_engine(question, timeout=CHECK_TIMEOUT, field="file",
                      crash_message="The file could not be read: the model reader stopped on it (a damaged or hostile file?). "
                                    "Export the model again.", **arguments)


def import_model(user, project, upload, name: str = "", architecture: str = "", mean=None, std=None,
                 input_size: int = 0) -> ImportedModel:
    """Check an uploaded model, keep it, and queue its import (what it becomes is the worker's). Nothing is kept when
    a check refuses it. `mean` and `std`: lists of numbers, or a form's text of them."""
    require_owner(user, project)
    if upload is None:
        raise ServiceError("Choose an .onnx file, or a .safetensors file of weights.", field="file")
    kind = kind_of(upload.name)
    check_size(upload.size or 0)
    architecture = (architecture or "").strip()
    if kind == ImportedModel.Kind.SAFETENSORS:
        if architecture not in MODELS:
            raise ServiceError(f"Name the architecture these weights belong to ({', '.join(MODELS)}): a safetensors file holds "
                               "weights only.", field="architecture")
    elif architecture:
        raise ServiceError("An ONNX file holds its own architecture; the architecture field is for safetensors weights.",
                           field="architecture")
    mean = parse_numbers(mean, "mean") if isinstance(mean, str) else mean
    std = parse_numbers(std, "std") if isinstance(std, str) else std
    mean, std = normalisation(mean, std)
    with staged(project, upload) as (path, sha256):
        check_size(path.stat().st_size)
        with open(path, "rb") as file:
            foreign = foreign_format(file.read(16))
        if foreign.startswith(("a Python pickle", "a zip archive")):
            raise ServiceError(f"This file is {foreign}.", field="file", code="pickled")
        if kind == ImportedModel.Kind.ONNX:
            facts = engine_check("inspect_onnx", path=str(path))
        else:
            facts = engine_check("inspect_safetensors", path=str(path), architecture=architecture)
        channels = facts["channels"]
        if mean and len(mean) not in (1, channels):
            raise ServiceError(f"The model takes {channels}-channel images: give one mean and std, or {channels}.", field="mean")
        folder = None
        try:
            with transaction.atomic():
                imported = ImportedModel.objects.create(
                    project=project, created_by=user, kind=kind, name=(name or "").strip()[:200] or Path(upload.name).stem[:200] or "model",
                    file_name=Path(upload.name).name[:255], size_bytes=path.stat().st_size, sha256=sha256,
                    opset=facts.get("opset"), producer=facts.get("producer", ""), inputs=facts.get("inputs", []),
                    outputs=facts.get("outputs", []), metadata=facts.get("metadata", {}), classes=facts.get("classes", []),
                    architecture=architecture, channels=channels, class_count=facts.get("class_count", 0),
                    input_size=facts.get("input_size", 0) or (input_size if kind == ImportedModel.Kind.SAFETENSORS else 0),
                    mean=per_channel(mean, channels), std=per_channel(std, channels),
                    details={"file": {k: facts[k] for k in ("operators", "tensors", "parameters", "ir_version") if k in facts},
                             **({"stored_normalisation": {"mean": facts["mean"], "std": facts["std"]}} if "mean" in facts else {})},
                )
                folder = imported.storage_dir
                folder.mkdir(parents=True, exist_ok=True)
                shutil.move(path, imported.source_path)
                send_after_commit(TASK, imported.pk, INGEST_QUEUE)
                record(user, project, Action.CREATE, imported)
        except BaseException:
            if folder is not None:  # the row is gone with the transaction: so is its file
                shutil.rmtree(folder, ignore_errors=True)
            raise
    return imported


def per_channel(values: list[float] | None, channels: int) -> list[float] | None:
    if not values:
        return None
    return list(values) * channels if len(values) == 1 else list(values)


def stop_import(actor, imported: ImportedModel) -> ImportedModel:
    """A queued import stops at once; a running one after its current step. A stopped import is not usable: delete it."""
    require_owner(actor, imported.project)
    require_stoppable(imported, "model import")
    stop(imported)
    imported.refresh_from_db()
    return imported


def imported_deletion(imported: ImportedModel) -> DeletionPlan:
    """Deleting an imported model takes its files; an import still working is stopped first. A run that starts from it and
    has not finished forbids it (it has not read the weights yet); finished runs keep what they learned."""
    plan = DeletionPlan(Thing.of("imported_model", imported), row=imported, folders=[imported.storage_dir])
    from backend.runs.models import TrainingRun

    waiting = TrainingRun.objects.filter(spec__model__weights="imported", spec__model__imported_model=imported.pk).exclude(
        status__in=TrainingRun.finished_statuses()).first()
    if waiting:
        plan.blocked_by.append(f"Run {waiting.pk} '{waiting.name}' starts from this model and has not finished; delete the model "
                               "once it has (or stop it first).")
    return plan


def delete_imported(actor, imported: ImportedModel, with_runs: bool = False) -> None:
    carry_out(actor, imported.project, imported_deletion(imported), with_runs)


# ----------------------------------------------------------------------------------------------- prediction


@contextmanager
def as_file(upload):
    if hasattr(upload, "temporary_file_path"):
        yield upload.temporary_file_path()
        return
    handle, name = tempfile.mkstemp(dir=settings.FILE_UPLOAD_TEMP_DIR, prefix="predict-")
    try:
        with open(handle, "wb") as file:
            for chunk in upload.chunks(1 << 20):
                file.write(chunk)
        yield name
    finally:
        Path(name).unlink(missing_ok=True)


def predict(user, imported: ImportedModel, image) -> dict:
    """The model's scores for one image, by onnxruntime in an engine question (a child process)."""
    if not imported.usable:
        state = ("is still being checked" if not imported.is_finished
                 else f"could not be imported ({imported.reason or imported.message})")
        raise ServiceError(f"This model {state}; it cannot predict.", code="not_ready", status_code=409)
    if image is None:
        raise ServiceError("Choose an image (PNG, JPEG, BMP, TIFF, or a 2D DICOM file).", field="image")
    if (image.size or 0) > PREDICT_MAX_BYTES:
        raise ServiceError(f"The image is over {PREDICT_MAX_BYTES // 1024**2} MB.", field="image", code="too_large")
    shape = (imported.inputs[0].get("shape") if imported.inputs else None) or [None, imported.channels, 0, 0]
    height, width = (side if isinstance(side, int) else 0 for side in shape[2:4])
    with as_file(image) as path:
        answer = ask_engine("predict_image", field="image", onnx_path=str(imported.onnx_path), image_path=str(path),
                            channels=imported.channels, height=height, width=width, mean=imported.mean, std=imported.std,
                            classes=imported.classes or None,
                            crash_message="The image could not be read: the reader stopped on it (a damaged file?).")
    record(user, imported.project, Action.READ, imported)
    return answer


# ----------------------------------------------------------------------------------------------- runs that start from one


def check_imported_start(user, spec, partition) -> ImportedModel | None:
    """A run (or a rate search) that starts from an imported model: one the user can read, finished importing, able
    to be fine-tuned, of the architecture the spec names ("imported" for a converted one)."""
    model = spec["model"]
    if model.get("weights") != "imported":
        return None
    field = "model.imported_model"
    imported = imported_models_for(user).filter(pk=model.get("imported_model")).first()
    if imported is None:
        raise ServiceError(f"There is no imported model {model.get('imported_model')} that you can read; import one from the "
                           "project page (Import a model).", field=field)
    named = f"The imported model '{imported.name}'"
    if not imported.is_finished:
        raise ServiceError(f"{named} is still being checked; launch once its import has finished.", field=field, code="not_ready")
    if not imported.trainable:
        why = imported.reason or imported.message
        if imported.mode == ImportedModel.Mode.PREDICTION_ONLY:
            raise ServiceError(f"{named} can only predict, not be fine-tuned: {why}", field=field)
        raise ServiceError(f"{named} could not be imported: {why}", field=field)
    wanted = imported.architecture if imported.mode == ImportedModel.Mode.WEIGHTS_COPIED else IMPORTED_ARCHITECTURE
    if model["architecture"] != wanted:
        what = (f"a {MODELS[wanted].title} with its weights copied" if wanted in MODELS
                else "converted from ONNX (not a zoo network)")
        raise ServiceError(f"{named} is {what}: choose the architecture '{wanted}' to start from it.", field="model.architecture")
    needed = imported.weights_path if imported.mode == ImportedModel.Mode.WEIGHTS_COPIED else imported.onnx_path
    if not needed.is_file():
        raise ServiceError(f"{named} has lost its file ({needed.name}); import it again.", field=field)
    channels = partition.dataset.channels
    if imported.mode == ImportedModel.Mode.CONVERTED and channels and imported.channels != channels:
        raise ServiceError(f"{named} takes {imported.channels}-channel images and this dataset's have {channels}; a converted "
                           "model keeps its own first layer, so use a dataset with as many channels.", field=field)
    if imported.mode == ImportedModel.Mode.CONVERTED:
        check_converted_size(named, imported.input_size, model["input_size"], partition.dataset)
    return imported


def check_converted_size(named: str, side: int, input_size: int, dataset) -> None:
    """A converted network takes the image size it was exported at (its layers may hold that size: a flatten before a
    dense layer), so the images reach it at that size: the dataset's own, or resized inside the network."""
    if not side:
        return  # exported with free sides
    if input_size and input_size != side:
        raise ServiceError(f"{named} was exported for {side}×{side} images: set the input size to {side} (images are "
                           "resized inside the network).", field="model.input_size")
    if not input_size and dataset.height and dataset.width and (dataset.height, dataset.width) != (side, side):
        raise ServiceError(f"{named} was exported for {side}×{side} images and this dataset's are {dataset.width}×"
                           f"{dataset.height}: set the input size to {side} (images are resized inside the network).",
                           field="model.input_size")


def imported_provenance(imported_id) -> dict:
    """What a run that starts from an imported model records of it (its provenance): the file by name and hash."""
    imported = ImportedModel.objects.filter(pk=imported_id).first()
    if imported is None:
        return {"id": imported_id}
    return {"id": imported.pk, "name": imported.name, "kind": imported.kind, "file_name": imported.file_name,
            "sha256": imported.sha256, "mode": imported.mode, "architecture": imported.architecture}


def imported_model_start(imported):
    """The engine's ModelStart for a run from an imported model (the model, or its id): the copied weights
    (a ZooModel state dict as safetensors), or the ONNX file that onnx2torch rebuilds the network from."""
    from workers.engine.zoo.start import ModelStart  # torch: the worker's, never the web tier's
    from workers.engine.zoo.weights import WeightsUnavailable

    if not isinstance(imported, ImportedModel):
        found = ImportedModel.objects.filter(pk=imported).first()
        if found is None:
            raise WeightsUnavailable(f"The imported model {imported}, which this run starts from, was deleted after the run was "
                                     "launched; launch it again from another model.")
        imported = found
    folder = str(settings.PRETRAINED_WEIGHTS_DIR)
    if imported.mode == ImportedModel.Mode.WEIGHTS_COPIED:
        if not imported.weights_path.is_file():
            raise WeightsUnavailable(f"The weights of the imported model '{imported.name}' are missing ({imported.weights_path}); "
                                     "import it again.")
        # Its class names, when the file named them, decide whether its head fits this run (as an earlier run's do).
        return ModelStart(folder, str(imported.weights_path), classes=tuple(imported.classes) or None)
    if imported.mode == ImportedModel.Mode.CONVERTED:
        if not imported.onnx_path.is_file():
            raise WeightsUnavailable(f"The file of the imported model '{imported.name}' is missing ({imported.onnx_path}); "
                                     "import it again.")
        return ModelStart(folder, onnx_path=str(imported.onnx_path), mean=tuple(imported.mean) if imported.mean else None,
                          std=tuple(imported.std) if imported.std else None)
    raise WeightsUnavailable(f"The imported model '{imported.name}' cannot be fine-tuned: {imported.reason or imported.message}")

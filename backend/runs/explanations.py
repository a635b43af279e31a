"""Explaining one image with a model (issue 22, R1): a dataset's sample or an uploaded file, by a run's kept model or
an imported model. What must fit before a worker is asked (the sample can be read as the run's data was; the uploaded
file is read and checked in a child process: its kind, channels, modality and size against the model), one
explanation per model and image reused, and the heat map (and an upload's own picture) drawn plane by plane for the
viewer. The probabilities and the map itself come from the worker (workers/explanation.py): torch never runs in the
web process."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db import transaction
from django.db.models import Q

from backend.audit.services import Action, record
from backend.core.engine import ask_engine
from backend.core.errors import ServiceError
from backend.core.tasks import TRAIN_QUEUES, send_after_commit
from backend.datasets.models import Dataset, Sample
from backend.datasets.services import datasets_for
from backend.datasets.viewer import pixel_aspect, render
from backend.projects.access import require_owner
from backend.zoo.models import ImportedModel
from backend.zoo.services import imported_models_for, staged
from workers.engine.display import AXES, heat_colours, plane, png_bytes
from workers.engine.planning import DICOM_MODALITIES

from .external import dims_words, intensity_words
from .models import Explanation, TrainingRun
from .services import runs_for

EXPLANATION_TASK = "workers.tasks.explain_sample"
REUSED = (Explanation.Status.QUEUED, Explanation.Status.RUNNING, Explanation.Status.DONE)


UPLOAD_MAX_BYTES = 512 * 1024**2
READ_TIMEOUT = 120.0  # seconds: reading and checking one file (a large .nii.gz decompressed)


def explanations_for(user):
    """Explanations by the runs and the imported models the user may read."""
    return Explanation.objects.filter(Q(run__in=runs_for(user)) | Q(imported_model__in=imported_models_for(user)))


def readable_sample(user, pk: int) -> Sample:
    sample = Sample.objects.filter(pk=pk, dataset__in=datasets_for(user)).select_related("dataset").first()
    if sample is None:
        raise ServiceError(f"There is no sample {pk} that you can read.", field="sample", code="not_found", status_code=404)
    return sample


def start_explanation(user, run: TrainingRun, sample: Sample) -> Explanation:
    """The sample's class probabilities and heat map by the run's kept model, computed by a worker of the run's queue
    (the project's owners, as for evaluations). A queued, running or finished explanation of the same sample by the
    same run is returned as it is: a table's rows can ask for theirs as often as they are opened."""
    require_owner(user, run.project)
    if run.status != TrainingRun.Status.SUCCEEDED or not run.weights_path.is_file():
        raise ServiceError(f"Run {run.pk} has no kept model to explain with (it is {run.status}); choose a run that succeeded.",
                           field="run")
    check_sample_fits(run, sample)
    earlier = Explanation.objects.filter(run=run, sample=sample, status__in=REUSED).order_by("-created_at").first()
    if earlier is not None:
        return earlier
    with transaction.atomic():
        explanation = Explanation.objects.create(run=run, sample=sample, queue=run.queue, created_by=user)
        send_after_commit(EXPLANATION_TASK, explanation.pk, explanation.queue)
        record(user, run.project, Action.CREATE, explanation)
    return explanation


def check_sample_fits(run: TrainingRun, sample: Sample) -> None:
    """The sample can go through the model as the run's own samples did: a sample of the run's dataset always can; one
    of another dataset must be of the same kind (2D image or volume), channels and intensities (8-bit, or real through
    the run's plan)."""
    if sample.dataset_id != run.partition.dataset_id:
        check_other_dataset(run, sample)
    if not run.spec["data"].get("plan") and sample.cache_index is None:
        raise ServiceError(f"Sample {sample.pk} is not in its dataset's training cache (the 8-bit images run {run.pk}'s model "
                           "reads); wait for the dataset's ingest to finish, or ingest it again.", field="sample")


def check_other_dataset(run: TrainingRun, sample: Sample) -> None:
    trained_on, dataset = run.partition.dataset, sample.dataset
    dims = 3 if sample.kind == Sample.Kind.VOLUME else 2
    if dataset.status != Dataset.Status.READY:
        raise ServiceError(f"Sample {sample.pk}'s dataset {dataset.name} is not ready ({dataset.status}); wait for its ingest "
                           "to finish.", field="sample")
    if {dims} != trained_on.dimensions:
        raise ServiceError(f"Sample {sample.pk} is a {'volume' if dims == 3 else '2D image'} and run {run.pk}'s model takes "
                           f"{dims_words(trained_on.dimensions)}; choose a sample of the same kind.", field="sample")
    if sample.channels != trained_on.channels:
        raise ServiceError(f"Sample {sample.pk} has {sample.channels} channel(s) and run {run.pk}'s model takes "
                           f"{trained_on.channels}; convert its dataset with a preprocessing pipeline, or choose another "
                           "sample.", field="sample")
    planned = bool(run.spec["data"].get("plan"))
    if planned != dataset.planned:
        raise ServiceError(intensity_words(run, dataset, planned), field="sample")


def heat_map_png(explanation: Explanation, axis: str = "axial", index: int | None = None) -> tuple[bytes, int, int]:
    """One plane of the heat map in colour (transparent where it is cold), drawn on the grid and with the pixel aspect
    of the sample viewer's plane, so the two pictures lie one over the other; (png, index used, planes along the axis)."""
    if explanation.status != Explanation.Status.DONE:
        raise ServiceError(f"Explanation {explanation.pk} is {explanation.status}: its heat map comes once it is done.",
                           code="not_ready", status_code=409)
    if not explanation.results.get("heat_map_shape") or not explanation.heat_map_path.is_file():
        why = explanation.results.get("note") or "its file is missing."
        raise ServiceError(f"Explanation {explanation.pk} has no heat map: {why}", code="file_missing", status_code=404)
    if axis not in AXES:
        raise ServiceError(f"axis must be one of {', '.join(AXES)}.", field="axis")
    sample = image_of(explanation)
    if sample.kind == Sample.Kind.IMAGE and axis != "axial":
        raise ServiceError("A 2D image has only the axial plane.", field="axis")
    heat_map = np.load(explanation.heat_map_path, mmap_mode="r", allow_pickle=False)
    values, used, count = plane(heat_map, axis, index)
    return png_bytes(heat_colours(np.asarray(values, dtype=np.float32)), aspect=pixel_aspect(sample, axis)), used, count


# ----------------------------------------------------------------------------------------------- uploaded files


@dataclass
class UploadedImage:
    """An uploaded file's pixels as the viewer and the worker read a sample's (backend/datasets/viewer.py): the same
    attributes, so one code draws and explains both. `array` is relative to `project_dir`, as a sample's is."""
    kind: str
    array: str
    spacing: list
    meta: dict
    channels: int
    modality: str
    depth: int
    height: int
    width: int
    project_dir: Path
    mask: str = ""
    original: str = ""


def image_of(explanation: Explanation):
    """The explained image: the dataset's sample, or the upload as a sample-like UploadedImage."""
    if explanation.sample_id:
        return explanation.sample
    facts = explanation.upload
    return UploadedImage(kind=facts["kind"], array=facts["array"], spacing=facts.get("spacing") or [], meta=facts.get("meta") or {},
                         channels=facts["channels"], modality=facts.get("modality", ""), depth=facts.get("depth", 1),
                         height=facts["height"], width=facts["width"], project_dir=explanation.project.storage_dir,
                         original=facts.get("original", ""))


def upload_png(explanation: Explanation, axis: str = "axial", index: int | None = None, center: float | None = None,
               width: float | None = None) -> tuple[bytes, int, int]:
    """One plane of an uploaded image, drawn as the sample viewer draws a sample's (its window, or the one given)."""
    if not explanation.upload:
        raise ServiceError(f"Explanation {explanation.pk} is of sample {explanation.sample_id}: GET /api/samples/"
                           f"{explanation.sample_id}/slice/ draws it.", code="not_an_upload", status_code=404)
    return render(image_of(explanation), axis, index, center, width)


def readable_imported(user, pk: int) -> ImportedModel:
    imported = imported_models_for(user).filter(pk=pk).select_related("project").first()
    if imported is None:
        raise ServiceError(f"There is no imported model {pk} that you can read.", field="imported_model", code="not_found",
                           status_code=404)
    return imported


def require_kept_model(run: TrainingRun) -> None:
    if run.status != TrainingRun.Status.SUCCEEDED or not run.weights_path.is_file():
        raise ServiceError(f"Run {run.pk} has no kept model to explain with (it is {run.status}); choose a run that succeeded.",
                           field="run")


def require_usable(imported: ImportedModel) -> None:
    if not imported.usable:
        state = ("is still being imported" if not imported.is_finished
                 else f"could not be imported ({imported.reason or imported.message})")
        raise ServiceError(f"The imported model '{imported.name}' {state}; it cannot explain an image.", field="imported_model",
                           code="not_ready", status_code=409 if not imported.is_finished else 400)


def pipeline_chain(dataset: Dataset) -> tuple[Dataset, list]:
    """(the ingested dataset the run's samples came from, the pipeline versions that made the run's dataset of it, in
    order): an uploaded file goes through the same steps. A merge keeps its sources' samples as they were, so a merge of
    datasets made by one chain is that chain; sources made by different chains have no one way in (refused)."""
    if dataset.pipeline_version_id and dataset.derived_from_id:
        root, versions = pipeline_chain(dataset.derived_from)
        return root, [*versions, dataset.pipeline_version]
    sources = list(dataset.merged_from.all())
    if not sources:
        return dataset, []
    chains = [pipeline_chain(source) for source in sources]
    if len({tuple(v.pk for v in versions) for _, versions in chains}) > 1:
        raise ServiceError(f"Dataset {dataset.name} merges datasets made by different preprocessing pipelines: an uploaded file "
                           "has no one way into this model. Explain a sample of the dataset instead.", field="file")
    return chains[0]


def learnt_modalities(*datasets: Dataset) -> list[str]:
    """The DICOM modalities the datasets' samples are (their formats, PNG or NIfTI, are not modalities)."""
    named = {m.strip() for d in datasets for m in (d.modalities or "").split(",")}
    return sorted(named & DICOM_MODALITIES)


def run_expectation(run: TrainingRun) -> dict:
    """What run's kept model takes, for read_upload's checks (workers/engine/uploaded.py check_fits)."""
    dataset = run.partition.dataset
    root, versions = pipeline_chain(dataset)
    plan = run.spec["data"].get("plan")
    shape = run.results.get("input_shape")
    channels = root.channels if versions else (int(shape[0]) if shape else dataset.channels)
    return {"who": f"run {run.pk}'s model", "dims": [plan.get("dims", 3)] if plan else [2], "channels": channels,
            "grey_to_colour": not plan, "modalities": learnt_modalities(root, dataset),
            "plan": {k: plan[k] for k in ("target_spacing", "dims", "normalisation", "patch_size") if k in plan} if plan else None,
            "size": None if plan or versions else [dataset.height, dataset.width]}


def imported_expectation(imported: ImportedModel) -> dict:
    """What an imported model takes: one 2D picture of its channels (grayscale repeated for a colour model, as
    prediction does), resized to its input's sides."""
    shape = (imported.inputs[0].get("shape") if imported.inputs else None) or []
    sides = [side if isinstance(side, int) else 0 for side in shape[2:4]]
    return {"who": f"the imported model '{imported.name}'", "dims": [2], "channels": imported.channels, "grey_to_colour": True,
            "modalities": [], "plan": None, "size": sides if len(sides) == 2 and all(sides) else None}


def read_upload(project, expect: dict, upload, path: Path, folder: Path | None) -> dict:
    """The engine's facts of a staged upload (checked against `expect`), or its refusal as a 400 with the field `file`."""
    return ask_engine("read_upload", timeout=READ_TIMEOUT, field="file", path=str(path), file_name=upload.name or "upload",
                      expect=expect, folder=str(folder) if folder else None,
                      deid_secret=project.deid_secret if project.deidentify else None,
                      crash_message="The file could not be read: the image reader stopped on it (a damaged file?). Export "
                                    "it again, as PNG, DICOM or NIfTI.")


def model_of(user, run: TrainingRun | None, imported: ImportedModel | None):
    """(project, expectation) of the model an upload is for, once the user may start an explanation with it."""
    if (run is None) == (imported is None):
        raise ServiceError("Give the run whose kept model explains the file, or the imported model (one of the two).",
                           field="run" if run is None else "imported_model")
    if run is not None:
        require_owner(user, run.project)
        require_kept_model(run)
        return run.project, run_expectation(run)
    require_owner(user, imported.project)
    require_usable(imported)
    return imported.project, imported_expectation(imported)


def require_file(upload) -> None:
    if upload is None:
        raise ServiceError("Choose one image file: PNG, JPEG, DICOM or NIfTI (.nii, .nii.gz).", field="file")
    if (upload.size or 0) > UPLOAD_MAX_BYTES:
        raise ServiceError(f"The file is {upload.size / 1024**2:,.0f} MB; a file to explain is at most "
                           f"{UPLOAD_MAX_BYTES // 1024**2} MB. Crop or downscale it.", field="file", code="too_large")


def check_upload(user, upload, run: TrainingRun | None = None, imported: ImportedModel | None = None) -> dict:
    """What an uploaded file is and how it would reach the model, or why it cannot (a 400 with the field `file`);
    nothing is kept. The page asks this as soon as a file is chosen."""
    project, expect = model_of(user, run, imported)
    require_file(upload)
    with staged(project, upload) as (path, _):
        facts = read_upload(project, expect, upload, path, None)
    return {key: facts[key] for key in ("name", "format", "modality", "kind", "shape", "channels", "spacing", "fits", "notes")}


def start_upload_explanation(user, upload, run: TrainingRun | None = None, imported: ImportedModel | None = None) -> Explanation:
    """An uploaded file explained by a run's kept model or an imported model (the project's owners): checked, its pixels
    kept beside the model's files, and a worker asked. The same file (by its SHA-256) explained by the same model,
    queued, running or done, is answered as it is."""
    project, expect = model_of(user, run, imported)
    require_file(upload)
    with staged(project, upload) as (path, sha256):
        earlier = Explanation.objects.filter(run=run, imported_model=imported, upload__sha256=sha256,
                                             status__in=REUSED).order_by("-created_at").first()
        if earlier is not None:
            return earlier
        folder = path.parent / "pixels"
        facts = read_upload(project, expect, upload, path, folder)
        moved = None
        try:
            with transaction.atomic():
                explanation = Explanation.objects.create(run=run, imported_model=imported, upload=facts, created_by=user,
                                                         queue=run.queue if run is not None else TRAIN_QUEUES["cpu"])
                moved = explanation.upload_dir
                moved.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(folder, moved)
                relative = moved.relative_to(project.storage_dir)
                explanation.upload = {**facts, "array": str(relative / facts["array"]),
                                      "original": str(relative / facts["original"]) if facts["original"] else ""}
                explanation.save(update_fields=["upload"])
                send_after_commit(EXPLANATION_TASK, explanation.pk, explanation.queue)
                record(user, project, Action.CREATE, explanation)
        except BaseException:
            if moved is not None:  # the row is gone with the transaction: so are its pixels
                shutil.rmtree(moved, ignore_errors=True)
            raise
    return explanation

"""Explaining one sample with a run's kept model (issue 22, R1): what must fit before a worker is asked (the sample can
be read as the run's data was), one explanation per run and sample reused, and the heat map drawn plane by plane for
the sample viewer. The probabilities and the map itself come from the worker (workers/explanation.py): torch never
runs in the web process."""
from __future__ import annotations

import numpy as np
from django.db import transaction

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.core.tasks import send_after_commit
from backend.datasets.models import Dataset, Sample
from backend.datasets.services import datasets_for
from backend.datasets.viewer import pixel_aspect
from backend.projects.access import require_owner
from workers.engine.display import AXES, heat_colours, plane, png_bytes

from .external import dims_words, intensity_words
from .models import Explanation, TrainingRun
from .services import runs_for

EXPLANATION_TASK = "workers.tasks.explain_sample"
REUSED = (Explanation.Status.QUEUED, Explanation.Status.RUNNING, Explanation.Status.DONE)


def explanations_for(user):
    """Explanations by the runs the user may read."""
    return Explanation.objects.filter(run__in=runs_for(user))


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
    sample = explanation.sample
    if sample.kind == Sample.Kind.IMAGE and axis != "axial":
        raise ServiceError("A 2D image has only the axial plane.", field="axis")
    heat_map = np.load(explanation.heat_map_path, mmap_mode="r", allow_pickle=False)
    values, used, count = plane(heat_map, axis, index)
    return png_bytes(heat_colours(np.asarray(values, dtype=np.float32)), aspect=pixel_aspect(sample, axis)), used, count

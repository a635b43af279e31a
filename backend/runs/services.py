"""Training runs: launching, stopping, and the rules that decide whether a run can start."""
from __future__ import annotations

import math
import platform
import subprocess
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from backend.audit.services import Action, record
from backend.core import notify
from backend.core.deletion import DeletionPlan, Thing, carry_out
from backend.core.errors import ServiceError
from backend.core.jobs import require_stoppable, stop
from backend.core.models import WorkerHeartbeat
from backend.core.tasks import TRAIN_QUEUES, queue_name, send_after_commit
from backend.datasets.models import Dataset, Partition, PartitionMember
from backend.datasets.planning import plan_of
from backend.pipelines.models import Pipeline
from backend.pipelines.services import mark_used
from backend.projects.access import projects_for, require_owner
from backend.zoo.services import check_imported_start
from workers.engine.planning import FEWEST_SIDE, resampled_shape
from workers.engine.tasks import TASKS
from workers.engine.training.spec import SpecInvalid, TrainingSpec, fitted_to_subset, resolve_spec
from workers.engine.zoo.registry import MODELS, ModelEntry, model_entry
from workers.engine.zoo.weights import WeightsUnavailable, find_weights

from .external import check_fits, checked_mapping
from .lineage import lineage_provenance
from .models import Evaluation, Explanation, RateSearch, TrainingRun

# A run's kept model can start another run once it has one: finished, or stopped after an epoch (its weights file says).
STARTABLE = (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.STOPPED)
STARTING_POINTS_LISTED = 200  # the newest; a form's select of more would not be read

# A search answers a question about the form being filled now; by the next day the run has been launched or the
# form left, and its settings or data may have changed. No page lists old searches, so none is deleted by hand.
SEARCHES_KEPT_FOR = timedelta(days=1)


def pipelines_for_project(project):
    return Pipeline.objects.filter(project=project)


def runs_for(user):
    """Runs in the user's projects, and runs their owners made public (explicitly, one by one)."""
    if not user.is_authenticated:
        return TrainingRun.objects.none()
    return TrainingRun.objects.filter(Q(project__in=projects_for(user)) | Q(public=True))


def set_public(actor, run: TrainingRun, public: bool) -> TrainingRun:
    require_owner(actor, run.project)
    TrainingRun.objects.filter(pk=run.pk).update(public=public)
    record(actor, run.project, Action.SHARE, run, name=f"{run.name}: {'public' if public else 'private'}")
    run.refresh_from_db()
    return run


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(settings.BASE_DIR),
            capture_output=True, text=True, timeout=5,
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def with_task(spec_data: dict, dataset: Dataset) -> dict:
    """A dataset of masks is segmented unless the settings name another task; any other dataset is classified."""
    if not isinstance(spec_data, dict) or "task" in spec_data:
        return spec_data
    return {**spec_data, "task": dataset.task}


def task_named(spec_data) -> str:
    task = spec_data.get("task") if isinstance(spec_data, dict) else None
    return task if isinstance(task, str) else Dataset.Task.CLASSIFICATION


def check_trainable(partition: Partition, task: str = Dataset.Task.CLASSIFICATION) -> None:
    dataset = partition.dataset
    check_one_kind_of_sample(dataset)
    if task == Dataset.Task.SEGMENTATION:
        check_segmentable(partition)
        return
    labels = dataset.labels
    if dataset.task == Dataset.Task.SEGMENTATION and len(labels) < 2:
        raise ServiceError(
            f"The dataset '{dataset.name}' holds masks and no classes to classify by: choose the task Segmentation (it "
            "learns the masks), or upload the images in one folder per class to classify them.", field="task")
    if len(labels) < 2:
        only = f" ('{labels[0]}')" if labels else ""
        raise ServiceError(
            f"The dataset '{dataset.name}' has only one class{only}; a classifier needs at least two. "
            "Upload a dataset with images of at least two classes.",
            field="partition",
        )
    train = partition.counts.get("train", {})
    if sum(train.values()) == 0:
        raise ServiceError("The partition's training subset is empty; create a partition with a larger training share.", field="partition")


def check_segmentable(partition: Partition) -> None:
    """A segmentation learns from masks: the training subset must hold some, and the masks a label besides the
    background."""
    dataset = partition.dataset
    if not dataset.masked_count:
        raise ServiceError(f"The dataset '{dataset.name}' holds no masks, so there is nothing to segment: choose the task "
                           "Classification, or upload each image with its mask (an images/ and a masks/ folder, or "
                           "name_mask files beside the images).", field="task")
    if len(dataset.segmentation_labels) < 2:
        raise ServiceError(f"The masks of '{dataset.name}' hold only the background (0): there is no structure to "
                           "outline. Upload masks that mark it with a value other than 0.", field="task")
    unnamed = dataset.unnamed_label_values
    if dataset.label_names and unnamed:
        values = ", ".join(map(str, unnamed))
        raise ServiceError(f"The masks of '{dataset.name}' hold label value{'s' if len(unnamed) > 1 else ''} {values}, which its "
                           f"label names do not declare (they name {', '.join(sorted(dataset.label_names, key=int))}): name "
                           "them in the dataset's Labels card, or correct the masks, before training on them.", field="partition")
    masked = PartitionMember.objects.filter(partition=partition, subset="train").exclude(sample__mask="").count()
    if not masked:
        raise ServiceError("No sample of the partition's training subset has a mask; make a partition whose training "
                           "subset holds masked samples.", field="partition")


def check_one_kind_of_sample(dataset: Dataset) -> None:
    """A model takes 2D images or volumes, of one channel count."""
    if dataset.dimensions == {2, 3}:
        kinds = dict(dataset.samples.values_list("kind").annotate(n=Count("id")).order_by())
        raise ServiceError(f"The dataset '{dataset.name}' mixes {kinds.get('image', 0):,} 2D images and {kinds.get('volume', 0):,} "
                           "volumes; a model learns from one or the other. Make a dataset of one kind (upload them apart).",
                           field="partition")
    channels = sorted(set(dataset.samples.values_list("channels", flat=True).distinct()))
    if dataset.planned and len(channels) > 1:
        things = "volumes" if 3 in dataset.dimensions else "images"
        raise ServiceError(f"The {things} of '{dataset.name}' have different channel counts ({', '.join(map(str, channels))}); "
                           f"a model takes one. Make a dataset of {things} with the same channels.", field="partition")


def spec_errors(invalid: SpecInvalid) -> ServiceError:
    errors = [{"code": "invalid", "message": message, "field": field} for field, message in invalid.errors.items()]
    return ServiceError(errors[0]["message"], field=errors[0]["field"], errors=errors)


def resolved(spec_data: dict) -> TrainingSpec:
    try:
        return resolve_spec(spec_data)
    except SpecInvalid as invalid:
        raise spec_errors(invalid) from None


def queue_for(resources: dict) -> str:
    """The logical queue of a run: by device, and by pool when one is named (train-gpu-a100)."""
    base = TRAIN_QUEUES[resources["device"]]
    return f"{base}-{resources['pool']}" if resources.get("pool") else base


def check_resources(resources: dict) -> None:
    queue = queue_for(resources)
    if resources["device"] == "gpu" and not WorkerHeartbeat.queue_is_served(queue):
        where = f"in the pool '{resources['pool']}'" if resources.get("pool") else "online"
        raise ServiceError(f"No GPU worker is {where}. Choose CPU, or ask your administrator to start a GPU worker.",
                           field="resources.device")
    check_processes(resources["device"], resources["processes"], queue)


def check_processes(device: str, processes: int, queue: str) -> None:
    """A run's processes share one worker: at most one per GPU, or one per CPU core of the largest worker online."""
    if processes == 1:
        return
    workers = [w for w in WorkerHeartbeat.online() if queue_name(queue) in w.queues]
    if not workers:
        return  # nothing to compare with: the run waits for a worker, which says so if it cannot run it
    most = max(w.gpu_count if device == "gpu" else w.cpu_count for w in workers)
    if processes > most:
        unit = "GPU(s)" if device == "gpu" else "CPU core(s)"
        raise ServiceError(f"The largest {device.upper()} worker online has {most} {unit}; choose at most {most} processes.",
                           field="resources.processes")


def training_images_per_process(spec: TrainingSpec, partition: Partition) -> int:
    return math.ceil(sum(partition.counts.get("train", {}).values()) / spec["resources"]["processes"])


def check_fits_partition(spec: TrainingSpec, partition: Partition) -> None:
    """Settings that depend on the partition's sizes."""
    counts = partition.counts
    per_process = training_images_per_process(spec, partition)
    if spec["batch_size"] > per_process:
        each = " in each process" if spec["resources"]["processes"] > 1 else ""
        raise ServiceError(f"The batch size ({spec['batch_size']}) is larger than the training subset ({per_process} images{each}); "
                           f"choose at most {per_process}.", field="batch_size")
    subset, name, _ = spec.monitored
    if subset == "validation" and not sum(counts.get("validation", {}).values()):
        raise ServiceError(f"The partition has no validation images to measure the {name} on; monitor train.loss, or make a "
                           "partition with a validation share.", field="monitor")


def augmentation_version(pipeline_id, project):
    """The latest version of an augmentation pipeline of the run's project, or None."""
    if pipeline_id is None:
        return None
    pipeline = pipelines_for_project(project).filter(pk=pipeline_id).first() if isinstance(pipeline_id, int) else None
    if pipeline is None:
        raise ServiceError(f"This project has no pipeline with id {pipeline_id}.", field="data.augmentation")
    if pipeline.kind != pipeline.Kind.AUGMENTATION:
        raise ServiceError("A preprocessing pipeline runs once over a dataset (run it from its page); choose an augmentation pipeline.",
                           field="data.augmentation")
    return pipeline.latest


def check_class_factors(factors: dict, partition: Partition) -> None:
    unknown = sorted(set(factors) - set(partition.dataset.labels))
    if unknown:
        raise ServiceError(f"The dataset has no class {', '.join(repr(u) for u in unknown)}; its classes are "
                           f"{', '.join(sorted(partition.dataset.labels))}.", field="data.class_factors")


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "monai", "numpy", "onnx", "onnxruntime", "scikit-learn", "pydicom"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def provenance_of(partition: Partition, augmentation) -> dict:
    """What besides the spec made the result: the code, the packages and the versions of the data."""
    dataset = partition.dataset
    return {
        "code_version": code_version(),
        "packages": package_versions(),
        "dataset": {"id": dataset.pk, "name": dataset.name, "classes": dataset.labels, "samples": dataset.sample_count,
                    "created_at": dataset.created_at.isoformat(), "derived_from": dataset.derived_from_id,
                    "preprocessing": {"pipeline": dataset.pipeline_version.pipeline_id, "version": dataset.pipeline_version.number}
                    if dataset.pipeline_version_id else None},
        "partition": {"id": partition.pk, "name": partition.name, "method": partition.method, "seed": partition.seed,
                      "train_percent": partition.train_percent, "validation_percent": partition.validation_percent,
                      "test_percent": partition.test_percent, "counts": partition.counts},
        "augmentation": {"pipeline": augmentation.pipeline_id, "name": augmentation.pipeline.name, "version": augmentation.number}
        if augmentation else None,
    }


def check_model(spec: TrainingSpec, partition: Partition, user) -> None:
    """What the model starts from must be there, and the network must take the dataset's images."""
    model = spec["model"]
    if model["weights"] == "imported":
        check_imported_start(user, spec, partition)  # an imported model (backend/zoo): readable, trainable, its architecture
    if model["architecture"] not in MODELS:
        if 3 in partition.dataset.dimensions:
            raise ServiceError("An imported model takes 2D images and this dataset holds volumes (3D): choose a 3D network.",
                               field="model.architecture")
        return  # a network converted from ONNX: its import checked the channels and sizes it takes
    entry = model_entry(model["architecture"])
    check_dimensions(entry, partition.dataset)
    check_input_size(entry, model["input_size"], partition.dataset, spec["data"].get("plan"))
    if entry.weights_named(model["weights"]):  # published weights (ImageNet's, MedicalNet's): their file must be here
        check_pretrained_file(entry, model["weights"])
    elif model["weights"] == "run":
        start_run_for(user, model["start_run"], entry, spec["data"].get("plan"))


def check_dimensions(entry: ModelEntry, dataset: Dataset) -> None:
    dims = max(dataset.dimensions, default=2)
    if entry.dims == dims:
        return
    fitting = [e.title for e in MODELS.values() if e.dims == dims and e.task == entry.task]
    held = "volumes (3D)" if dims == 3 else "2D images"
    raise ServiceError(f"{entry.title} is a {entry.dims}D network and this dataset holds {held}: choose a {dims}D network "
                       f"({', '.join(fitting)}).", field="model.architecture")


def check_input_size(entry: ModelEntry, input_size: int, dataset, plan: dict | None = None) -> None:
    """The dataset's images must fit the network, unless the network resizes them (model.input_size, which the spec
    checked against the network already): for 2D images with a plan, its patch. A dataset whose size is not recorded
    is left to the worker."""
    height, width = plan["patch_size"] if plan and len(plan.get("patch_size", [])) == 2 else (dataset.height, dataset.width)
    if input_size or not (height and width):
        return
    problem = entry.size_problem(height, width)
    if not problem:
        return
    if min(height, width) < entry.min_size:
        fitting = f"{entry.min_size} or more"
    else:
        fitting = f"{entry.max_size}" if entry.max_size == entry.min_size else f"{entry.max_size} or less"
    raise ServiceError(f"{problem}; this dataset's are {width}×{height}{' (the plan’s patch)' if plan and len(plan.get('patch_size', [])) == 2 else ''}. Set the input size to {fitting} (images are resized "
                       "inside the network) or add a Resize step to the dataset's preprocessing.", field="model.input_size")


def check_pretrained_file(entry: ModelEntry, weights: str) -> None:
    """The file is on this server (its hash is checked by the worker that reads it: hashing 500 MB is not a request's job)."""
    try:
        find_weights(entry.weights_named(weights), settings.PRETRAINED_WEIGHTS_DIR)
    except WeightsUnavailable as missing:
        raise ServiceError(str(missing), field="model.weights", code="weights_unavailable") from None


def start_run_for(user, run_id: int, entry: ModelEntry, plan: dict | None = None) -> TrainingRun:
    """The earlier run a run starts from: one the user may read, with a kept model, of the same architecture. Its
    classes and channels may differ (the head is replaced, the first layer adapted)."""
    earlier = runs_for(user).filter(pk=run_id).first()
    if earlier is None:
        raise ServiceError(f"There is no run {run_id} that you can read. Start from a run of a project you are a member of, "
                           "or a public one.", field="model.start_run")
    named = f"Run {earlier.pk} '{earlier.name}'"
    if earlier.status not in STARTABLE or not earlier.weights_path.is_file():
        state = "its model file is missing" if earlier.status in STARTABLE else f"it is {earlier.get_status_display().lower()}"
        raise ServiceError(f"{named} has no kept model to start from ({state}); choose a run that finished, or one stopped "
                           "after its first epoch.", field="model.start_run")
    if earlier.architecture != entry.name:
        its = architecture_title(earlier.architecture)
        raise ServiceError(f"{named} trained a {its}, not a {entry.title}: choose {its} as the model to start from it, or "
                           f"another run.", field="model.start_run")
    its_plan = earlier.spec["data"].get("plan") or {}
    if entry.planned and plan and [its_plan.get(k) for k in PLAN_SHAPES_NETWORK] != [plan.get(k) for k in PLAN_SHAPES_NETWORK]:
        raise ServiceError(f"{named} built its {entry.title} for a patch of {'×'.join(map(str, its_plan.get('patch_size', [])))} at "
                           f"{'×'.join(f'{v:g}' for v in its_plan.get('target_spacing', []))} mm, and this run's plan differs "
                           "(the network's depth and kernels follow the plan): set the plan's patch and spacing to that run's, "
                           "or start from random weights.", field="model.start_run")
    return earlier


PLAN_SHAPES_NETWORK = ("patch_size", "target_spacing")  # what a network built from the plan (DynUNet) is shaped by


def starting_points(user, architecture: str | None = None):
    """Runs whose kept model a new run can start from, newest first: readable, finished or stopped with a weights
    file, of `architecture` when given."""
    runs = runs_for(user).filter(status__in=STARTABLE).select_related("project", "partition__dataset")
    if architecture:
        runs = runs.filter(spec__model__architecture=architecture)
    return [run for run in runs.order_by("-created_at")[:STARTING_POINTS_LISTED] if run.weights_path.is_file()]


def with_plan(spec_data: dict, partition: Partition) -> dict:
    """A run on volumes (or 2D images with real intensities) starts from the dataset's plan (the values the user gave
    win) and, unless the user chose a batch size, the plan's, within the training subset; a run on 8-bit images is
    left as it is."""
    if not partition.dataset.planned or not isinstance(spec_data, dict):
        return spec_data
    data = spec_data.get("data") if isinstance(spec_data.get("data"), dict) else {}
    given = data.get("plan") if isinstance(data.get("plan"), dict) else {}
    planned = plan_of(partition.dataset)
    plan = {**planned, **given, "dims": planned.get("dims", 3)}  # the data's, whatever was sent
    spec_data = {**spec_data, "data": {**data, "plan": plan}}
    if "batch_size" not in spec_data and plan.get("batch_size"):
        spec_data["batch_size"] = max(1, min(plan["batch_size"], sum(partition.counts.get("train", {}).values())))
    return spec_data


def check_patch_fits(spec: TrainingSpec, dataset: Dataset) -> None:
    """Every volume (image), at the plan's spacing, must hold a whole patch."""
    plan = spec["data"].get("plan")
    fingerprint = dataset.fingerprint
    if not plan or not fingerprint:
        return
    shapes = [resampled_shape(shape, spacing, plan["target_spacing"])
              for shape, spacing in zip(fingerprint["shapes"], fingerprint["spacings"])]
    if len(plan["patch_size"]) == 2:
        check_image_patch(plan, shapes)
        return
    smallest = [min(shape[axis] for shape in shapes) for axis in range(3)]
    if all(p <= s for p, s in zip(plan["patch_size"], padded_sides(spec, smallest))):
        return
    smaller = sum(any(p > n for p, n in zip(plan["patch_size"], shape)) for shape in shapes)
    raise ServiceError(f"The patch ({'×'.join(map(str, plan['patch_size']))} voxels) is larger than {smaller} of the volumes at "
                       f"{'×'.join(f'{v:g}' for v in plan['target_spacing'])} mm (the smallest is "
                       f"{'×'.join(map(str, smallest))}); choose a patch of at most that size, or a finer spacing.",
                       field="data.plan.patch_size")


def padded_sides(spec: TrainingSpec, sides: list[int]) -> list[int]:
    """The sides a patch may reach over volumes of these sides (the volumes padded to it): their own, at least the
    smallest patch side (6 slices train in a patch of 8), and for a network that takes multiples of a number (a U-Net's
    8) and outputs a map, those rounded up to it (the spec rounds the plan's patch so: 10 slices in a patch of 16)."""
    sides = [max(side, FEWEST_SIDE) for side in sides]
    entry = MODELS.get(spec["model"]["architecture"])
    if entry is None or entry.divisor <= 1 or not TASKS[spec["task"]].spatial_output:
        return sides
    return [math.ceil(side / entry.divisor) * entry.divisor for side in sides]


def check_image_patch(plan: dict, shapes: list[list[int]]) -> None:
    """2D images smaller than the patch are padded (a classifier sees each whole), but a patch larger than every image
    at the plan's spacing would be mostly padding."""
    largest = [max(shape[axis] for shape in shapes) for axis in range(2)]
    if all(p <= n for p, n in zip(plan["patch_size"], largest)):
        return
    raise ServiceError(f"The patch ({'×'.join(map(str, plan['patch_size']))} pixels) is larger than every image at "
                       f"{'×'.join(f'{v:g}' for v in plan['target_spacing'])} mm (the largest is {'×'.join(map(str, largest))}); "
                       "choose a patch of at most that size, or a finer spacing.", field="data.plan.patch_size")


def prepared_spec(project, partition: Partition, spec_data: dict, user):
    """The resolved spec for this partition, with every check that needs the database, and the augmentation version."""
    if partition.dataset.project_id != project.pk:
        raise ServiceError("This partition belongs to another project.", field="partition")
    spec_data = with_task(spec_data, partition.dataset)
    check_trainable(partition, task_named(spec_data))
    spec_data = with_plan(spec_data, partition)
    try:
        spec = fitted_to_subset(spec_data, sum(partition.counts.get("train", {}).values()))
    except SpecInvalid as invalid:
        raise spec_errors(invalid) from None
    check_patch_fits(spec, partition.dataset)
    check_resources(spec["resources"])
    check_fits_partition(spec, partition)
    check_class_factors(spec["data"]["class_factors"], partition)
    check_model(spec, partition, user)
    augmentation = augmentation_version(spec["data"]["augmentation"], project)
    settings_ = spec.to_dict()
    settings_["data"]["augmentation"] = augmentation.pipeline_id if augmentation else None
    return resolve_spec(settings_), augmentation


def launch_run(project, partition: Partition, spec_data: dict, user, name: str = "") -> TrainingRun:
    require_owner(user, project)
    spec, augmentation = prepared_spec(project, partition, spec_data, user)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project, partition=partition, created_by=user, spec=spec.to_dict(), queue=queue_for(spec["resources"]),
            provenance={**provenance_of(partition, augmentation), **lineage_provenance(spec["model"])}, augmentation=augmentation,
            name=name or f"{architecture_title(spec['model']['architecture'])} on {partition.dataset.name}",
        )
        if augmentation:
            mark_used(augmentation)
        send_after_commit("workers.tasks.train_run", run.pk, run.queue)
        record(user, project, Action.CREATE, run)
    return run


def architecture_title(name: str) -> str:
    return MODELS[name].title if name in MODELS else name


def rate_curve(project, partition: Partition, spec_data: dict, user) -> dict:
    """The learning rate along the run these settings would make: the form draws it before launch."""
    spec, _ = prepared_spec(project, partition, spec_data, user)
    return spec.rate_curve(max(1, math.ceil(training_images_per_process(spec, partition) / spec["batch_size"])))


def queue_position(run: TrainingRun) -> int | None:
    """1 for the next run its queue's workers will take; None once it left the queue."""
    if run.status != TrainingRun.Status.QUEUED:
        return None
    ahead = TrainingRun.objects.filter(queue=run.queue, status=TrainingRun.Status.QUEUED, created_at__lt=run.created_at)
    return ahead.count() + 1


def job_queue_position(job) -> int | None:
    """1 for the next job its queue's workers will take, counting every kind that waits in a run's queue (runs,
    rate searches, evaluations, explanations); None once it left the queue."""
    if job.status != job.QUEUED:
        return None
    ahead = sum(model.objects.filter(queue=job.queue, status=model.QUEUED, created_at__lt=job.created_at).count()
                for model in (TrainingRun, RateSearch, Evaluation, Explanation))
    return ahead + 1


def resume_run(actor, run: TrainingRun) -> TrainingRun:
    """Queue a stopped or failed run again; the worker goes on from its last checkpoint."""
    require_owner(actor, run.project)
    if not run.is_finished or run.status == TrainingRun.Status.SUCCEEDED:
        state = "is still running" if not run.is_finished else "has finished all its epochs"
        raise ServiceError(f"Only a stopped or failed run can be resumed; this one {state}.", code="not_resumable")
    if not run.has_checkpoint:
        raise ServiceError("This run has no checkpoint to resume from (it ended before its first checkpoint); launch it again "
                           "instead (Clone).", code="no_checkpoint")
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.QUEUED, stop_requested=False, attempts=0, worker="", finished_at=None,
            message=f"Resuming from the checkpoint after epoch {run.epochs_completed}.")
        send_after_commit("workers.tasks.train_run", run.pk, run.queue)
        notify.publish(notify.channel_for(TrainingRun, run.pk))
        record(actor, run.project, Action.CHANGE, run, name=f"{run.name}: resumed")
    run.refresh_from_db()
    return run


def run_deletion(run: TrainingRun) -> DeletionPlan:
    """Deleting a run takes its metrics, log and files (checkpoints, model); a run still training is stopped first. A run
    whose model a queued or running run starts from keeps its weights until that one has read them."""
    plan = DeletionPlan(Thing.of("run", run), row=run, folders=[run.storage_dir])
    waiting = TrainingRun.objects.filter(spec__model__weights="run", spec__model__start_run=run.pk).exclude(
        status__in=TrainingRun.finished_statuses()).first()
    if waiting:
        plan.blocked_by.append(f"Run {waiting.pk} '{waiting.name}' starts from this run's model and has not finished; delete "
                               "this run once that one has (or stop that one first).")
    return plan


def request_stop(actor, run: TrainingRun) -> TrainingRun:
    """Queued runs stop at once; running ones after their current batch, keeping what was done."""
    require_owner(actor, run.project)
    require_stoppable(run, "run")
    stop(run)
    record(actor, run.project, Action.CHANGE, run, name=f"{run.name}: stop requested")
    run.refresh_from_db()
    return run


def delete_run(actor, run: TrainingRun, with_runs: bool = False) -> None:
    carry_out(actor, run.project, run_deletion(run), with_runs)


EVALUATION_TASK = "workers.tasks.evaluate_run"


def evaluations_for(user):
    """Evaluations of the runs the user may read."""
    return Evaluation.objects.filter(run__in=runs_for(user))


def check_evaluable(run: TrainingRun) -> None:
    """A run's kept model is there to measure: the run succeeded and its weights file is in place."""
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise ServiceError(f"Run {run.pk} has no kept model to evaluate (it is {run.get_status_display().lower()}); evaluate "
                           "a run that succeeded.", field="run")
    if not run.weights_path.is_file():
        raise ServiceError(f"Run {run.pk}'s kept model file is missing from the server's storage, so it cannot be evaluated; "
                           "train the run again, or restore its files.", field="run", code="missing_file")


def start_evaluation(run: TrainingRun, subset: str = "test", user=None, dataset: Dataset | None = None,
                     class_mapping: dict | None = None) -> Evaluation:
    """Measure a run's kept model on a subset of its partition, or on the whole of another dataset (external
    validation, its classes mapped onto the run's: backend/runs/external.py), in a worker of the run's queue: by the
    training job when a run succeeds, or by a project's owner."""
    if user is not None:
        require_owner(user, run.project)
    check_evaluable(run)
    if dataset is not None:
        check_fits(run, dataset)
        class_mapping, subset = checked_mapping(run, dataset, class_mapping), Evaluation.WHOLE_DATASET
    elif subset not in Evaluation.SUBSETS:
        raise ServiceError(f"The subset is one of {', '.join(Evaluation.SUBSETS)} (the run's partition's).", field="subset")
    elif not sum(run.partition.counts.get(subset, {}).values()):
        raise ServiceError(f"The {subset} subset of run {run.pk}'s partition is empty; choose another.", field="subset")
    with transaction.atomic():
        evaluation = Evaluation.objects.create(run=run, subset=subset, queue=run.queue, created_by=user, dataset=dataset,
                                               class_mapping=class_mapping or {})
        send_after_commit(EVALUATION_TASK, evaluation.pk, evaluation.queue)
        if user is not None:
            record(user, run.project, Action.CREATE, evaluation)
    return evaluation


def stop_evaluation(actor, evaluation: Evaluation) -> Evaluation:
    """A queued evaluation stops at once; a running one after its current batch, storing no prediction."""
    require_owner(actor, evaluation.run.project)
    require_stoppable(evaluation, "evaluation")
    stop(evaluation)
    record(actor, evaluation.run.project, Action.CHANGE, evaluation, name=f"evaluation {evaluation.pk}: stop requested")
    evaluation.refresh_from_db()
    return evaluation


def rate_searches_for(user):
    """Learning-rate searches in the user's projects."""
    if not user.is_authenticated:
        return RateSearch.objects.none()
    return RateSearch.objects.filter(partition__dataset__project__in=projects_for(user))


def start_rate_search(user, partition: Partition, spec_data: dict) -> RateSearch:
    """A learning-rate search for the settings a run would be launched with: checked as a run's are (the same
    refusals, per field), then swept by a worker of the queue the run would wait in."""
    project = partition.dataset.project
    require_owner(user, project)
    spec, augmentation = prepared_spec(project, partition, spec_data, user)
    with transaction.atomic():
        # Not marked used: a throwaway search should not freeze the pipeline (nor keep it from being deleted).
        search = RateSearch.objects.create(partition=partition, spec=spec.to_dict(), queue=queue_for(spec["resources"]),
                                           augmentation=augmentation, created_by=user)
        send_after_commit("workers.tasks.search_learning_rate", search.pk, search.queue)
        record(user, project, Action.CREATE, search)
        remove_old_searches(project)
    return search


def remove_old_searches(project) -> None:
    RateSearch.objects.filter(partition__dataset__project=project, status__in=RateSearch.finished_statuses(),
                              created_at__lt=timezone.now() - SEARCHES_KEPT_FOR).delete()


def stop_rate_search(actor, search: RateSearch) -> RateSearch:
    """A queued search stops at once; a running one after its current step, keeping the curve so far."""
    require_owner(actor, search.project)
    require_stoppable(search, "learning-rate search")
    stop(search)
    search.refresh_from_db()
    return search

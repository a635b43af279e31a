"""Training runs: launching, stopping, and the rules that decide whether a run can start."""
from __future__ import annotations

import subprocess
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.core.jobs import require_finished, require_stoppable, stop
from backend.core.models import WorkerHeartbeat
from backend.core.tasks import TRAIN_QUEUES, queue_name, send_after_commit
from backend.datasets.models import Partition
from backend.pipelines.services import mark_used
from backend.projects.access import projects_for, require_owner
from backend.projects.services import remove_tree_after_commit

from .models import TrainingRun

MAX_PROCESSES = 16


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


def check_trainable(partition: Partition) -> None:
    dataset = partition.dataset
    labels = dataset.labels
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


def check_device(device: str, processes: int = 1) -> None:
    if device == "gpu" and not WorkerHeartbeat.queue_is_served(TRAIN_QUEUES["gpu"]):
        raise ServiceError(
            "No GPU worker is online. Choose CPU, or ask your administrator to start a GPU worker.",
            field="device",
        )
    check_processes(device, processes)


def check_processes(device: str, processes: int) -> None:
    """A run's processes share one worker: at most one per GPU, or one per CPU core of the largest worker online."""
    if processes == 1:
        return
    queue = queue_name(TRAIN_QUEUES[device])
    workers = [w for w in WorkerHeartbeat.online() if queue in w.queues]
    if not workers:
        return  # nothing to compare with: the run waits for a worker, which says so if it cannot run it
    most = max(w.gpu_count if device == "gpu" else w.cpu_count for w in workers)
    if processes > most:
        unit = "GPU(s)" if device == "gpu" else "CPU core(s)"
        raise ServiceError(f"The largest {device.upper()} worker online has {most} {unit}; choose at most {most} processes.",
                           field="processes")


def augmentation_version(pipeline, project):
    """The latest version of an augmentation pipeline of the run's project, or None."""
    if pipeline is None:
        return None
    if pipeline.project_id != project.pk:
        raise ServiceError("This pipeline belongs to another project.", field="augmentation")
    if pipeline.kind != pipeline.Kind.AUGMENTATION:
        raise ServiceError("A preprocessing pipeline runs once over a dataset (run it from its page); choose an augmentation pipeline.",
                           field="augmentation")
    return pipeline.latest


def check_balancing(balancing: str, factors: dict, partition: Partition) -> None:
    labels = set(partition.dataset.labels)
    if balancing == "factors":
        if not factors:
            raise ServiceError("Give a factor for at least one class, e.g. {\"pneumonia\": 3}.", field="class_factors")
        unknown = sorted(set(factors) - labels)
        if unknown:
            raise ServiceError(f"The dataset has no class {', '.join(repr(u) for u in unknown)}; its classes are {', '.join(sorted(labels))}.",
                               field="class_factors")
    elif factors:
        raise ServiceError("Class factors apply only when balancing is 'factors'.", field="class_factors")


def launch_run(project, partition: Partition, settings_: dict, user) -> TrainingRun:
    require_owner(user, project)
    if partition.dataset.project_id != project.pk:
        raise ServiceError("This partition belongs to another project.", field="partition")
    check_trainable(partition)
    check_device(settings_["device"], settings_.get("processes", 1))
    settings_ = dict(settings_)
    augmentation = augmentation_version(settings_.pop("augmentation", None), project)
    check_balancing(settings_.get("balancing", "none"), settings_.get("class_factors") or {}, partition)
    config = {
        **settings_,
        "augmentation": {"pipeline": augmentation.pipeline_id, "name": augmentation.pipeline.name, "version": augmentation.number,
                         "steps": augmentation.steps} if augmentation else None,
        "dataset": {"id": partition.dataset_id, "name": partition.dataset.name, "classes": partition.dataset.labels},
        "partition": {
            "id": partition.pk, "seed": partition.seed, "train_percent": partition.train_percent,
            "validation_percent": partition.validation_percent, "test_percent": partition.test_percent,
        },
        "code_version": code_version(),
    }
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project, partition=partition, created_by=user, config=config,
            name=settings_.get("name") or f"{settings_['architecture']} on {partition.dataset.name}",
            augmentation=augmentation, balancing=settings_.get("balancing", "none"), class_factors=settings_.get("class_factors") or {},
            processes=settings_.get("processes", 1),
            **{key: settings_[key] for key in ("architecture", "epochs", "learning_rate", "batch_size", "device", "seed")},
        )
        if augmentation:
            mark_used(augmentation)
        send_after_commit("workers.tasks.train_run", run.pk, TRAIN_QUEUES[run.device])
        record(user, project, Action.CREATE, run)
    return run


def architectures() -> list:
    """The architectures a run can train (name, title, description), for the run form."""
    from workers.engine.architectures import ARCHITECTURES

    return list(ARCHITECTURES.values())


def request_stop(actor, run: TrainingRun) -> TrainingRun:
    """Queued runs stop at once; running ones after their current batch, keeping what was done."""
    require_owner(actor, run.project)
    require_stoppable(run, "run")
    stop(run)
    record(actor, run.project, Action.CHANGE, run, name=f"{run.name}: stop requested")
    run.refresh_from_db()
    return run


def delete_run(actor, run: TrainingRun) -> None:
    require_owner(actor, run.project)
    require_finished(run, "run")
    folder = run.storage_dir  # before delete(), which clears the primary key it is named by
    with transaction.atomic():
        record(actor, run.project, Action.DELETE, run)
        run.delete()
        remove_tree_after_commit(folder)

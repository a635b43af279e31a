"""The training job: read a run's partition, train its spec with the engine, store what it kept."""
from __future__ import annotations

import torch
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backend.datasets.models import PartitionMember
from backend.experiments.services import evaluate_for_groups
from backend.experiments.sweeps import member_ended, member_of, report_epoch
from backend.runs.models import MetricPoint, RateSearch, RunLogLine, TrainingRun
from backend.runs.services import start_evaluation
from workers.engine.data import CachedImages
from workers.engine.export import (
    IMAGE_TO_INPUT,
    PARITY_IMAGES,
    ExportTooLarge,
    ModelFacts,
    export_onnx,
    model_metadata,
    parity_check,
    probabilities_of,
    write_safetensors,
)
from workers.engine.pipelines import Pipeline
from workers.engine.splits import balanced_weights, oversampled
from workers.engine.store import StoredVolume, VolumeRecords, build_store, mask_path, store_folder, volume_input_rule
from workers.engine.tasks import TASKS, task_for
from workers.engine.training.evaluation import measured
from workers.engine.training.run import train
from workers.engine.training.spec import TrainingSpec, resolve_spec
from workers.engine.training.trainer import TrainingData, TrainingOutcome
from workers.engine.zoo.registry import MODELS
from workers.engine.zoo.weights import WeightsUnavailable

from .jobs import MAX_ATTEMPTS, JobReporter, JobRunner, register, restarted
from .starting_weights import model_start, start_note

Status = TrainingRun.Status


class RunReporter(JobReporter):
    """Also stores each metric point and log line as it comes, so the page shows them while the run goes
    on, and counts the epochs done, so a run whose worker dies can say where it got to. A sweep's member tells
    the sweep its objective each epoch, and stops when the sweep's pruner says so (`pruned` says why)."""

    def __init__(self, job, interval: float = 0.5):
        super().__init__(job, interval)
        self.sweep_member = member_of(job.pk)
        self.pruned = ""

    def metric(self, epoch: int, subset: str, name: str, value: float) -> None:
        MetricPoint.objects.update_or_create(run_id=self.pk, epoch=epoch, subset=subset, name=name, defaults={"value": float(value)})
        # An epoch's metrics come once its batches are done: from the first of them the epoch counts as trained.
        TrainingRun.objects.filter(pk=self.pk, epochs_completed__lt=epoch).update(epochs_completed=epoch)
        self.changed()
        member = self.sweep_member
        if member is not None and not self.pruned and f"{subset}.{name}" == member.group.search["objective"]:
            self.pruned = report_epoch(member, epoch, value)

    def should_stop(self) -> bool:
        return bool(self.pruned) or super().should_stop()

    def log(self, message: str) -> None:
        RunLogLine.objects.create(run_id=self.pk, text=message)
        self.changed()


class TrainingJob(JobRunner):
    model = TrainingRun
    task = "workers.tasks.train_run"
    noun = "training run"
    queue = "train-cpu"  # only a default: each is sent to its own queue (queue_of)

    def reporter(self, run: TrainingRun) -> RunReporter:
        return RunReporter(run)

    def run(self, pk: int, hostname: str) -> None:
        """Also, once the run ended however it did, the sweep it belongs to (if any) goes on to its next trial."""
        super().run(pk, hostname)
        if TrainingRun.objects.filter(pk=pk, status__in=TrainingRun.finished_statuses()).exists():
            member_ended(pk)

    def work(self, run: TrainingRun, reporter: RunReporter) -> None:
        run = TrainingRun.objects.select_related("partition__dataset__project", "augmentation").get(pk=run.pk)
        train_and_store(run, reporter)

    def failure_message(self, exc: Exception) -> str:
        if isinstance(exc, WeightsUnavailable):
            return str(exc)  # which file to put where: the whole message is for the user
        return f"Training failed ({type(exc).__name__}: {exc}). The metrics recorded so far are kept."

    def on_worker_lost(self, run: TrainingRun) -> str:
        """With a checkpoint the run goes on from it (up to MAX_ATTEMPTS workers lost); without, it ends, its metrics kept
        (and the sweep it belongs to, if any, goes on)."""
        outcome = self.recover(run)
        if TrainingRun.objects.filter(pk=run.pk, status=Status.FAILED).exists():
            member_ended(run.pk)
        return outcome

    def recover(self, run: TrainingRun) -> str:
        where = f"in epoch {run.epochs_completed + 1}"
        # its own worker restarted (a deploy, a crash of the process) or another worker found it silent: said as it was
        lost = "restarted" if restarted(run) else "stopped responding"
        if not run.has_checkpoint:
            self.finish(run, Status.FAILED, f"The worker running this {lost} {where}, before the run's first "
                                            "checkpoint; the metrics so far are kept. Launch it again (Clone).")
            return "failed (no checkpoint to resume from)"
        if run.attempts >= MAX_ATTEMPTS:
            self.finish(run, Status.FAILED, f"The worker running this stopped {run.attempts} times (last {where}); it is not "
                                            "tried again. The worker log says why (often memory); Resume goes on from the last "
                                            "checkpoint once that is fixed.")
            return f"failed after {run.attempts} attempts"
        message = (f"The worker running this {lost} {where}; it resumes from its last checkpoint "
                   f"(attempt {run.attempts + 1} of {MAX_ATTEMPTS}).")
        RunLogLine.objects.create(run_id=run.pk, text=message)
        self.requeue(run, message)
        return f"queued again to resume (attempt {run.attempts + 1} of {MAX_ATTEMPTS})"


TRAINING = register(TrainingJob())


def subset_images(run: TrainingRun | RateSearch, subset: str, classes: list[str]) -> CachedImages:
    """A subset's images; the training subset with the run's augmentation and balancing (a rate search's settings are a run's)."""
    members = PartitionMember.objects.filter(partition=run.partition, subset=subset).order_by("sample__cache_index")
    rows = list(members.values_list("sample__cache_index", "sample__label", "sample_id"))
    indices, labels, keys = [i for i, _, _ in rows], [label for _, label, _ in rows], [k for _, _, k in rows]
    augment = None
    if subset == "train":
        indices, labels = balanced(run, indices, labels)
        augment = Pipeline.from_steps(run.augmentation.steps) if run.augmentation_id else None
        keys = None  # balancing repeats images
    return CachedImages(run.partition.dataset.cache_path, indices, [classes.index(label) for label in labels], augment=augment,
                        seed=run.spec["seed"], keys=keys)


def balanced(run: TrainingRun | RateSearch, indices: list[int], labels: list[str]) -> tuple[list[int], list[str]]:
    """Oversampling and per-class factors repeat images (augmentation makes the copies differ)."""
    label_of = dict(zip(indices, labels))
    data = run.spec["data"]
    if data["balancing"] == "oversample":
        indices = oversampled(indices, labels, run.spec["seed"])
    elif data["balancing"] == "factors":
        indices = [i for i, label in zip(indices, labels) for _ in range(data["class_factors"].get(label, 1))]
    return indices, [label_of[i] for i in indices]


def learns_masks(spec: dict) -> bool:
    """Whether the run's task learns from masks (segmentation): its targets are the samples' label maps."""
    return TASKS[spec["task"]].target_key == "mask"


def classes_of(dataset, spec: dict) -> list[str]:
    """What the model's outputs stand for: the dataset's classes, or for a task learning from masks the names of its
    label values, the background first (Dataset.segmentation_labels)."""
    return [name for _, name in dataset.segmentation_labels] if learns_masks(spec) else dataset.labels


def training_data(run: TrainingRun | RateSearch, observer=None) -> tuple[TrainingData, CachedImages | VolumeRecords]:
    """The run's subsets as the engine reads them: 8-bit 2D images from the training cache, or volumes and 2D images
    with real intensities (or masks) from the store (a run with a plan; built first where it is missing: `observer`
    sees its progress and may stop it)."""
    dataset = run.partition.dataset
    classes = classes_of(dataset, run.spec)
    if run.spec["data"].get("plan"):
        return volume_data(run, classes, observer)
    train_set, validation_set, test_set = (subset_images(run, s, classes) for s in ("train", "validation", "test"))
    return TrainingData(train_set, validation_set, dataset.channels, classes, sample_weights(run, train_set, classes)), test_set


def sample_weights(run: TrainingRun | RateSearch, train_set, classes: list[str]) -> list[float] | None:
    if run.spec["data"]["balancing"] != "weighted":
        return None
    return balanced_weights([classes[t] for t in train_set.targets.tolist()])


def volume_data(run: TrainingRun | RateSearch, classes: list[str], observer=None) -> tuple[TrainingData, VolumeRecords]:
    """Volumes (or 2D images with real intensities) at the plan's spacing (the store), the training subset read as
    random patches with the run's augmentation and balancing, the others whole."""
    plan = run.spec["data"]["plan"]
    dims = plan.get("dims", 3)
    members = list(PartitionMember.objects.filter(partition=run.partition).select_related("sample").order_by("sample_id"))
    with_masks = learns_masks(run.spec)
    if with_masks:  # a sample without a mask has nothing to teach a segmentation (the launch counted those with one)
        members = [m for m in members if m.sample.mask]
    samples = [member.sample for member in members]
    paths = stored_paths(run.partition.dataset, samples, plan, observer)
    position = {sample.pk: k for k, sample in enumerate(samples)}
    label_values = [value for value, _ in run.partition.dataset.segmentation_labels] if with_masks else None

    def subset(name: str) -> VolumeRecords:
        rows = [position[m.sample_id] for m in members if m.subset == name]
        labels = [samples[k].label for k in rows]
        augment = None
        if name == "train":
            rows, labels = balanced(run, rows, labels)
            augment = Pipeline.from_steps(run.augmentation.steps) if run.augmentation_id else None
        targets = [0] * len(rows) if with_masks else [classes.index(label) for label in labels]
        return VolumeRecords([paths[k] for k in rows], targets, [samples[k].meta for k in rows], plan, patches=name == "train",
                             augment=augment, seed=run.spec["seed"], keys=None if name == "train" else [samples[k].pk for k in rows],
                             masks=[mask_path(paths[k]) for k in rows] if with_masks else None, label_values=label_values)

    train_set, validation_set, test_set = subset("train"), subset("validation"), subset("test")
    channels = max(s.channels for s in samples)
    return TrainingData(train_set, validation_set, channels, classes, sample_weights(run, train_set, classes), dims=dims,
                        window=tuple(plan["patch_size"])), test_set


def stored_paths(dataset, samples: list, plan: dict, observer=None) -> list:
    """Each sample's file in the dataset's store at the plan's spacing (written first where missing)."""
    volumes = [StoredVolume(s.array, tuple(s.spacing), s.sha256, s.mask, dims=plan.get("dims", 3)) for s in samples]
    spacing = plan["target_spacing"]
    return build_store(volumes, dataset.project.storage_dir, store_folder(dataset.storage_dir / "store", spacing), spacing,
                       observer)


def train_and_store(run: TrainingRun, reporter: RunReporter) -> None:
    spec = resolve_spec(run.spec)
    data, test_set = training_data(run, reporter)
    start = model_start(run)
    resume = run.has_checkpoint
    if resume:
        reporter.log(f"Resuming from the last checkpoint (attempt {run.attempts}).")
    else:
        reporter.log(f"Training {spec['model']['architecture']} on {len(data.train)} training images, validating on "
                     f"{len(data.validation)}; {spec.epochs} epochs of {spec['batch_size']} images per step.")
        reporter.log(start_note(run.spec, run.provenance.get("started_from", {}), data.classes, data.in_channels))
    outcome = train(spec, data, reporter, run.checkpoint_dir, resume=resume, start=start)
    last_weights = {key: tensor.clone() for key, tensor in outcome.model.state_dict().items()}
    model = outcome.kept_model()
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), run.weights_path)
    torch.save(last_weights, run.last_weights_path)
    results = {"classes": data.classes, "input_shape": list(input_shape(data)),
               "kept": kept_epoch(spec, outcome), "last_epoch": outcome.state.epoch, "ended": outcome.ended,
               "test": measure(spec, data, model, test_set)}
    if outcome.best_weights is not None and outcome.state.best_epoch != outcome.state.epoch:
        results["test_last_epoch"] = measure(spec, data, model_with(model, last_weights), test_set)
        model.load_state_dict(outcome.best_weights)
    results["onnx"] = export_kept_model(run, spec, data, model, reporter)
    results["postprocessing"] = postprocessing_of(spec, data, model, reporter)
    status, message = ending(spec, outcome, results["kept"], reporter.pruned)
    finished = {"status": status, "message": message, "finished_at": timezone.now(), "results": results}
    if status == Status.SUCCEEDED:
        finished["progress_done"] = F("progress_total")
    reporter.log(f"{message} Kept: {results['kept']['reason']}")
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(**finished)
        if status == Status.SUCCEEDED and sum(run.partition.counts.get("test", {}).values()):
            run.refresh_from_db()
            start_evaluation(run)  # on its test subset: per-sample predictions, metrics with intervals
        if status == Status.SUCCEEDED:
            evaluate_for_groups(run)  # a cross-validation's member: on the fold it held out


def export_kept_model(run: TrainingRun, spec: TrainingSpec, data: TrainingData, model, reporter: RunReporter) -> dict:
    """The kept model as safetensors and as ONNX beside its weights, both with the same metadata, and the ONNX
    file's parity check: whether onnxruntime gives PyTorch's outputs on validation images (results["onnx"])."""
    facts = model_facts(run, spec, data)
    metadata = model_metadata(model, facts)
    write_safetensors(model, metadata, run.safetensors_path)
    data.train.augment = None  # the export example is a plain image (of volumes: a patch)
    example = torch.stack([data.train[i]["image"] for i in range(min(2, len(data.train)))])
    entry = MODELS.get(spec["model"]["architecture"])
    # A map as large as its input (segmentation) takes any size the network allows, not only the patch's.
    dynamic_sides = facts.task.spatial_output and not (entry is not None and entry.fixed_size)
    try:
        export_onnx(model, example, run.onnx_path, metadata, dynamic_sides=dynamic_sides)
    except ExportTooLarge as exc:
        error = f"{exc}. The weights are kept as safetensors."
        reporter.log(f"No ONNX file: {error}")
        return {"error": error, "passed": False}
    images, subset = parity_images(data)
    check = parity_check(model, run.onnx_path, images, subset)
    reporter.log(parity_words(check))
    return check


def postprocessing_of(spec: TrainingSpec, data: TrainingData, model, reporter: RunReporter) -> dict:
    """What the task does to the kept model's predictions from now on, decided on the validation subset (a segmentation:
    the largest component of a label kept where that raised its validation Dice), and the log's sentence on it."""
    task = task_for(spec["task"], data.classes, data.dims, spec.loss.probabilities, data.window, spec.mirror_axes(data.dims))
    choice = task.postprocessing(model, data.validation)
    if choice.get("dice_before"):
        kept = [data.classes[label] for label in choice["largest_component"]]
        changes = ", ".join(f"{name} {choice['dice_before'][name]:.3f} → {choice['dice_after'][name]:.3f}"
                            for name in choice["dice_before"])
        reporter.log(f"Postprocessing: the largest connected component alone is kept for {', '.join(kept) or 'no label'} "
                     f"(mean validation Dice as predicted → largest component only: {changes}).")
    return choice


def model_facts(run: TrainingRun, spec: TrainingSpec, data: TrainingData) -> ModelFacts:
    task = task_for(spec["task"], data.classes, data.dims, window=data.window)
    return ModelFacts(architecture=spec["model"]["architecture"], task=task,
                      input_shape=input_shape(data), spec=spec.to_dict(), input_rule=input_rule(run.spec),
                      probabilities=probabilities_of(spec.loss), preprocessing=preprocessing_of(run.partition.dataset),
                      run_id=run.pk, run_name=run.name, toolkit_version=run.provenance.get("code_version", "unknown"))


def preprocessing_of(dataset) -> list[dict]:
    """The preprocessing pipeline versions that made the dataset from an upload, oldest first (a derived
    dataset's parent may be derived too; the chain ends where a parent was deleted)."""
    made, seen = [], set()
    while dataset is not None and dataset.pipeline_version_id and dataset.pk not in seen:
        seen.add(dataset.pk)
        version = dataset.pipeline_version
        made.append({"dataset": dataset.pk, "pipeline": version.pipeline_id, "name": version.pipeline.name,
                     "version": version.number, "steps": version.steps})
        dataset = dataset.derived_from
    return made[::-1]


def input_shape(data: TrainingData) -> tuple[int, ...]:
    """(C, H, W) of the cached images, or (C, D, H, W) of the patch a model of volumes takes."""
    sides = data.window if data.window else data.train.cache.shape[-2:]
    return (data.in_channels, *sides)


def input_rule(spec: dict) -> str:
    plan = spec["data"].get("plan")
    return volume_input_rule(plan) if plan else IMAGE_TO_INPUT


def parity_images(data: TrainingData) -> tuple[torch.Tensor, str]:
    """Up to PARITY_IMAGES validation images (plain, in the partition's order; of volumes, one patch each, the
    shape the exported graph takes); the training images' when the partition has no validation subset."""
    subset, images = ("validation", data.validation) if len(data.validation) else ("train", data.train)
    if isinstance(images, VolumeRecords):
        images = images.as_patches()
    return torch.stack([images[i]["image"] for i in range(min(PARITY_IMAGES, len(images)))]), subset


def parity_words(check: dict) -> str:
    same = "the same classes" if check["same_predictions"] else "different classes"
    difference = "not a number" if check["max_abs_difference"] is None else f"{check['max_abs_difference']:.1g}"
    agrees = "agrees" if check["passed"] else "does NOT agree"
    return (f"Exported as ONNX and safetensors; the ONNX file {agrees} with PyTorch on {check['images']} {check['subset']} images: {same}, largest output "
            f"difference {difference} (at most {check['tolerance']:g} passes).")


def model_with(model, weights: dict):
    model.load_state_dict(weights)
    return model


def measure(spec: TrainingSpec, data: TrainingData, model, test_set) -> dict:
    """The loss and metrics of a model on the test subset ({} when it is empty)."""
    return measured(model, test_set, spec, data.classes, data.class_counts, data.dims, data.window)


def kept_epoch(spec: TrainingSpec, outcome: TrainingOutcome) -> dict:
    """Which epoch's model is kept, and why, in words."""
    state = outcome.state
    subset, name, higher = spec.monitored
    if outcome.best_weights is None:
        return {"epoch": state.epoch, "reason": "No epoch was measured yet: the model as training left it."}
    best = "highest" if higher else "lowest"
    return {"epoch": state.best_epoch, "monitor": f"{subset}.{name}", "value": state.best_value,
            "reason": f"Epoch {state.best_epoch} of {state.epoch}: the {best} {subset} {name} ({state.best_value:.4g})."}


def ending(spec: TrainingSpec, outcome: TrainingOutcome, kept: dict, pruned: str = "") -> tuple[str, str]:
    state = outcome.state
    if outcome.ended == "stopped" and pruned:
        return Status.STOPPED, pruned
    if outcome.ended == "stopped":
        kept_what = f"kept epoch {kept['epoch']}" if outcome.best_weights is not None else "kept the model as it was"
        return Status.STOPPED, f"Stopped by the user in epoch {state.epoch + 1}; {kept_what}. Resume goes on from the checkpoint."
    if outcome.ended == "early_stopping":
        return Status.SUCCEEDED, (f"Stopped early after epoch {state.epoch} of {spec.epochs}: the monitored metric had not "
                                  f"improved for {spec['early_stopping']['patience']} epochs.")
    return Status.SUCCEEDED, f"Finished {state.epoch} epochs."

"""The training job: read a run's partition, train with the engine, store the results."""
from __future__ import annotations

import torch
from django.db.models import F
from django.utils import timezone

from backend.core.tasks import TRAIN_QUEUES
from backend.datasets.models import PartitionMember
from backend.runs.models import MetricPoint, RunLogLine, TrainingRun
from workers.engine.data import CachedImages
from workers.engine.export import export_onnx, max_abs_difference
from workers.engine.pipelines import Pipeline
from workers.engine.splits import balanced_weights, oversampled
from workers.engine.training import TrainingConfig, evaluate, train_classifier

from .jobs import JobReporter, JobRunner, register

Status = TrainingRun.Status


class RunReporter(JobReporter):
    """Also stores each metric point as it comes, so charts update while the run goes on, and
    counts the epochs done, so a run whose worker dies can say where it got to."""

    def metric(self, epoch: int, subset: str, name: str, value: float) -> None:
        MetricPoint.objects.update_or_create(run_id=self.pk, epoch=epoch, subset=subset, name=name, defaults={"value": float(value)})
        # Training metrics come once an epoch's batches are done: from the first of them the epoch counts as trained.
        TrainingRun.objects.filter(pk=self.pk, epochs_completed__lt=epoch).update(epochs_completed=epoch)
        self.changed()

    def log(self, message: str) -> None:
        RunLogLine.objects.create(run_id=self.pk, text=message)
        self.changed()


class TrainingJob(JobRunner):
    model = TrainingRun
    task = "workers.tasks.train_run"
    noun = "training run"

    @property
    def queue(self):  # only used to queue a run again, which training does not do (yet: checkpoints will)
        return TRAIN_QUEUES["cpu"]

    def reporter(self, run: TrainingRun) -> RunReporter:
        return RunReporter(run)

    def work(self, run: TrainingRun, reporter: RunReporter) -> None:
        run = TrainingRun.objects.select_related("partition__dataset__project").get(pk=run.pk)
        train_and_store(run, reporter)

    def failure_message(self, exc: Exception) -> str:
        return f"Training failed ({type(exc).__name__}: {exc}). The metrics recorded so far are kept."

    def on_worker_lost(self, run: TrainingRun) -> str:
        """Until runs keep checkpoints there is nothing to resume from: the run ends, its metrics kept."""
        self.finish(run, Status.FAILED, f"The worker running this stopped responding at epoch {run.epochs_completed + 1}; "
                                        "the metrics so far are kept.")
        return "failed (nothing to resume from)"


TRAINING = register(TrainingJob())


def subset_images(run: TrainingRun, subset: str, classes: list[str]) -> CachedImages:
    """A subset's images; the training subset with the run's augmentation and balancing."""
    members = PartitionMember.objects.filter(partition=run.partition, subset=subset).order_by("sample__cache_index")
    rows = list(members.values_list("sample__cache_index", "sample__label"))
    indices, labels = [i for i, _ in rows], [label for _, label in rows]
    augment = None
    if subset == "train":
        indices, labels = balanced(run, indices, labels)
        augment = Pipeline.from_steps(run.augmentation.steps) if run.augmentation_id else None
    return CachedImages(run.partition.dataset.cache_path, indices, [classes.index(label) for label in labels], augment=augment, seed=run.seed)


def balanced(run: TrainingRun, indices: list[int], labels: list[str]) -> tuple[list[int], list[str]]:
    """Oversampling and per-class factors repeat images (augmentation makes the copies differ)."""
    label_of = dict(zip(indices, labels))
    if run.balancing == "oversample":
        indices = oversampled(indices, labels, run.seed)
    elif run.balancing == "factors":
        indices = [i for i, label in zip(indices, labels) for _ in range(run.class_factors.get(label, 1))]
    return indices, [label_of[i] for i in indices]


def train_and_store(run: TrainingRun, reporter: RunReporter) -> None:
    dataset = run.partition.dataset
    classes = dataset.labels
    train_set, validation_set, test_set = (subset_images(run, s, classes) for s in ("train", "validation", "test"))
    config = TrainingConfig(
        architecture=run.architecture, epochs=run.epochs, learning_rate=run.learning_rate,
        batch_size=run.batch_size, device=run.device, seed=run.seed, processes=run.processes,
        mixed_precision=run.device == "gpu",
    )
    weights = balanced_weights([classes[t] for t in train_set.targets.tolist()]) if run.balancing == "weighted" else None
    outcome = train_classifier(config, train_set, validation_set, dataset.channels, len(classes), reporter, sample_weights=weights)
    model = outcome.model.cpu()
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), run.weights_path)
    results = {"classes": classes, "input_shape": [dataset.channels, dataset.height, dataset.width]}
    test_loss = test_accuracy = None
    if len(test_set):
        test_loss, test_accuracy = evaluate(model, test_set, run.batch_size)
    train_set.augment = None  # the export example is a plain image
    example = torch.stack([train_set[i][0] for i in range(min(2, len(train_set)))])
    export_onnx(model, example, run.onnx_path)
    results["onnx_max_abs_difference"] = max_abs_difference(model, run.onnx_path, example)
    status = Status.STOPPED if outcome.stopped else Status.SUCCEEDED
    message = (f"Stopped by the user after {outcome.epochs_completed} full epochs; the model as it was is kept."
               if outcome.stopped else "Finished.")
    finished = {
        "status": status, "message": message, "finished_at": timezone.now(),
        "epochs_completed": outcome.epochs_completed, "test_accuracy": test_accuracy, "test_loss": test_loss,
        "config": {**run.config, "results": results},
    }
    if not outcome.stopped:
        finished["progress_done"] = F("progress_total")
    TrainingRun.objects.filter(pk=run.pk).update(**finished)

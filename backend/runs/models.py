from django.conf import settings
from django.db import models

from backend.core.models import Job
from backend.datasets.models import Partition
from backend.projects.models import Project


class TrainingRun(Job):
    """A model trained on a partition by a worker. A stop asked while it runs is `stop_requested`:
    it ends after the current batch, keeping the model as it was."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    DONE = Status.SUCCEEDED

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    partition = models.ForeignKey(Partition, on_delete=models.PROTECT, related_name="runs")
    name = models.CharField(max_length=200)
    architecture = models.CharField(max_length=50)
    epochs = models.PositiveIntegerField()
    learning_rate = models.FloatField()
    batch_size = models.PositiveIntegerField()
    device = models.CharField(max_length=10)
    seed = models.IntegerField(default=0)
    processes = models.PositiveSmallIntegerField(default=1, help_text="Data-parallel training processes on the worker (one per GPU, "
                                                 "or CPU processes); each trains on its shard of the training subset.")
    augmentation = models.ForeignKey("pipelines.PipelineVersion", on_delete=models.RESTRICT, null=True, blank=True, related_name="runs",
                                     help_text="The augmentation pipeline version applied to training images on the fly.")
    balancing = models.CharField(max_length=20, default="none", choices=[
        ("none", "None"), ("weighted", "Weighted sampling (every class drawn equally often)"),
        ("oversample", "Oversampling (smaller classes repeated up to the largest)"),
        ("factors", "Per-class factors (each image of a class used N times per epoch)")])
    class_factors = models.JSONField(default=dict, blank=True, help_text="{label: times per epoch} for balancing 'factors'.")
    config = models.JSONField(default=dict, help_text="Everything that produced the result.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    epochs_completed = models.PositiveIntegerField(default=0)
    test_accuracy = models.FloatField(null=True, blank=True)
    test_loss = models.FloatField(null=True, blank=True)
    public = models.BooleanField(
        default=False, help_text="Shared with every user of the server: they may read it and download its model."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def storage_dir(self):
        return self.project.storage_dir / "runs" / str(self.pk)

    @property
    def onnx_path(self):
        return self.storage_dir / "model.onnx"

    @property
    def weights_path(self):
        return self.storage_dir / "weights.pt"


class MetricPoint(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    epoch = models.PositiveIntegerField()
    subset = models.CharField(max_length=20)
    name = models.CharField(max_length=50)
    value = models.FloatField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "epoch", "subset", "name"], name="one_value_per_epoch")
        ]


class RunLogLine(models.Model):
    """One line of a run's log (what the trainer did, in words): the run page shows the tail."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="log_lines")
    text = models.TextField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

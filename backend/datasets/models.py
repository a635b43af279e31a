from django.conf import settings
from django.db import models

from backend.projects.models import Project


class Dataset(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        INGESTING = "ingesting", "Ingesting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    upload_name = models.CharField(max_length=255, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    stop_requested = models.BooleanField(default=False)
    channels = models.PositiveSmallIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    class_counts = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def storage_dir(self):
        return self.project.storage_dir / "datasets" / str(self.pk)

    @property
    def upload_path(self):
        return self.storage_dir / "upload.zip"

    @property
    def cache_path(self):
        from workers.engine.ingest import CACHE_FILE

        return self.storage_dir / CACHE_FILE

    @property
    def num_samples(self) -> int:
        return sum(self.class_counts.values())

    @property
    def labels(self) -> list[str]:
        return sorted(self.class_counts)


class Sample(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="samples")
    label = models.CharField(max_length=100, db_index=True)
    source_path = models.CharField(max_length=1024, help_text="Path inside the uploaded archive.")
    original = models.CharField(max_length=512)
    thumbnail = models.CharField(max_length=512)
    cache_index = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["cache_index"]
        constraints = [models.UniqueConstraint(fields=["dataset", "cache_index"], name="unique_cache_index")]


class IngestReportEntry(models.Model):
    """One file of an upload that was not taken as is: rejected, skipped or changed."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="report")
    path = models.CharField(max_length=1024)
    status = models.CharField(max_length=20)
    reason = models.TextField()

    class Meta:
        ordering = ["id"]


class Partition(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="partitions")
    name = models.CharField(max_length=200)
    train_percent = models.FloatField()
    validation_percent = models.FloatField()
    test_percent = models.FloatField()
    seed = models.IntegerField()
    stratified = models.BooleanField(default=True)
    counts = models.JSONField(default=dict, help_text="{subset: {label: count}}")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class PartitionMember(models.Model):
    partition = models.ForeignKey(Partition, on_delete=models.CASCADE, related_name="members")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE)
    subset = models.CharField(max_length=20)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partition", "sample"], name="one_subset_per_sample")]
        indexes = [models.Index(fields=["partition", "subset"])]

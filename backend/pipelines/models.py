"""Pipelines: named, versioned lists of operations. A version that something has used is frozen."""
from django.conf import settings
from django.db import models

from backend.projects.models import Project


class Pipeline(models.Model):
    class Kind(models.TextChoices):
        AUGMENTATION = "augmentation", "Augmentation (applied on the fly while training)"
        PREPROCESSING = "preprocessing", "Preprocessing (run once, makes a derived dataset)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.AUGMENTATION)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="one_pipeline_name_per_project")]

    def __str__(self):
        return self.name

    @property
    def latest(self) -> "PipelineVersion":
        return self.versions.order_by("-number").first()


class PipelineVersion(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    steps = models.JSONField(help_text='[{"op": name, "params": {...}}, ...], every parameter written out.')
    used_at = models.DateTimeField(null=True, blank=True, help_text="When a run or a derived dataset first used it; from then on it is frozen.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="one_version_number_per_pipeline")]

    def __str__(self):
        return f"{self.pipeline.name} v{self.number}"

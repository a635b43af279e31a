"""Pipelines: named, versioned lists of operations. A version that something has used is frozen."""
from django.conf import settings
from django.db import models

from backend.core.models import Job
from backend.projects.models import Project


class Pipeline(models.Model):
    class Kind(models.TextChoices):
        AUGMENTATION = "augmentation", "Augmentation (applied on the fly while training)"
        PREPROCESSING = "preprocessing", "Preprocessing (run once, makes a derived dataset)"
        AGGREGATION = "aggregation", "Aggregation (measures every sample: a table and charts)"

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
    measures = models.JSONField(default=list, blank=True,
                                help_text="Aggregation pipelines: what to measure on each sample after the steps (GET /api/measures/).")
    used_at = models.DateTimeField(null=True, blank=True, help_text="When a run, a derived dataset or a table of measures first used it; from then on it is frozen.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="one_version_number_per_pipeline")]

    def __str__(self):
        return f"{self.pipeline.name} v{self.number}"


class Aggregation(Job):
    """A table of measures: an aggregation pipeline version run over a dataset by a worker."""

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="aggregations")
    pipeline_version = models.ForeignKey(PipelineVersion, on_delete=models.RESTRICT, related_name="aggregations")
    name = models.CharField(max_length=200)
    measures = models.JSONField(default=list, help_text="The version's measures, in table order.")
    histogram_edges = models.JSONField(default=list, blank=True, help_text="Bin edges shared by every sample's histogram.")
    histograms = models.JSONField(default=dict, blank=True, help_text="{label: voxel counts per bin}, summed over the label's samples.")
    summary = models.JSONField(default=dict, blank=True,
                               help_text="{measure: {edges, labels: {label: {box, counts}}}}: what the charts draw.")
    measured_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def project(self):
        return self.dataset.project


class AggregationRow(models.Model):
    """One sample's measures. A measure that could not be taken is absent from values and explained in problems."""

    aggregation = models.ForeignKey(Aggregation, on_delete=models.CASCADE, related_name="rows")
    index = models.PositiveIntegerField()
    sample = models.ForeignKey("datasets.Sample", on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=100)
    patient = models.CharField(max_length=64, blank=True)
    values = models.JSONField(default=dict)
    problems = models.JSONField(default=dict, help_text="{measure: why it could not be taken}; '*' when the steps failed.")
    histogram = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["aggregation", "index"], name="one_row_per_index")]

from django.conf import settings
from django.db import models

from backend.core.models import Job
from backend.projects.models import Project


class ImportedModel(Job):
    """A model brought in from outside (an ONNX file, or safetensors weights of a zoo network), checked on the way
    in and made usable by a worker job: its weights copied onto a zoo network, converted to PyTorch, or usable for
    prediction only (the reason says why). The job's own states are the lifecycle's (queued, running, ready ...);
    `mode` says what the model became."""

    class Kind(models.TextChoices):
        ONNX = "onnx", "ONNX"
        SAFETENSORS = "safetensors", "safetensors"

    class Mode(models.TextChoices):
        CHECKING = "checking", "Checking"
        WEIGHTS_COPIED = "weights_copied", "Weights copied"
        CONVERTED = "converted", "Converted"
        PREDICTION_ONLY = "prediction_only", "Prediction only"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imported_models")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    file_name = models.CharField(max_length=255, blank=True, help_text="The uploaded file's name.")
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    opset = models.PositiveIntegerField(null=True, blank=True, help_text="ONNX: the default domain's opset version.")
    producer = models.CharField(max_length=200, blank=True, help_text="ONNX: the program that wrote the file.")
    inputs = models.JSONField(default=list, help_text="[{name, type, shape}]; a shape's symbolic sides are their names.")
    outputs = models.JSONField(default=list)
    metadata = models.JSONField(default=dict, help_text="The file's own metadata (ONNX metadata_props, safetensors __metadata__).")
    architecture = models.CharField(max_length=50, blank=True, help_text="The zoo network it is, when known.")
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.CHECKING)
    reason = models.TextField(blank=True, help_text="What the import did, and why the model can or cannot be fine-tuned.")
    classes = models.JSONField(default=list, help_text="Class names in output order, from the file's metadata when it has them.")
    channels = models.PositiveSmallIntegerField(default=0)
    input_size = models.PositiveIntegerField(default=0, help_text="The side of the square images it takes; 0: free or not square.")
    class_count = models.PositiveIntegerField(default=0)
    mean = models.JSONField(null=True, blank=True, help_text="Per-channel normalisation applied to [0, 1] images before the file.")
    std = models.JSONField(null=True, blank=True)
    details = models.JSONField(default=dict, help_text="What the worker's checks found (largest difference, matching ...).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def storage_dir(self):
        return self.project.storage_dir / "imported" / str(self.pk)

    @property
    def source_path(self):
        """The uploaded file as it came (checked, never unpickled)."""
        return self.storage_dir / ("model.onnx" if self.kind == self.Kind.ONNX else "upload.safetensors")

    @property
    def onnx_path(self):
        """The ONNX file predictions run: the upload itself, or the zoo network exported by the import (safetensors)."""
        return self.storage_dir / "model.onnx"

    @property
    def weights_path(self):
        """The zoo network's state dict (ZooModel keys: mean, std, network.*) when the weights were copied."""
        return self.storage_dir / "weights.safetensors"

    @property
    def inputs_text(self) -> str:
        return shapes_text(self.inputs)

    @property
    def outputs_text(self) -> str:
        return shapes_text(self.outputs)

    @property
    def usable(self) -> bool:
        return self.status == self.DONE and self.mode in (self.Mode.WEIGHTS_COPIED, self.Mode.CONVERTED, self.Mode.PREDICTION_ONLY)

    @property
    def trainable(self) -> bool:
        return self.status == self.DONE and self.mode in (self.Mode.WEIGHTS_COPIED, self.Mode.CONVERTED)


def shapes_text(values: list[dict]) -> str:
    """'image: batch × 1 × 32 × 32' for each input or output."""
    return "; ".join(f"{v.get('name', '')}: {' × '.join(str(side) for side in v['shape'])}" if v.get("shape") else str(v.get("name", ""))
                     for v in values)

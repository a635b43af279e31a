from django.conf import settings
from django.db import models

from backend.core.models import DoneStatus, Job
from backend.datasets.models import Partition
from backend.projects.models import Project


class TrainingRun(Job):
    """A model trained on a partition by a worker, as its spec says (docs/training.md).

    Settings, provenance and results are data, not columns: a new optimizer, metric or result
    needs no migration. A stop asked while it runs is `stop_requested`: it ends after the current
    batch with a checkpoint, from which Resume goes on."""

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
    spec = models.JSONField(default=dict, help_text="The resolved training spec: every setting of the run (docs/training.md).")
    provenance = models.JSONField(default=dict, help_text="What else produced the result: code and package versions; the "
                                                         "dataset, partition and pipeline versions.")
    results = models.JSONField(default=dict, blank=True, help_text="What the run measured and kept: the kept epoch and why, "
                                                                   "test metrics, the export's check.")
    queue = models.CharField(max_length=100, default="train-cpu", help_text="The logical queue the run waits in (by resource).")
    augmentation = models.ForeignKey("pipelines.PipelineVersion", on_delete=models.RESTRICT, null=True, blank=True, related_name="runs",
                                     help_text="The augmentation pipeline version applied to training images on the fly.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    epochs_completed = models.PositiveIntegerField(default=0)
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
    def architecture(self) -> str:
        return self.spec.get("model", {}).get("architecture", "")

    @property
    def epochs(self) -> int:
        return self.spec.get("epochs", 0)

    @property
    def device(self) -> str:
        return self.spec.get("resources", {}).get("device", "cpu")

    @property
    def test_accuracy(self) -> float | None:
        return self.results.get("test", {}).get("accuracy")

    @property
    def storage_dir(self):
        return self.project.storage_dir / "runs" / str(self.pk)

    @property
    def checkpoint_dir(self):
        return self.storage_dir / "checkpoints"

    @property
    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / "checkpoint.pt").is_file()

    @property
    def onnx_path(self):
        return self.storage_dir / "model.onnx"

    @property
    def safetensors_path(self):
        """The kept model's weights as safetensors, with the ONNX file's metadata (runs before issue 13 have none)."""
        return self.storage_dir / "model.safetensors"

    @property
    def weights_path(self):
        """The kept model's weights (the best epoch's)."""
        return self.storage_dir / "weights.pt"

    @property
    def last_weights_path(self):
        """The last epoch's weights, kept beside the best."""
        return self.storage_dir / "weights-last.pt"


class MetricPoint(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    epoch = models.PositiveIntegerField()
    subset = models.CharField(max_length=20)
    # A metric, or a per-class one as "<metric>.<class>" (class_dice.<label name>: names up to 100 characters)
    name = models.CharField(max_length=120)
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


class RateSearch(Job):
    """A learning-rate finder's sweep (docs/rate-finder.md): the run form's settings on a partition, a short
    mock training by a worker, and what it found: the loss against the rate and a suggested rate.

    A search is a hint for the form being filled, not a result to keep: it freezes no pipeline version (its
    augmentation goes with the pipeline), and finished searches older than a day are removed when the next one
    in the project starts (`SEARCHES_KEPT_FOR`, backend/runs/services.py)."""

    Status = DoneStatus

    DONE = Status.DONE

    partition = models.ForeignKey(Partition, on_delete=models.CASCADE, related_name="rate_searches")
    spec = models.JSONField(default=dict, help_text="The resolved training spec the search sweeps the rate of (docs/training.md).")
    results = models.JSONField(default=dict, blank=True, help_text="{rates, losses (smoothed), suggestion, stopped_early_because}.")
    queue = models.CharField(max_length=100, default="train-cpu", help_text="The logical queue the search waits in (by resource).")
    augmentation = models.ForeignKey("pipelines.PipelineVersion", on_delete=models.CASCADE, null=True, blank=True,
                                     related_name="rate_searches", help_text="The augmentation applied to the training images.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Learning-rate search {self.pk} on {self.partition}"

    @property
    def project(self):
        return self.partition.dataset.project


class Evaluation(Job):
    """A run's kept model measured on a subset of its partition (issue 22; docs/results.md): each sample's prediction
    (SamplePrediction) and the results: metrics with 95% intervals from a bootstrap over patients, the confusion
    matrix, ROC and precision-recall curves, calibration, and for two classes operating points chosen on the
    validation subset. Every run that succeeds is evaluated on its test subset by itself."""

    Status = DoneStatus

    DONE = Status.DONE
    SUBSETS = ("test", "validation")
    WHOLE_DATASET = "all"  # the subset of an evaluation on another dataset: all of its samples whose class is mapped

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="evaluations")
    subset = models.CharField(max_length=20, default="test", help_text="The subset of the run's partition measured.")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, null=True, blank=True,
                                related_name="external_evaluations",
                                help_text="Another dataset measured whole (external validation); empty: the run's own partition.")
    class_mapping = models.JSONField(default=dict, blank=True,
                                     help_text="For another dataset: each of its class names to one of the run's classes.")
    results = models.JSONField(default=dict, blank=True, help_text="Metrics with intervals, confusion, curves, calibration, "
                                                                   "operating points (workers/engine/tasks/classification/results.py).")
    queue = models.CharField(max_length=100, default="train-cpu", help_text="The logical queue the evaluation waits in.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        if self.dataset_id:
            return f"Evaluation {self.pk} of run {self.run_id} on dataset {self.dataset_id}"
        return f"Evaluation {self.pk} of run {self.run_id} on its {self.subset} subset"

    @property
    def project(self):
        return self.run.project

    @property
    def storage_dir(self):
        """The evaluation's files (a segmentation's predicted label maps), kept with the run's and deleted with them."""
        return self.run.storage_dir / "evaluations" / str(self.pk)


class SamplePrediction(models.Model):
    """One sample's prediction in an evaluation: what the results table sorts (worst errors first: the lowest
    probability given to the true class; least confident first: the lowest top probability)."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="predictions")
    sample = models.ForeignKey("datasets.Sample", on_delete=models.SET_NULL, null=True, related_name="predictions")
    patient = models.CharField(max_length=64, blank=True)
    truth = models.CharField(max_length=100, help_text="The true class.")
    predicted = models.CharField(max_length=100, help_text="The most probable class.")
    probabilities = models.JSONField(help_text="Each class's probability, in the run's order of the classes.")
    truth_probability = models.FloatField(help_text="The probability given to the true class.")
    confidence = models.FloatField(help_text="The top probability.")
    correct = models.BooleanField()

    class Meta:
        ordering = ["truth_probability", "id"]
        indexes = [models.Index(fields=["evaluation", "truth_probability"]), models.Index(fields=["evaluation", "confidence"])]


class SegmentationCase(models.Model):
    """One case of a segmentation run's evaluation (issue 23; docs/results.md "Segmentation"): its scores per foreground
    label on the sample's own grid and spacing, and where its predicted label map is kept (`mask`, a uint8/uint16 .npy
    under the evaluation's folder, relative to the project's folder as Sample.mask is). The results table lists the
    worst cases first (the lowest mean foreground Dice)."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="cases")
    sample = models.ForeignKey("datasets.Sample", on_delete=models.SET_NULL, null=True, related_name="segmentation_cases")
    patient = models.CharField(max_length=64, blank=True)
    dice = models.JSONField(help_text="{label: Dice}: 1 where the label is in neither the reference nor the prediction, "
                                      "0 where it is in one only.")
    iou = models.JSONField(help_text="{label: IoU (Jaccard)}, empty labels as Dice.")
    hd95 = models.JSONField(help_text="{label: 95th percentile Hausdorff distance in mm}: 0 where the label is in neither, "
                                      "the diagonal of the sample's field of view where it is in one only.")
    nsd = models.JSONField(help_text="{label: normalised surface distance at the tolerance}: 1 where in neither, 0 in one only.")
    predicted_volume = models.JSONField(help_text="{label: volume predicted} in ml (mm² for an image).")
    reference_volume = models.JSONField(help_text="{label: volume in the reference mask} in ml (mm² for an image).")
    empty = models.JSONField(help_text='{label: "both", "missed", "false_alarm" or ""}: how an empty label was scored.')
    mean_dice = models.FloatField(help_text="The mean of the foreground labels' Dice.")
    tolerance_mm = models.FloatField(help_text="The NSD's boundary tolerance in mm.")
    mask = models.CharField(max_length=512, help_text="The predicted label map (.npy of label values, the sample's own grid), "
                                                      "relative to the project's folder.")

    class Meta:
        ordering = ["mean_dice", "id"]
        indexes = [models.Index(fields=["evaluation", "mean_dice"])]


class Explanation(Job):
    """One image explained by a model (issue 22, R1; docs/results.md "Explain"): each class's probability and a Grad-CAM
    heat map of the explained class over the image, computed by a worker on the input the model saw and stored on the
    image's own grid (`heat_map_path`, a float16 .npy in [0, 1], (D, H, W) with D 1 for an image), which the viewer
    overlays. A model that gives no gradients is explained by its prediction alone (`results.note`).

    The model is a run's kept model (`run`) or an imported model (`imported_model`): one of the two. The image is a
    dataset's sample (`sample`) or a file uploaded for it (`upload`: what the file was and where its pixels are kept,
    beside the explanation): one of the two; an imported model explains uploads only."""

    Status = DoneStatus

    DONE = Status.DONE

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="explanations", null=True, blank=True)
    imported_model = models.ForeignKey("zoo.ImportedModel", on_delete=models.CASCADE, related_name="explanations", null=True,
                                       blank=True, help_text="The imported model explaining the upload (no run then).")
    sample = models.ForeignKey("datasets.Sample", on_delete=models.CASCADE, related_name="explanations", null=True, blank=True)
    upload = models.JSONField(default=dict, blank=True, help_text="{} for a sample; for an uploaded file: {name, format, "
                                                                  "modality, kind, shape, dtype, channels, spacing, meta, array, "
                                                                  "original, sha256, size_bytes}, array and original relative to the "
                                                                  "project's storage.")
    results = models.JSONField(default=dict, blank=True, help_text="{classes, probabilities, predicted, explained_class, "
                                                                   "method, layer, windows, heat_map_shape, note}.")
    queue = models.CharField(max_length=100, default="train-cpu", help_text="The logical queue the explanation waits in.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["run", "sample"])]
        constraints = [
            models.CheckConstraint(name="explanation_one_model",
                                   condition=models.Q(run__isnull=False, imported_model__isnull=True)
                                   | models.Q(run__isnull=True, imported_model__isnull=False)),
            models.CheckConstraint(name="explanation_one_image",
                                   condition=models.Q(sample__isnull=False, upload={})
                                   | (models.Q(sample__isnull=True) & ~models.Q(upload={}))),
        ]

    def __str__(self):
        what = f"sample {self.sample_id}" if self.sample_id else f"the upload {self.upload.get('name', '')!r}"
        by = f"run {self.run_id}" if self.run_id else f"imported model {self.imported_model_id}"
        return f"Explanation {self.pk} of {what} by {by}"

    @property
    def project(self):
        return self.run.project if self.run_id else self.imported_model.project

    @property
    def model_dir(self):
        """The folder of the model's files (a run's, or an imported model's): explanations are deleted with it."""
        return self.run.storage_dir if self.run_id else self.imported_model.storage_dir

    @property
    def heat_map_path(self):
        """The heat map on the image's grid, kept with the model's files (deleted with the run or imported model)."""
        return self.model_dir / "explanations" / f"{self.pk}.npy"

    @property
    def upload_dir(self):
        """An uploaded file's pixels (and its de-identified DICOM header) as the explanation keeps them."""
        return self.model_dir / "explanations" / "uploads" / str(self.pk)

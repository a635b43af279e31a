from functools import cached_property

from django.conf import settings
from django.db import models

from backend.core.models import Job
from backend.projects.models import Project


class Dataset(Job):
    """Samples from an upload, a merge or a preprocessing pipeline; the job that builds them is its own."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        INGESTING = "ingesting", "Ingesting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    RUNNING = Status.INGESTING

    class Task(models.TextChoices):
        CLASSIFICATION = "classification", "Classification"
        SEGMENTATION = "segmentation", "Segmentation"

    class LabelsFrom(models.TextChoices):
        FOLDERS = "folders", "Folder names"
        NONE = "none", "None yet (add them from a table)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    upload_name = models.CharField(max_length=255, blank=True)
    labels_from = models.CharField(max_length=20, choices=LabelsFrom.choices, default=LabelsFrom.FOLDERS)
    task = models.CharField(max_length=20, choices=Task.choices, default=Task.CLASSIFICATION)
    modalities = models.CharField(max_length=200, blank=True, help_text="Modalities and formats of the samples, e.g. 'CT, MR'.")
    channels = models.PositiveSmallIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    class_counts = models.JSONField(default=dict)
    masked_count = models.PositiveIntegerField(default=0, help_text="Samples that have a mask.")
    mask_values = models.JSONField(default=list, blank=True, help_text="The label values the masks hold (0: background).")
    label_names = models.JSONField(default=dict, blank=True, help_text="{label value as text: name} of a segmentation's masks")
    fingerprint = models.JSONField(default=dict, blank=True, help_text="Of the volumes: spacings, shapes, modalities and "
                                   "foreground intensity statistics per channel (workers/engine/planning.py); {} without volumes.")
    sample_count = models.PositiveIntegerField(default=0)
    patient_count = models.PositiveIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    merged_from = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="merged_into")
    label_mapping = models.JSONField(default=dict, blank=True, help_text="{source label: label in this dataset} for merges.")
    # A derived dataset: a preprocessing pipeline's output over another dataset.
    derived_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="derivatives")
    pipeline_version = models.ForeignKey("pipelines.PipelineVersion", on_delete=models.RESTRICT, null=True, blank=True,
                                         related_name="derived_datasets")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def storage_dir(self):
        return self.project.storage_dir / "datasets" / str(self.pk)

    @property
    def upload_dir(self):
        return self.storage_dir / "upload"

    @property
    def cache_path(self):
        from workers.engine.ingest import CACHE_FILE

        return self.storage_dir / CACHE_FILE

    @property
    def num_samples(self) -> int:
        return self.sample_count

    @property
    def labels(self) -> list[str]:
        return sorted(self.class_counts)

    @cached_property
    def dimensions(self) -> set[int]:
        """The spatial dimensions of the samples: {2}, {3}, or both when images and volumes are mixed. Asked by
        several checks of one launch (and of each settings change in the run form): read once per instance."""
        kinds = set(self.samples.values_list("kind", flat=True).distinct())
        return {3 if kind == Sample.Kind.VOLUME else 2 for kind in kinds}

    @cached_property
    def planned(self) -> bool:
        """Whether runs on it train from a plan (real intensities from the store): volumes, or 2D images with more than
        8 bits (a CT slice in Hounsfield units, a 16-bit radiograph), or images with masks (the store keeps each mask beside
        its image; the training cache holds no masks). Other 8-bit images train from the training cache."""
        if 3 in self.dimensions or self.masked_count:
            return True
        dtypes = set(self.samples.filter(kind=Sample.Kind.IMAGE).values_list("dtype", flat=True).distinct())
        return real_intensities(dtypes, self.floats_are_real())

    def floats_are_real(self) -> bool:
        """Whether float images hold real intensities: uploaded ones do (a float NIfTI or TIFF); a preprocessing
        pipeline's floats only when its source had them (a resized 8-bit JPEG comes out as float32 too)."""
        if self.derived_from is not None:
            return self.derived_from.planned
        return not self.pipeline_version_id

    @property
    def labels_in_words(self) -> str:
        """What the samples are labelled with, as the pages list it: the classes ("NORMAL, PNEUMONIA"), or for
        segmentation the masks and the label values they hold ("segmentation · 6 masks · labels 0, 1, 2")."""
        classes = [label or "(unlabelled)" for label in self.labels]
        if self.task != self.Task.SEGMENTATION:
            return ", ".join(classes)
        words = ["segmentation", f"{self.masked_count} mask{'' if self.masked_count == 1 else 's'}"]
        if self.mask_values:
            words.append(f"label{'' if len(self.mask_values) == 1 else 's'} {', '.join(str(v) for v in self.mask_values)}")
        if any(self.labels):  # classes too (folder names beside the masks)
            words.append(f"classes {', '.join(classes)}")
        return " · ".join(words)

    @property
    def segmentation_labels(self) -> list[tuple[int, str]]:
        """Each label value the masks hold, with its name, by value. 0 (background) is always first: a model predicts
        it even where every mask covers its whole image."""
        values = sorted({0, *(int(v) for v in self.mask_values)})
        return [(value, self.label_names.get(str(value)) or default_label_name(value)) for value in values]

    @property
    def unnamed_label_values(self) -> list[int]:
        """Label values the masks hold that label_names does not name; 0 is background without a name."""
        return sorted(int(v) for v in self.mask_values if int(v) != 0 and str(int(v)) not in self.label_names)

    @property
    def is_merge(self) -> bool:
        return bool(self.label_mapping) or self.merged_from.exists()

    @property
    def job_task(self) -> str:
        """The worker task that builds this dataset's samples."""
        if self.pipeline_version_id:
            return "workers.tasks.preprocess_dataset"
        return "workers.tasks.merge_datasets" if self.is_merge else "workers.tasks.ingest_dataset"


def default_label_name(value: int) -> str:
    """The name of a label value no one has named."""
    return "background" if value == 0 else f"label {value}"


WIDE_INTEGERS = ("int16", "uint16", "int32", "uint32", "int64", "uint64")


def real_intensities(image_dtypes: set[str], floats_are_real: bool) -> bool:
    """Whether 2D images of these stored dtypes hold more than 8-bit values (integers wider than a byte, or floats
    where they are real)."""
    return any(d in WIDE_INTEGERS for d in image_dtypes) or (floats_are_real and any(d.startswith("float") for d in image_dtypes))


class Sample(models.Model):
    """One image or volume. File paths are relative to the project's folder, so merges share files."""

    class Kind(models.TextChoices):
        IMAGE = "image", "2D image"
        VOLUME = "volume", "3D volume"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="samples")
    # The dataset whose upload brought the sample in (itself, unless this one is a merge).
    # RESTRICT: a dataset deletes its own samples, but not while a merge still indexes them.
    source_dataset = models.ForeignKey(Dataset, on_delete=models.RESTRICT, related_name="ingested_samples")
    label = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.IMAGE)
    modality = models.CharField(max_length=20, blank=True)
    patient = models.CharField(max_length=64, blank=True, help_text="Pseudonym when the project de-identifies.")
    study_uid = models.CharField(max_length=64, blank=True)
    series_uid = models.CharField(max_length=64, blank=True)
    source_path = models.CharField(max_length=1024, help_text="Path of the file (or series folder) in the upload.")
    files = models.JSONField(default=list, help_text="Upload paths of every file of the sample (slices of a series).")
    array = models.CharField(max_length=512, help_text="Decoded pixels (.npy).")
    original = models.CharField(max_length=512, blank=True, help_text="What is kept of the uploaded file besides its pixels: a DICOM file's de-identified header (every attribute but the pixel data), or the uploaded picture when the project does not de-identify.")
    mask = models.CharField(max_length=512, blank=True)
    cache_index = models.PositiveIntegerField(null=True, blank=True)
    depth = models.PositiveIntegerField(default=1)
    height = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    dtype = models.CharField(max_length=16, blank=True)
    spacing = models.JSONField(default=list, help_text="Pixel (row, column) or voxel (slice, row, column) spacing in mm.")
    meta = models.JSONField(default=dict, help_text="Rescale, window, orientation and other display facts.")
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "cache_index"], name="unique_cache_index",
                                    condition=models.Q(cache_index__isnull=False)),
        ]
        indexes = [
            models.Index(fields=["dataset", "id"]),
            models.Index(fields=["dataset", "label", "id"]),
            models.Index(fields=["dataset", "patient", "id"]),
        ]

    @property
    def project_dir(self):
        return self.dataset.project.storage_dir

    @property
    def thumbnail_path(self):
        """Made on first request; shared by every dataset that indexes this sample."""
        return self.project_dir / "datasets" / str(self.source_dataset_id) / "thumbnails" / f"{self.sha256[:24]}.png"


class IngestReportEntry(models.Model):
    """The outcome of one file of an upload. Also the ingest's journal: a resumed ingest skips these."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        SKIPPED = "skipped", "Skipped"
        QUARANTINED = "quarantined", "Quarantined"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="report")
    index = models.PositiveIntegerField(help_text="Position of the file in the upload's stable order.")
    path = models.CharField(max_length=1024)
    status = models.CharField(max_length=20, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["dataset", "index"], name="one_outcome_per_file")]
        indexes = [models.Index(fields=["dataset", "status", "index"])]


class Partition(models.Model):
    class Method(models.TextChoices):
        PERCENTAGES = "percentages", "Percentages, stratified by label, patients kept whole"
        KFOLD = "kfold", "One fold of a k-fold cross-validation"
        COLUMN = "column", "Taken from a table column"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="partitions")
    name = models.CharField(max_length=200)
    method = models.CharField(max_length=20, choices=Method.choices, default=Method.PERCENTAGES)
    folds = models.PositiveSmallIntegerField(default=0, help_text="k, for a k-fold partition.")
    fold = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Which fold (1..k) is the validation subset.")
    column = models.CharField(max_length=200, blank=True, help_text="The table column the subsets came from.")
    leaking_patients = models.JSONField(default=dict, blank=True, help_text="{patient: [subsets]} for patients in more than one subset.")
    train_percent = models.FloatField()
    validation_percent = models.FloatField()
    test_percent = models.FloatField()
    seed = models.IntegerField()
    stratified = models.BooleanField(default=True)
    counts = models.JSONField(default=dict, help_text="{subset: {label: count}}")
    patients = models.JSONField(default=dict, blank=True, help_text="{subset: number of patients}; samples without a patient ID are not counted.")
    samples_without_patient = models.PositiveIntegerField(
        default=0, help_text="Samples with no patient ID, each placed on its own (when all are: the split is by image).")
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

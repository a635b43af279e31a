import math

from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlanMixin
from backend.core.errors import ServiceError, int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.core.jobs import JOB_FIELDS, JobSerializer
from backend.projects.access import projects_for
from workers.engine.splits import SUBSETS

from . import tables, viewer
from .label_names import set_label_names
from .models import Dataset, IngestReportEntry, Partition, Sample
from .planning import plan_in_words, plan_of
from .services import (
    create_column_partition,
    create_dataset_from_upload,
    create_kfold_partitions,
    create_partition,
    dataset_deletion,
    datasets_for,
    delete_dataset,
    delete_partition,
    merge_datasets,
    partition_deletion,
    partitions_for,
    preview_partition,
    request_ingest_stop,
)


class DatasetSerializer(JobSerializer):
    num_samples = serializers.IntegerField(read_only=True)
    merged_from = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    pipeline = serializers.SerializerMethodField(help_text="For a derived dataset: the pipeline version that made it.")
    label_names = serializers.DictField(child=serializers.CharField(), read_only=True,
                                        help_text='{label value as text: name} of a segmentation\'s masks, e.g. {"0": "background", "1": "liver"}.')
    unnamed_label_values = serializers.ListField(child=serializers.IntegerField(), read_only=True,
                                                 help_text="Label values the masks hold that have no name (0, the background, excepted).")

    class Meta:
        model = Dataset
        fields = [
            "id", "project", "name", *JOB_FIELDS, "upload_name", "labels_from", "task", "modalities",
            "num_samples", "patient_count", "size_bytes", "class_counts", "masked_count", "mask_values", "label_names",
            "unnamed_label_values", "channels", "height", "width", "merged_from", "label_mapping", "derived_from", "pipeline", "created_at",
        ]
        read_only_fields = fields

    def get_pipeline(self, dataset) -> dict | None:
        version = dataset.pipeline_version
        if version is None:
            return None
        return {"id": version.pipeline_id, "name": version.pipeline.name, "version": version.number}


class LabelNamesField(serializers.DictField):
    """{value as text: name}; a name that is not text is refused here, under the field's own name (DictField would
    say it under 'label_names.<key>'). What the values and names must be is the service's to say."""

    child = serializers.CharField(allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data):
        if isinstance(data, dict) and any(not isinstance(name, str) for name in data.values()):
            raise serializers.ValidationError('Each name must be text, e.g. {"1": "liver"}.')
        return super().to_internal_value(data)


class DatasetChangeSerializer(serializers.Serializer):
    label_names = LabelNamesField(
        required=False,
        help_text='The names of the label values the masks hold, all of them: {value as text: name}, e.g. {"0": "background", '
                  '"1": "liver", "2": "tumour"}. Replaces the names kept before; 0 may be renamed.')


class UploadSerializer(serializers.Serializer):
    project = OwnedPrimaryKeyField(scope=projects_for, model_name="project")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), allow_empty=False,
        help_text="One or more files: DICOM, NIfTI (.nii, .nii.gz), PNG, JPEG, BMP, PGM/PPM, TIFF, or zip archives of them.",
        error_messages={"required": "Choose files, a folder or a zip archive to upload.", "empty": "Choose files, a folder or a zip archive to upload."},
    )
    paths = serializers.ListField(
        child=serializers.CharField(max_length=1024), required=False,
        help_text="Relative path of each file (same order as files), e.g. 'NORMAL/img1.png': folder names can be labels.",
    )
    labels_from = serializers.ChoiceField(choices=Dataset.LabelsFrom.choices, default=Dataset.LabelsFrom.FOLDERS)


class WarningSerializer(serializers.Serializer):
    path = serializers.CharField()
    reason = serializers.CharField()


class UploadResponseSerializer(DatasetSerializer):
    warnings = WarningSerializer(many=True, read_only=True)

    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["warnings"]


class MergeSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    datasets = serializers.ListField(child=OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset"), min_length=2,
                                     error_messages={"min_length": "Choose at least two datasets to merge."})
    label_mapping = serializers.DictField(child=serializers.CharField(max_length=100, allow_blank=True), required=False,
                                          help_text='Rename labels on the way in, e.g. {"PNEUMONIA": "pneumonia"}.')


class SampleSerializer(serializers.ModelSerializer):
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = ["id", "label", "kind", "modality", "patient", "source_dataset", "source_path", "depth", "height", "width",
                  "channels", "has_mask", "thumbnail_url"]
        read_only_fields = fields

    has_mask = serializers.SerializerMethodField()

    def get_thumbnail_url(self, sample) -> str:
        return f"/api/samples/{sample.pk}/thumbnail/"

    def get_has_mask(self, sample) -> bool:
        return bool(sample.mask)


class SampleDetailSerializer(SampleSerializer):
    dataset = serializers.IntegerField(source="dataset_id", read_only=True)
    display = serializers.SerializerMethodField(help_text="Planes per axis, frames, and the default window.")

    class Meta(SampleSerializer.Meta):
        fields = SampleSerializer.Meta.fields + ["dataset", "study_uid", "series_uid", "files", "dtype", "spacing", "meta", "display"]
        read_only_fields = fields

    def get_display(self, sample) -> dict:
        return viewer.display_facts(sample)


class TagSerializer(serializers.Serializer):
    tag = serializers.CharField()
    name = serializers.CharField()
    value = serializers.CharField()
    depth = serializers.IntegerField(help_text="0 for the dataset's own attributes, 1 for those of a sequence's items, and so on.")


class ReportEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = IngestReportEntry
        fields = ["index", "path", "status", "reason"]
        read_only_fields = fields


class TableJoinSerializer(serializers.Serializer):
    table = serializers.FileField(help_text="A .csv or .xlsx file with a header row.")
    column = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="The table column that points at samples (leave empty to get the columns first).")
    image_key = serializers.ChoiceField(choices=list(tables.IMAGE_KEYS.items()), default="file_name", help_text="What that column holds.")
    label_column = serializers.CharField(required=False, allow_blank=True, default="")
    identifier_columns = serializers.ListField(child=serializers.CharField(), required=False, default=list,
                                               help_text="Columns to pseudonymise like the images' patient IDs.")

    def join(self) -> tables.TableJoin:
        data = self.validated_data
        return tables.TableJoin(data["column"], data["image_key"], data["label_column"], data["identifier_columns"])


class TablePreviewSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.IntegerField()
    samples = serializers.IntegerField()
    matched_samples = serializers.IntegerField()
    unmatched_samples = serializers.IntegerField()
    unmatched_sample_examples = serializers.ListField(child=serializers.CharField())
    unmatched_rows = serializers.IntegerField()
    unmatched_row_examples = serializers.ListField(child=serializers.CharField())
    label_counts = serializers.DictField(child=serializers.IntegerField())
    conflicts = serializers.IntegerField(help_text="Samples whose matching rows give different labels (left as they were).")
    head = serializers.ListField(child=serializers.DictField())


class TableApplySerializer(serializers.Serializer):
    matched_samples = serializers.IntegerField()
    labelled_samples = serializers.IntegerField()
    label_counts = serializers.DictField(child=serializers.IntegerField())


SAMPLE_FILTERS = [
    OpenApiParameter("label", str, description="Only samples with this label ('' for unlabelled)."),
    OpenApiParameter("patient", str, description="Only this patient's samples (pseudonym)."),
    OpenApiParameter("source", int, description="Only samples that came from this dataset (merged datasets)."),
    OpenApiParameter("partition", int, description="With subset: only the samples of one subset of this partition."),
    OpenApiParameter("subset", str, enum=["train", "validation", "test"]),
    OpenApiParameter("kind", str, enum=["image", "volume"]),
]


class PlanRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    setting = serializers.CharField()
    value = serializers.CharField()
    why = serializers.CharField()


class PlanSerializer(serializers.Serializer):
    fingerprint = serializers.JSONField(help_text="Spacings, shapes, modalities and foreground intensity statistics of the volumes.")
    plan = serializers.JSONField(help_text="target_spacing, normalisation (clip, mean, std for CT), patch_size, batch_size, "
                                          "reasons; {} for 2D images.")
    in_words = PlanRowSerializer(many=True)


class DatasetViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Datasets come from uploads (files, folders, zips) ingested by a worker, or from merging others."""

    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        queryset = datasets_for(self.request.user).prefetch_related("merged_from")
        project = int_query_param(self.request, "project") if self.action == "list" else None
        return queryset if project is None else queryset.filter(project_id=project)

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses={202: UploadResponseSerializer})
    def create(self, request):
        upload = UploadSerializer(data=request.data, context={"request": request})
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        dataset, warnings = create_dataset_from_upload(
            data["project"], data.get("name", ""), data["files"], request.user, paths=data.get("paths", []), labels_from=data["labels_from"])
        body = DatasetSerializer(dataset).data
        body["warnings"] = warnings
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=MergeSerializer, responses={202: DatasetSerializer})
    @action(detail=False, methods=["post"], parser_classes=[JSONParser])
    def merge(self, request):
        """A new dataset indexing the samples of two or more compatible datasets (no copying), labels mapped."""
        merge = MergeSerializer(data=request.data, context={"request": request})
        merge.is_valid(raise_exception=True)
        data = merge.validated_data
        merged = merge_datasets(request.user, data.get("name", ""), data["datasets"], data.get("label_mapping", {}))
        return Response(DatasetSerializer(merged).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's datasets.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        dataset = self.get_object()
        record(request.user, dataset.project, Action.READ, dataset)
        return Response(self.get_serializer(dataset).data)

    def get_parsers(self):
        """An upload is multipart; a change (PATCH) is JSON."""
        if getattr(self, "request", None) is not None and self.request.method == "PATCH":
            return [JSONParser()]
        return super().get_parsers()

    @extend_schema(request=DatasetChangeSerializer, responses=DatasetSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Name the label values of a segmentation dataset's masks. Refused (400, field label_names), with nothing
        saved, for a value that is not a whole number or that no mask holds, and an empty, duplicate or too long name."""
        dataset = self.get_object()
        change = DatasetChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        if "label_names" in change.validated_data:
            dataset = set_label_names(request.user, dataset, change.validated_data["label_names"])
        return Response(DatasetSerializer(dataset).data)

    def deletion_plan(self, user, dataset):
        return dataset_deletion(dataset)

    def delete_thing(self, user, dataset, with_runs):
        delete_dataset(user, dataset, with_runs)

    @extend_schema(request=None, responses={202: DatasetSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop an ingest or merge in progress; nothing of it is kept."""
        return Response(DatasetSerializer(request_ingest_stop(request.user, self.get_object())).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=SampleSerializer(many=True), parameters=SAMPLE_FILTERS)
    @action(detail=True, methods=["get"])
    def samples(self, request, pk=None):
        """The dataset's samples, paginated, filtered by label, patient, source, subset or kind."""
        dataset = self.get_object()
        record(request.user, dataset.project, Action.READ, dataset)
        page = self.paginate_queryset(filter_samples(dataset, request))
        return self.get_paginated_response(SampleSerializer(page, many=True).data)

    @extend_schema(responses=ReportEntrySerializer(many=True), parameters=[
        OpenApiParameter("status", str, many=True, explode=True, enum=[c for c, _ in IngestReportEntry.Outcome.choices],
                         description="Only files with these outcomes (repeat the parameter for several).")])
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """Every file of the upload with its outcome (accepted, rejected, skipped, quarantined) and the reason."""
        entries = self.get_object().report.all()
        outcomes = [o for o in request.query_params.getlist("status") if o]
        if outcomes:
            if set(outcomes) - set(IngestReportEntry.Outcome.values):
                raise ServiceError(f"status must be one of {', '.join(IngestReportEntry.Outcome.values)}.", field="status")
            entries = entries.filter(status__in=outcomes)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(ReportEntrySerializer(page, many=True).data)

    @extend_schema(responses=PlanSerializer)
    @action(detail=True, methods=["get"])
    def plan(self, request, pk=None):
        """The plan a run on this dataset's volumes starts from (nnU-Net's rules over the dataset's fingerprint), each
        value with why it was chosen; empty for a dataset of 2D images. A run may change any value (spec data.plan)."""
        dataset = self.get_object()
        plan = plan_of(dataset)
        return Response({"fingerprint": dataset.fingerprint, "plan": plan, "in_words": plan_in_words(plan) if plan else []})

    @extend_schema(request={"multipart/form-data": TableJoinSerializer}, responses=TablePreviewSerializer)
    @action(detail=True, methods=["post"], url_path="table/preview")
    def table_preview(self, request, pk=None):
        """Join a table to the samples and say what would happen (matched, unmatched both ways, labels). Writes nothing."""
        join = TableJoinSerializer(data=request.data)
        join.is_valid(raise_exception=True)
        return Response(tables.preview(request.user, self.get_object(), join.validated_data["table"], join.join()))

    @extend_schema(request={"multipart/form-data": TableJoinSerializer}, responses=TableApplySerializer)
    @action(detail=True, methods=["post"], url_path="table/apply")
    def table_apply(self, request, pk=None):
        """Join a table to the samples and take their labels from it."""
        join = TableJoinSerializer(data=request.data)
        join.is_valid(raise_exception=True)
        return Response(tables.apply(request.user, self.get_object(), join.validated_data["table"], join.join()))


def filter_samples(dataset: Dataset, request):
    samples = dataset.samples.all()
    params = request.query_params
    if "label" in params:
        samples = samples.filter(label=params["label"])
    if params.get("patient"):
        samples = samples.filter(patient=params["patient"])
    if params.get("kind"):
        if params["kind"] not in Sample.Kind.values:
            raise ServiceError("kind must be image or volume.", field="kind")
        samples = samples.filter(kind=params["kind"])
    source = int_query_param(request, "source")
    if source is not None:
        samples = samples.filter(source_dataset_id=source)
    partition = int_query_param(request, "partition")
    if partition is not None or params.get("subset"):
        if partition is None or params.get("subset") not in SUBSETS:
            raise ServiceError(f"Give partition (an id) and subset ({', '.join(SUBSETS)}) together.", field="subset")
        if not dataset.partitions.filter(pk=partition).exists():
            raise ServiceError(f"This dataset has no partition {partition}.", field="partition")
        samples = samples.filter(partitionmember__partition_id=partition, partitionmember__subset=params["subset"])
    return samples


class SampleViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SampleDetailSerializer

    def get_queryset(self):
        return Sample.objects.filter(dataset__in=datasets_for(self.request.user)).select_related("dataset__project")

    def retrieve(self, request, *args, **kwargs):
        sample = self.get_object()
        record(request.user, sample.dataset.project, Action.READ, sample.dataset)
        return Response(self.get_serializer(sample).data)

    @extend_schema(responses={(200, "image/png"): bytes})
    @action(detail=True, methods=["get"])
    def thumbnail(self, request, pk=None):
        """A PNG thumbnail (at most 128 px) of the sample; the middle slice of a volume."""
        response = FileResponse(open(viewer.thumbnail(self.get_object()), "rb"), content_type="image/png")
        response["Cache-Control"] = "private, max-age=86400"
        return response

    @extend_schema(responses={(200, "image/png"): bytes}, parameters=[
        OpenApiParameter("axis", str, enum=["axial", "coronal", "sagittal"], description="Plane (2D images: axial only)."),
        OpenApiParameter("index", int, description="Plane number along the axis (default: the middle)."),
        OpenApiParameter("center", float, description="Window center in modality units (HU for CT)."),
        OpenApiParameter("width", float, description="Window width; give both or neither."),
        OpenApiParameter("frame", int, description="Frame of a 4D volume (default 0)."),
        OpenApiParameter("mask", bool, description="Overlay the segmentation mask."),
    ])
    @action(detail=True, methods=["get"], url_path="slice")
    def slice_png(self, request, pk=None):
        """One plane of the sample as PNG, with window/level and the mask overlaid."""
        params = request.query_params
        png, used, count = viewer.render(
            self.get_object(), axis=params.get("axis", "axial"), index=int_query_param(request, "index"),
            center=float_query_param(request, "center"), width=float_query_param(request, "width"),
            frame=int_query_param(request, "frame") or 0, with_mask=params.get("mask") in ("1", "true", "yes"),
        )
        response = HttpResponse(png, content_type="image/png")
        response["X-Plane-Index"], response["X-Plane-Count"] = str(used), str(count)
        return response

    @extend_schema(responses=TagSerializer(many=True))
    @action(detail=True, methods=["get"])
    def tags(self, request, pk=None):
        """The stored header of the sample, after de-identification."""
        return Response(viewer.tags(self.get_object()))


def float_query_param(request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ServiceError(f"'{name}' must be a number.", field=name)
    if not math.isfinite(value):
        raise ServiceError(f"'{name}' must be a finite number.", field=name)
    return value


class PartitionSerializer(serializers.ModelSerializer):
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    train_percent = serializers.FloatField(default=70)
    validation_percent = serializers.FloatField(default=15)
    test_percent = serializers.FloatField(default=15)
    seed = serializers.IntegerField(default=42, min_value=0, max_value=2**31 - 1)
    method = serializers.ChoiceField(choices=[Partition.Method.PERCENTAGES, Partition.Method.COLUMN], default=Partition.Method.PERCENTAGES,
                                     help_text="percentages (stratified, patients kept whole) or column (from a joined table); "
                                               "k-fold partitions are made by POST /api/partitions/kfold/.")
    column = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                   help_text="For method=column: the table column holding train / validation / test.")

    class Meta:
        model = Partition
        fields = ["id", "dataset", "name", "method", "train_percent", "validation_percent", "test_percent", "seed", "folds", "fold",
                  "column", "stratified", "counts", "patients", "samples_without_patient", "leaking_patients", "created_at"]
        read_only_fields = ["stratified", "counts", "patients", "samples_without_patient", "folds", "fold", "leaking_patients", "created_at"]


class PartitionPreviewSerializer(serializers.Serializer):
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset")
    train_percent = serializers.FloatField(default=70)
    validation_percent = serializers.FloatField(default=15)
    test_percent = serializers.FloatField(default=15)
    seed = serializers.IntegerField(default=42, min_value=0, max_value=2**31 - 1)


class SubsetPreviewSerializer(serializers.Serializer):
    samples = serializers.IntegerField()
    patients = serializers.IntegerField(help_text="Patients in the subset; samples without a patient ID are not counted.")
    percent = serializers.FloatField(help_text="Its share of the samples, to one decimal.")
    asked = serializers.FloatField(help_text="The percentage asked for it.")
    labels = serializers.DictField(child=serializers.IntegerField(), help_text="{label: samples}")


class PreviewProblemSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="{subset: samples}")
    patients = serializers.DictField(child=serializers.IntegerField(), help_text="{subset: patients}")


class ExistingPartitionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class PartitionPreviewResultSerializer(serializers.Serializer):
    samples = serializers.IntegerField()
    patients = serializers.IntegerField(help_text="Distinct patient IDs in the dataset.")
    samples_without_patient = serializers.IntegerField(help_text="Samples with no patient ID: each is placed on its own.")
    grouped_by = serializers.ChoiceField(choices=["patient", "patient where known", "image"])
    subsets = serializers.DictField(child=SubsetPreviewSerializer(), help_text="train, validation and test.")
    summary = serializers.CharField(help_text="'train 48 · validation 24 · test 0 samples (6 patients: 4/2/0)'")
    warnings = serializers.ListField(child=serializers.CharField(), help_text="Far from the percentages asked; split by image.")
    refusals = PreviewProblemSerializer(many=True, help_text="What POST /api/partitions/ would refuse: an asked-for subset left empty.")
    existing = ExistingPartitionSerializer(allow_null=True, help_text="The same partition, made before: POST would refuse it.")


class KFoldSerializer(serializers.Serializer):
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset")
    name = serializers.CharField(max_length=180, required=False, allow_blank=True)
    folds = serializers.IntegerField(default=5, min_value=2, max_value=20)
    seed = serializers.IntegerField(default=42, min_value=0, max_value=2**31 - 1)


class PartitionViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Train / validation / test partitions, stratified by label and reproducible from the seed."""

    serializer_class = PartitionSerializer

    def get_queryset(self):
        queryset = partitions_for(self.request.user)
        dataset = int_query_param(self.request, "dataset") if self.action == "list" else None
        return queryset if dataset is None else queryset.filter(dataset_id=dataset)

    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="Only this dataset's partitions.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def deletion_plan(self, user, partition):
        return partition_deletion(partition)

    def delete_thing(self, user, partition, with_runs):
        delete_partition(user, partition, with_runs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        if data["method"] == Partition.Method.COLUMN:
            if not data.get("column", "").strip():
                raise ServiceError("Name the table column that holds each sample's subset.", field="column")
            serializer.instance = create_column_partition(self.request.user, data["dataset"], data.get("name", ""), data["column"].strip())
            return
        serializer.instance = create_partition(
            self.request.user, data["dataset"], data.get("name", ""), data["train_percent"], data["validation_percent"], data["test_percent"], data["seed"]
        )

    @extend_schema(request=PartitionPreviewSerializer, responses={200: PartitionPreviewResultSerializer})
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """What POST /api/partitions/ (method percentages) would make, without making it: samples and patients per
        subset, warnings, the refusals it would answer and the same partition made before. Nothing is stored."""
        asked = PartitionPreviewSerializer(data=request.data, context={"request": request})
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        return Response(preview_partition(request.user, data["dataset"], data["train_percent"], data["validation_percent"],
                                          data["test_percent"], data["seed"]))

    @extend_schema(request=KFoldSerializer, responses={201: PartitionSerializer(many=True)})
    @action(detail=False, methods=["post"])
    def kfold(self, request):
        """k partitions of one cross-validation (fold i validates, the rest train), patients kept whole."""
        asked = KFoldSerializer(data=request.data, context={"request": request})
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        partitions = create_kfold_partitions(request.user, data["dataset"], data.get("name", ""), data["folds"], data["seed"])
        return Response(PartitionSerializer(partitions, many=True).data, status=status.HTTP_201_CREATED)

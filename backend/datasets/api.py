from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.errors import ServiceError, int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.projects.services import projects_for

from .models import Dataset, IngestReportEntry, Partition, Sample
from .services import (
    create_dataset_from_upload,
    create_partition,
    datasets_for,
    delete_dataset,
    partitions_for,
    request_ingest_stop,
)


class DatasetSerializer(serializers.ModelSerializer):
    num_samples = serializers.IntegerField(read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id", "project", "name", "status", "message", "upload_name", "progress", "progress_done",
            "progress_total", "num_samples", "class_counts", "channels", "height", "width",
            "created_at", "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, dataset) -> float:
        if dataset.status == Dataset.Status.READY:
            return 1.0
        return dataset.progress_done / dataset.progress_total if dataset.progress_total else 0.0


class UploadSerializer(serializers.Serializer):
    project = OwnedPrimaryKeyField(scope=projects_for, model_name="project")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    archive = serializers.FileField(help_text="A .zip with one folder per class holding the images.",
                                    error_messages={"required": "Choose a zip file to upload.", "empty": "The uploaded file is empty."})


class WarningSerializer(serializers.Serializer):
    path = serializers.CharField()
    reason = serializers.CharField()


class UploadResponseSerializer(DatasetSerializer):
    warnings = WarningSerializer(many=True, read_only=True)

    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["warnings"]


class SampleSerializer(serializers.ModelSerializer):
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = ["id", "label", "source_path", "width", "height", "channels", "thumbnail_url"]
        read_only_fields = fields

    def get_thumbnail_url(self, sample) -> str:
        return f"/api/samples/{sample.pk}/thumbnail/"


class ReportEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = IngestReportEntry
        fields = ["path", "status", "reason"]
        read_only_fields = fields


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Datasets are created by uploading a zip; a worker ingests it in the background."""

    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        queryset = datasets_for(self.request.user)
        project = int_query_param(self.request, "project") if self.action == "list" else None
        return queryset if project is None else queryset.filter(project_id=project)

    @extend_schema(
        request=UploadSerializer, responses={202: UploadResponseSerializer},
        parameters=[OpenApiParameter("project", int, description="Only this project's datasets.")],
    )
    def create(self, request):
        upload = UploadSerializer(data=request.data, context={"request": request})
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        dataset, warnings = create_dataset_from_upload(data["project"], data.get("name", ""), data["archive"], request.user)
        body = DatasetSerializer(dataset).data
        body["warnings"] = warnings
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's datasets.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        dataset = self.get_object()
        record(request.user, dataset.project, Action.READ, dataset)
        return Response(self.get_serializer(dataset).data)

    def perform_destroy(self, dataset):
        delete_dataset(self.request.user, dataset)

    @extend_schema(request=None, responses={202: DatasetSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop an ingest in progress; nothing of it is kept."""
        return Response(DatasetSerializer(request_ingest_stop(request.user, self.get_object())).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=SampleSerializer(many=True), parameters=[OpenApiParameter("label", str, description="Only samples with this label.")])
    @action(detail=True, methods=["get"])
    def samples(self, request, pk=None):
        """The dataset's samples, paginated, optionally filtered by label."""
        dataset = self.get_object()
        record(request.user, dataset.project, Action.READ, dataset)
        samples = dataset.samples.all()
        label = request.query_params.get("label")
        if label:
            samples = samples.filter(label=label)
        page = self.paginate_queryset(samples)
        return self.get_paginated_response(SampleSerializer(page, many=True).data)

    @extend_schema(responses=ReportEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """Every file of the upload that was rejected, skipped or changed, with the reason."""
        page = self.paginate_queryset(self.get_object().report.all())
        return self.get_paginated_response(ReportEntrySerializer(page, many=True).data)


class SampleViewSet(viewsets.GenericViewSet):
    queryset = Sample.objects.none()

    def get_queryset(self):
        return Sample.objects.filter(dataset__in=datasets_for(self.request.user)).select_related("dataset__project")

    @extend_schema(responses={(200, "image/png"): bytes})
    @action(detail=True, methods=["get"])
    def thumbnail(self, request, pk=None):
        """A PNG thumbnail (at most 128 px) of the sample."""
        sample = self.get_object()
        path = sample.dataset.storage_dir / sample.thumbnail
        if not path.is_file():
            raise ServiceError("The thumbnail file is missing from storage; ingest the dataset again to rebuild it.",
                               code="file_missing", status_code=404)
        response = FileResponse(open(path, "rb"), content_type="image/png")
        response["Cache-Control"] = "private, max-age=86400"
        return response


class PartitionSerializer(serializers.ModelSerializer):
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    train_percent = serializers.FloatField(default=70)
    validation_percent = serializers.FloatField(default=15)
    test_percent = serializers.FloatField(default=15)
    seed = serializers.IntegerField(default=42, min_value=0, max_value=2**31 - 1)

    class Meta:
        model = Partition
        fields = ["id", "dataset", "name", "train_percent", "validation_percent", "test_percent", "seed", "stratified", "counts", "created_at"]
        read_only_fields = ["stratified", "counts", "created_at"]


class PartitionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Train / validation / test partitions, stratified by label and reproducible from the seed."""

    serializer_class = PartitionSerializer

    def get_queryset(self):
        queryset = partitions_for(self.request.user)
        dataset = int_query_param(self.request, "dataset") if self.action == "list" else None
        return queryset if dataset is None else queryset.filter(dataset_id=dataset)

    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="Only this dataset's partitions.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = create_partition(
            self.request.user, data["dataset"], data.get("name", ""), data["train_percent"], data["validation_percent"], data["test_percent"], data["seed"]
        )

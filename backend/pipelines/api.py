"""Operations, pipelines and tables of measures over REST: the registry's schema, versioned pipelines, previews, aggregations."""
import re

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlanMixin
from backend.core.errors import ServiceError, int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.core.jobs import JOB_FIELDS, JobSerializer
from backend.datasets.api import DatasetSerializer
from backend.datasets.services import datasets_for
from backend.projects.access import projects_for
from backend.projects.models import Project
from workers.engine.params import PARAM_KINDS
from workers.engine.pipelines.measures import schemas as measure_schemas

from . import export, preview
from .models import Aggregation, AggregationRow, Pipeline, PipelineVersion
from .services import (
    aggregation_deletion,
    aggregations_for,
    create_pipeline,
    delete_aggregation,
    delete_pipeline,
    operation_schemas,
    pipeline_deletion,
    pipelines_for,
    run_preprocessing,
    start_aggregation,
    stop_aggregation,
    update_pipeline,
)


class ParamSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField(help_text="What a form shows.")
    kind = serializers.ChoiceField(choices=PARAM_KINDS)
    default = serializers.JSONField()
    help = serializers.CharField()
    minimum = serializers.FloatField(required=False)
    maximum = serializers.FloatField(required=False)
    choices = serializers.ListField(child=serializers.CharField(), required=False)


class OperationSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    category = serializers.ChoiceField(choices=Pipeline.Kind.choices)
    help = serializers.CharField()
    dims = serializers.ListField(child=serializers.IntegerField(), help_text="2 for 2D images, 3 for volumes.")
    random = serializers.BooleanField(help_text="Draws random values (reproducible from a seed).")
    params = ParamSchemaSerializer(many=True)


class OperationList(APIView):
    """Every operation a pipeline can hold, with its parameters (type, range, default, help)."""

    @extend_schema(responses=OperationSchemaSerializer(many=True))
    def get(self, request):
        return Response(operation_schemas())


class MeasureSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    unit = serializers.CharField(help_text="ml, mm², voxels, or empty for the image's own intensity unit.")
    needs_mask = serializers.BooleanField(help_text="Taken inside the sample's mask; samples without one say so in the table.")


class MeasureList(APIView):
    """Every measure an aggregation pipeline can take on each sample."""

    @extend_schema(responses=MeasureSchemaSerializer(many=True))
    def get(self, request):
        return Response(measure_schemas())


class StepSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="An operation's name (GET /api/operations/).")
    params = serializers.DictField(required=False, help_text="Parameter values; missing ones take their defaults.")


class VersionSerializer(serializers.ModelSerializer):
    used = serializers.SerializerMethodField()

    class Meta:
        model = PipelineVersion
        fields = ["number", "steps", "measures", "used", "used_at", "created_at"]
        read_only_fields = fields

    def get_used(self, version) -> bool:
        return version.used_at is not None


class PipelineSerializer(serializers.ModelSerializer):
    steps = StepSerializer(many=True, write_only=True, help_text="The operations in order.")
    measures = serializers.ListField(child=serializers.CharField(), write_only=True, required=False,
                                     help_text="Aggregation pipelines: what to measure after the steps (GET /api/measures/).")
    versions = VersionSerializer(many=True, read_only=True)
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.none())

    class Meta:
        model = Pipeline
        fields = ["id", "project", "name", "kind", "steps", "measures", "versions", "created_at"]
        read_only_fields = ["id", "versions", "created_at"]
        validators = []  # a name taken in the project is the service's to explain

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["project"].queryset = projects_for(request.user)
        if self.instance is not None and not isinstance(self.instance, list):
            self.fields["project"].read_only = True
            self.fields["kind"].read_only = True


class PreviewRequestSerializer(serializers.Serializer):
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset", help_text="Whose samples to show.")
    steps = StepSerializer(many=True)
    seed = serializers.IntegerField(default=0, min_value=0, max_value=2**31 - 1, help_text="Change it to draw new random values.")
    count = serializers.IntegerField(default=8, min_value=1, max_value=16)


class RunRequestSerializer(serializers.Serializer):
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset", help_text="The dataset to preprocess.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text="The derived dataset's name.")


class PreviewItemSerializer(serializers.Serializer):
    sample = serializers.IntegerField()
    label = serializers.CharField()
    before = serializers.CharField(help_text="PNG as a data URL.")
    after = serializers.CharField(help_text="PNG as a data URL; empty when the pipeline failed on this sample.")
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="Shape after the pipeline (channels first).")
    error = serializers.CharField(help_text="Why the pipeline failed on this sample; empty when it did not.")


class PipelineViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                      mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Pipelines of operations. Saving new steps into a version that a run or a derived dataset used makes a new version."""

    serializer_class = PipelineSerializer

    def get_queryset(self):
        queryset = pipelines_for(self.request.user).prefetch_related("versions")
        project = int_query_param(self.request, "project") if self.action == "list" else None
        return queryset if project is None else queryset.filter(project_id=project)

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's pipelines.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        pipeline = self.get_object()
        record(request.user, pipeline.project, Action.READ, pipeline)
        return Response(self.get_serializer(pipeline).data)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = create_pipeline(self.request.user, data["project"], data["name"], data.get("kind", Pipeline.Kind.AUGMENTATION),
                                              self.initial_steps(), data.get("measures"))

    def perform_update(self, serializer):
        pipeline = serializer.instance
        steps = self.initial_steps() if "steps" in self.request.data else pipeline.latest.steps
        update_pipeline(self.request.user, pipeline, steps, serializer.validated_data.get("name"), serializer.validated_data.get("measures"))
        serializer.instance = Pipeline.objects.prefetch_related("versions").get(pk=pipeline.pk)

    def initial_steps(self):
        # The raw steps, not the serializer's: the service reports problems per step in its own words.
        return self.request.data.get("steps", [])

    def deletion_plan(self, user, pipeline):
        return pipeline_deletion(pipeline)

    def delete_thing(self, user, pipeline, with_runs):
        delete_pipeline(user, pipeline, with_runs)

    @extend_schema(request=RunRequestSerializer, responses={202: DatasetSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Runs the latest version of a preprocessing pipeline over a dataset: a worker makes a derived dataset."""
        pipeline = self.get_object()  # strangers learn nothing: 404 before the body is read
        asked = RunRequestSerializer(data=request.data, context={"request": request})
        asked.is_valid(raise_exception=True)
        derived = run_preprocessing(request.user, pipeline, asked.validated_data["dataset"], asked.validated_data.get("name", ""))
        return Response(DatasetSerializer(derived).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=PreviewRequestSerializer, responses=PreviewItemSerializer(many=True))
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """Applies steps (saved or not) to a few of a dataset's samples and returns them before and after."""
        asked = PreviewRequestSerializer(data=request.data, context={"request": request})
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        items = preview.preview(request.user, data["dataset"], request.data.get("steps", []), data["seed"], data["count"])
        return Response(items, status=status.HTTP_200_OK)


class AggregationSerializer(JobSerializer):
    pipeline = serializers.SerializerMethodField(help_text="The aggregation pipeline version that made the table.")
    sample_count = serializers.SerializerMethodField()
    columns = serializers.SerializerMethodField(help_text="The measures in table order, with their titles and units.")

    class Meta:
        model = Aggregation
        fields = ["id", "name", "dataset", "pipeline", *JOB_FIELDS, "measures", "columns", "sample_count", "measured_count",
                  "histogram_edges", "histograms", "summary", "created_at"]
        read_only_fields = fields

    def get_pipeline(self, aggregation) -> dict:
        version = aggregation.pipeline_version
        return {"id": version.pipeline_id, "name": version.pipeline.name, "version": version.number}

    def get_sample_count(self, aggregation) -> int:
        return aggregation.dataset.sample_count

    def get_columns(self, aggregation) -> list[dict]:
        titles = {m["name"]: m for m in measure_schemas()}
        return [titles[name] for name in aggregation.measures if name in titles]


class AggregationRequestSerializer(serializers.Serializer):
    pipeline = OwnedPrimaryKeyField(scope=pipelines_for, model_name="pipeline", help_text="An aggregation pipeline; its latest version is used.")
    dataset = OwnedPrimaryKeyField(scope=datasets_for, model_name="dataset", help_text="The dataset whose samples to measure.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text="The table's name.")


class AggregationRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = AggregationRow
        fields = ["index", "sample", "label", "patient", "values", "problems", "histogram"]
        read_only_fields = fields


EXPORT_PARAMETERS = [
    OpenApiParameter("file", str, enum=list(export.FORMATS), description="csv (default) or xlsx (every table in one workbook)."),
    OpenApiParameter("table", str, enum=list(export.TABLES), description="For CSV: the values per sample (default) or the histogram per label."),
]


class AggregationViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                         viewsets.GenericViewSet):
    """Tables of measures: an aggregation pipeline over a dataset, measured by a worker, with charts' data and exports."""

    serializer_class = AggregationSerializer

    def get_queryset(self):
        queryset = aggregations_for(self.request.user).select_related("dataset__project", "pipeline_version__pipeline")
        if self.action != "list":
            return queryset
        for name in ("dataset", "project"):
            value = int_query_param(self.request, name)
            if value is not None:
                queryset = queryset.filter(**{"dataset__project_id" if name == "project" else "dataset_id": value})
        return queryset

    @extend_schema(parameters=[OpenApiParameter("dataset", int, description="Only tables of this dataset."),
                               OpenApiParameter("project", int, description="Only this project's tables.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        aggregation = self.get_object()
        record(request.user, aggregation.project, Action.READ, aggregation)
        return Response(self.get_serializer(aggregation).data)

    @extend_schema(request=AggregationRequestSerializer, responses={202: AggregationSerializer})
    def create(self, request, *args, **kwargs):
        """Measures every sample of a dataset with an aggregation pipeline's latest version (a worker job)."""
        asked = AggregationRequestSerializer(data=request.data, context={"request": request})
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        aggregation = start_aggregation(request.user, data["pipeline"], data["dataset"], data.get("name", ""))
        return Response(self.get_serializer(aggregation).data, status=status.HTTP_202_ACCEPTED)

    def deletion_plan(self, user, aggregation):
        return aggregation_deletion(aggregation)

    def delete_thing(self, user, aggregation, with_runs):
        delete_aggregation(user, aggregation, with_runs)

    @extend_schema(request=None, responses={202: AggregationSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stops the measuring; nothing of it is kept."""
        aggregation = self.get_object()
        stop_aggregation(request.user, aggregation)
        aggregation.refresh_from_db()
        return Response(self.get_serializer(aggregation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=AggregationRowSerializer(many=True),
                   parameters=[OpenApiParameter("label", str, description="Only samples with this label.")])
    @action(detail=True, methods=["get"])
    def rows(self, request, pk=None):
        """One row per sample, in the dataset's order, paginated."""
        rows = self.get_object().rows.all()
        if "label" in request.query_params:
            rows = rows.filter(label=request.query_params["label"])
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(AggregationRowSerializer(page, many=True).data)

    @extend_schema(parameters=EXPORT_PARAMETERS, responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
                                                            (200, export.FORMATS["xlsx"]): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        """The table as a file: CSV (values or histogram) or XLSX (both, and what made them)."""
        aggregation = self.get_object()
        file_format, table = request.query_params.get("file", "csv"), request.query_params.get("table", "values")
        if file_format not in export.FORMATS:
            raise ServiceError(f"file must be one of {', '.join(export.FORMATS)}.", field="file")
        if table not in export.TABLES:
            raise ServiceError(f"table must be one of {', '.join(export.TABLES)}.", field="table")
        if aggregation.status != Aggregation.Status.READY:
            raise ServiceError("The table is not ready yet; export it once the worker has measured every sample.",
                               code="conflict", status_code=409)
        if table == "histogram" and not aggregation.histogram_edges:
            raise ServiceError("This table has no histogram: add the histogram measure to the pipeline and run it again.", field="table")
        record(request.user, aggregation.project, Action.DOWNLOAD, aggregation)
        name = re.sub(r"[^\w.-]+", "-", aggregation.name).strip("-")[:80] or "measures"
        suffix = f"-{table}" if file_format == "csv" and table != "values" else ""
        response = HttpResponse(export.export(aggregation, file_format, table), content_type=export.FORMATS[file_format])
        response["Content-Disposition"] = content_disposition_header(True, f"{name}{suffix}.{file_format}")
        return response

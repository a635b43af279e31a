"""Operations and pipelines over REST: the registry's schema, versioned pipelines, previews."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.audit.services import Action, record
from backend.core.errors import int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.datasets.api import DatasetSerializer
from backend.datasets.services import datasets_for
from backend.projects.models import Project
from backend.projects.services import projects_for
from workers.engine.pipelines.params import PARAM_KINDS

from . import preview
from .models import Pipeline, PipelineVersion
from .services import create_pipeline, delete_pipeline, operation_schemas, pipelines_for, run_preprocessing, update_pipeline


class ParamSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
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


class StepSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="An operation's name (GET /api/operations/).")
    params = serializers.DictField(required=False, help_text="Parameter values; missing ones take their defaults.")


class VersionSerializer(serializers.ModelSerializer):
    used = serializers.SerializerMethodField()

    class Meta:
        model = PipelineVersion
        fields = ["number", "steps", "used", "used_at", "created_at"]
        read_only_fields = fields

    def get_used(self, version) -> bool:
        return version.used_at is not None


class PipelineSerializer(serializers.ModelSerializer):
    steps = StepSerializer(many=True, write_only=True, help_text="The operations in order.")
    versions = VersionSerializer(many=True, read_only=True)
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.none())

    class Meta:
        model = Pipeline
        fields = ["id", "project", "name", "kind", "steps", "versions", "created_at"]
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


class PipelineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
                      mixins.DestroyModelMixin, viewsets.GenericViewSet):
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
                                              self.initial_steps())

    def perform_update(self, serializer):
        pipeline = serializer.instance
        steps = self.initial_steps() if "steps" in self.request.data else pipeline.latest.steps
        update_pipeline(self.request.user, pipeline, steps, serializer.validated_data.get("name"))
        serializer.instance = Pipeline.objects.prefetch_related("versions").get(pk=pipeline.pk)

    def initial_steps(self):
        # The raw steps, not the serializer's: the service reports problems per step in its own words.
        return self.request.data.get("steps", [])

    def perform_destroy(self, pipeline):
        delete_pipeline(self.request.user, pipeline)

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

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core import sse
from backend.core.errors import ServiceError, int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.core.jobs import JOB_FIELDS, JobSerializer
from backend.datasets.services import partitions_for
from backend.pipelines.services import pipelines_for
from workers.engine.architectures import ARCHITECTURES

from .events import EVENTS_DESCRIPTION, Cursor, run_events
from .models import TrainingRun
from .serializers import MetricPointSerializer
from .services import MAX_PROCESSES, delete_run, launch_run, request_stop, runs_for, set_public


def positive_learning_rate(value):
    if not value > 0:
        raise serializers.ValidationError("Learning rate must be greater than 0; typical values are 0.0001 to 0.01.")
    if value > 10:
        raise serializers.ValidationError("Learning rate must be at most 10; typical values are 0.0001 to 0.01.")


class RunLaunchSerializer(serializers.Serializer):
    partition = OwnedPrimaryKeyField(scope=partitions_for, model_name="partition")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    architecture = serializers.ChoiceField(choices=sorted(ARCHITECTURES), default="small_cnn")
    epochs = serializers.IntegerField(default=10, min_value=1, max_value=1000)
    learning_rate = serializers.FloatField(default=0.001, validators=[positive_learning_rate])
    batch_size = serializers.IntegerField(default=32, min_value=1, max_value=4096)
    device = serializers.ChoiceField(choices=["cpu", "gpu"], default="cpu")
    processes = serializers.IntegerField(default=1, min_value=1, max_value=MAX_PROCESSES,
                                         help_text="Data-parallel processes on one worker: one per GPU, or CPU processes. Each trains on "
                                                   "its shard of the training subset; batch_size is per process.")
    seed = serializers.IntegerField(default=0, min_value=0, max_value=2**31 - 1)
    augmentation = OwnedPrimaryKeyField(scope=pipelines_for, model_name="pipeline", required=False, allow_null=True,
                                        help_text="An augmentation pipeline; its latest version is used (and kept as it is).")
    balancing = serializers.ChoiceField(choices=["none", "weighted", "oversample", "factors"], default="none")
    class_factors = serializers.DictField(child=serializers.IntegerField(min_value=1, max_value=20), required=False, default=dict,
                                          help_text="For balancing 'factors': {label: times each image is used per epoch}.")


class RunSerializer(JobSerializer):
    model_url = serializers.SerializerMethodField()
    dataset = serializers.IntegerField(source="partition.dataset_id", read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "project", "dataset", "partition", "name", "architecture", "epochs", "learning_rate", "batch_size",
            "device", "processes", "seed", "augmentation", "balancing", "class_factors", *JOB_FIELDS,
            "epochs_completed", "test_accuracy", "test_loss", "model_url", "public", "config", "created_at",
        ]
        read_only_fields = fields

    def get_model_url(self, run) -> str | None:
        return f"/api/runs/{run.pk}/model.onnx/" if run.is_finished and run.onnx_path.exists() else None


class VisibilitySerializer(serializers.Serializer):
    public = serializers.BooleanField(help_text="True: every user of the server may read the run and download its model.")


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Training runs: launched on a partition, trained by a worker, exported as ONNX."""

    serializer_class = RunSerializer

    def get_queryset(self):
        queryset = runs_for(self.request.user).select_related("partition")
        project = int_query_param(self.request, "project") if self.action == "list" else None
        return queryset if project is None else queryset.filter(project_id=project)

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's runs.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        run = self.get_object()
        record(request.user, run.project, Action.READ, run)
        return Response(self.get_serializer(run).data)

    def perform_destroy(self, run):
        delete_run(self.request.user, run)

    @extend_schema(request=RunLaunchSerializer, responses={202: RunSerializer})
    def create(self, request):
        launch = RunLaunchSerializer(data=request.data, context={"request": request})
        launch.is_valid(raise_exception=True)
        data = dict(launch.validated_data)
        partition = data.pop("partition")
        run = launch_run(partition.dataset.project, partition, data, request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=VisibilitySerializer, responses={200: RunSerializer})
    @action(detail=True, methods=["post"])
    def visibility(self, request, pk=None):
        """Make the run and its model public (every user may read and download them) or private again; owners only."""
        body = VisibilitySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(RunSerializer(set_public(request.user, self.get_object(), body.validated_data["public"])).data)

    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop after the current batch; the metrics and the model so far are kept."""
        return Response(RunSerializer(request_stop(request.user, self.get_object())).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=MetricPointSerializer(many=True),
        parameters=[OpenApiParameter("after", int, description="Only points with an id above this one (for polling).")],
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def metrics(self, request, pk=None):
        """Metric points per epoch and subset, oldest first."""
        points = self.get_object().metrics.all()
        after = int_query_param(request, "after")
        if after is not None:
            points = points.filter(id__gt=after)
        return Response(MetricPointSerializer(points, many=True).data)

    @extend_schema(
        responses={(200, sse.MEDIA_TYPE): OpenApiResponse(OpenApiTypes.STR, description=EVENTS_DESCRIPTION)},
        parameters=[
            OpenApiParameter("last_event_id", str, description="Resume after this event id (as `p123.l45`); "
                                                                 "the Last-Event-ID header, when sent, wins."),
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, description="The id of the last event received: "
                                                                                       "what EventSource sends when it reconnects."),
        ],
    )
    @action(detail=True, methods=["get"], pagination_class=None, content_negotiation_class=sse.IgnoreAccept)
    def events(self, request, pk=None):
        """The run's live events (Server-Sent Events): its state, then its metric points and log lines as they are recorded, until it ends."""
        run = self.get_object()
        return sse.event_stream(request._request, run_events(run.pk, resume_from(request)))

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path="model.onnx")
    def model_onnx(self, request, pk=None):
        """The trained model as ONNX: input "image" (N, C, H, W) floats in [0, 1], output "logits"."""
        run = self.get_object()
        if not run.is_finished or not run.onnx_path.exists():
            raise ServiceError("The model is not ready: the run has not finished.", code="not_ready", status_code=409)
        filename = f"run-{run.pk}-{run.architecture}.onnx"
        record(request.user, run.project, Action.DOWNLOAD, run, name=f"{run.name}: {filename}")
        return FileResponse(open(run.onnx_path, "rb"), as_attachment=True, filename=filename, content_type="application/octet-stream")


def resume_from(request) -> Cursor:
    """Where a reconnecting client left off: EventSource's own Last-Event-ID header first (it is newer than an id in
    the address the page opened the stream with), then `?last_event_id=`."""
    given = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
    try:
        return Cursor.parse(given)
    except ValueError as exc:
        raise ServiceError(str(exc), field="last_event_id") from None

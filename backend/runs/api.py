from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.urls import Resolver404, resolve
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.audit.services import Action, record
from backend.core import sse
from backend.core.api import api_not_found
from backend.core.deletion import DeletionPlanMixin
from backend.core.errors import ServiceError, int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.core.jobs import JOB_FIELDS, JobSerializer
from backend.core.table_files import CONTENT_TYPES, download
from backend.datasets.services import partitions_for
from workers.engine.training.finder import EARLY_ENDINGS
from workers.engine.training.spec import spec_schema
from workers.engine.zoo.registry import MODELS, ModelEntry
from workers.engine.zoo.weights import WeightsUnavailable, find_weights

from . import export
from .cases import CASE_ORDERS, MASK_STYLES, case_of, ordered_cases, predicted_mask_png
from .events import EVENTS_DESCRIPTION, Cursor, run_events
from .external import check_fits, mapping_facts, readable_dataset
from .models import Evaluation, RateSearch, SamplePrediction, SegmentationCase, TrainingRun
from .report import run_report
from .serializers import MetricPointSerializer, RunStatusSerializer
from .services import (
    check_evaluable,
    delete_run,
    evaluations_for,
    job_queue_position,
    launch_run,
    rate_curve,
    rate_searches_for,
    request_stop,
    resume_run,
    run_deletion,
    runs_for,
    set_public,
    start_evaluation,
    start_rate_search,
    starting_points,
    stop_evaluation,
    stop_rate_search,
)

TABLE_FILE_RESPONSES = {(200, content_type): OpenApiResponse(OpenApiTypes.BINARY) for content_type in CONTENT_TYPES.values()}
FILE_PARAMETER = OpenApiParameter("file", str, enum=list(export.FORMATS), description="csv (the default), xlsx (with an About "
                                                                                         "sheet for an evaluation) or json (a list of rows).")


def table_download(request, thing, project, content: bytes, file_format: str, filename: str) -> HttpResponse:
    """A table as a download, recorded in the project's audit log."""
    record(request.user, project, Action.DOWNLOAD, thing, name=filename)
    return download(content, file_format, filename)


SPEC_HELP = "The training settings; any left out take the architecture's defaults. See docs/training.md and GET /api/training/."


class RunLaunchSerializer(serializers.Serializer):
    """A run to launch: the partition, a name, and the training spec's fields at the top level
    (checked by the spec's own schema, each error named by its path, e.g. `optimizer.momentum`)."""

    partition = OwnedPrimaryKeyField(scope=partitions_for, model_name="partition")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    task = serializers.CharField(required=False, help_text="classification or segmentation (a dataset of masks is "
                                 "segmented unless this names another task).")
    model = serializers.JSONField(required=False, help_text='{"architecture": "resnet18", "weights": "random"}')
    epochs = serializers.JSONField(required=False, help_text="Passes over the training subset (1 to 1000).")
    batch_size = serializers.JSONField(required=False, help_text="Images per step, per process.")
    optimizer = serializers.JSONField(required=False, help_text='{"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, ...}')
    loss = serializers.JSONField(required=False, help_text='{"name": "focal", "gamma": 2}')
    schedule = serializers.JSONField(required=False, help_text='{"name": "cosine", "warmup_epochs": 1}')
    phases = serializers.JSONField(required=False, help_text='[{"epochs": 5, "train": "head"}, {"epochs": 15, "learning_rate": 1e-4}]')
    metrics = serializers.JSONField(required=False, help_text='["accuracy", "auc"]')
    monitor = serializers.JSONField(required=False, help_text='The metric that picks the kept epoch, e.g. "validation.loss".')
    early_stopping = serializers.JSONField(required=False, help_text='{"enabled": true, "patience": 10, "min_delta": 0}')
    gradient_clipping = serializers.JSONField(required=False, help_text="Largest gradient norm; 0: no clipping.")
    precision = serializers.JSONField(required=False, help_text="auto, float32 or mixed.")
    seed = serializers.JSONField(required=False, help_text="Same seed and settings, same result.")
    checkpoints = serializers.JSONField(required=False, help_text='{"every_minutes": 10}')
    resources = serializers.JSONField(required=False, help_text='{"device": "gpu", "processes": 2, "pool": ""}')
    data = serializers.JSONField(required=False, help_text='{"augmentation": <pipeline id>, "balancing": "weighted", "class_factors": {}}')
    inference = serializers.JSONField(required=False, help_text='{"mirror": true, "mirror_axes": [1, 2]}: test-time mirroring '
                                      "of a segmentation's whole samples.")

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({unknown[0]: f"There is no setting '{unknown[0]}'. {SPEC_HELP}"})
        return attrs

    def spec_data(self) -> dict:
        return {key: value for key, value in self.validated_data.items() if key not in ("partition", "name")}


class RunSerializer(RunStatusSerializer):
    """A run whole: its state (as the live events send it), spec, provenance, results and model."""

    model_url = serializers.SerializerMethodField(help_text="The kept model as ONNX; null until the run has finished.")
    weights_url = serializers.SerializerMethodField(help_text="The kept weights as safetensors, with the ONNX file's metadata; "
                                                              "null until the run has finished (and for runs trained before "
                                                              "the toolkit wrote them).")
    dataset = serializers.IntegerField(source="partition.dataset_id", read_only=True)
    architecture = serializers.CharField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = ["project", "dataset", "partition", "name", "architecture", "spec", "provenance", *RunStatusSerializer.Meta.fields,
                  "model_url", "weights_url", "public", "created_at"]
        read_only_fields = fields

    def get_model_url(self, run) -> str | None:
        return f"/api/runs/{run.pk}/model.onnx/" if run.is_finished and run.onnx_path.exists() else None

    def get_weights_url(self, run) -> str | None:
        return f"/api/runs/{run.pk}/model.safetensors/" if run.is_finished and run.safetensors_path.exists() else None


class CurveSerializer(serializers.Serializer):
    epochs = serializers.ListField(child=serializers.FloatField(), help_text="x: the run's progress in epochs.")
    learning_rates = serializers.ListField(child=serializers.FloatField())
    steps_per_epoch = serializers.IntegerField()
    depends_on_metric = serializers.BooleanField(help_text="True for reduce-on-plateau: cuts come when the metric stalls.")


class VisibilitySerializer(serializers.Serializer):
    public = serializers.BooleanField(help_text="True: every user of the server may read the run and download its model.")


class NamedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class StartingPointSerializer(serializers.ModelSerializer):
    """A run whose kept model a new run can start from (model.weights "run", model.start_run its id)."""

    project = NamedSerializer(read_only=True)
    dataset = NamedSerializer(source="partition.dataset", read_only=True)
    partition = NamedSerializer(read_only=True)
    architecture = serializers.CharField(read_only=True)
    classes = serializers.SerializerMethodField(help_text="The classes its model was trained for (its head's outputs, in order).")
    channels = serializers.IntegerField(source="partition.dataset.channels", read_only=True)
    test_accuracy = serializers.FloatField(read_only=True, allow_null=True)
    kept_epoch = serializers.SerializerMethodField(help_text="The epoch whose model was kept (the one a new run starts from).")

    class Meta:
        model = TrainingRun
        fields = ["id", "name", "project", "dataset", "partition", "architecture", "classes", "channels", "test_accuracy",
                  "kept_epoch", "status", "created_at"]
        read_only_fields = fields

    def get_classes(self, run) -> list[str]:
        return run.results.get("classes") or run.partition.dataset.labels

    def get_kept_epoch(self, run) -> int | None:
        return run.results.get("kept", {}).get("epoch")


class RunViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
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

    def deletion_plan(self, user, run):
        return run_deletion(run)

    def delete_thing(self, user, run, with_runs):
        delete_run(user, run, with_runs)

    @extend_schema(request=RunLaunchSerializer, responses={202: RunSerializer})
    def create(self, request):
        """Launch a run: it waits in its resource's queue until a worker takes it."""
        launch = RunLaunchSerializer(data=request.data, context={"request": request})
        launch.is_valid(raise_exception=True)
        partition = launch.validated_data["partition"]
        run = launch_run(partition.dataset.project, partition, launch.spec_data(), request.user,
                         name=launch.validated_data.get("name", ""))
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=StartingPointSerializer(many=True),
        parameters=[OpenApiParameter("architecture", str, description="Only runs of this architecture (a name of "
                                                                           "GET /api/training/'s architectures).")],
    )
    @action(detail=False, methods=["get"], url_path="starting-points", pagination_class=None)
    def starting_points(self, request):
        """Runs a new run can start from (model.weights "run"): the ones you can read (your projects' and public ones) that
        kept a model, newest first, at most 200."""
        architecture = request.query_params.get("architecture") or None
        if architecture is not None and architecture not in MODELS:
            raise ServiceError(f"There is no architecture '{architecture}'; choose one of {', '.join(MODELS)}.", field="architecture")
        return Response(StartingPointSerializer(starting_points(request.user, architecture), many=True).data)

    @extend_schema(request=RunLaunchSerializer, responses={200: CurveSerializer})
    @action(detail=False, methods=["post"], url_path="schedule")
    def schedule(self, request):
        """The learning rate along the run these settings would make, step by step, computed by the trainer's own code."""
        launch = RunLaunchSerializer(data=request.data, context={"request": request})
        launch.is_valid(raise_exception=True)
        partition = launch.validated_data["partition"]
        return Response(rate_curve(partition.dataset.project, partition, launch.spec_data(), request.user))

    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Go on from the last checkpoint of a stopped or failed run (its spec unchanged)."""
        return Response(RunSerializer(resume_run(request.user, self.get_object())).data, status=status.HTTP_202_ACCEPTED)

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
        """Stop: a queued run leaves its queue at once; a running one stops after the current batch, with a checkpoint to resume from."""
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

    @extend_schema(parameters=[OpenApiParameter("table", str, enum=[*export.RUN_TABLES], description="metric_points (the "
                                                "default): one row per epoch, a column per subset and metric."), FILE_PARAMETER],
                   responses=TABLE_FILE_RESPONSES)
    @action(detail=True, methods=["get"], url_path="export")
    def export_table(self, request, pk=None):
        """The run's metric points per epoch as a file: CSV, XLSX or JSON."""
        run = self.get_object()
        content, filename = export.run_file(run, request.query_params.get("table", "metric_points"), request.query_params.get("file", "csv"))
        return table_download(request, run, run.project, content, request.query_params.get("file", "csv"), filename)

    @extend_schema(responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR)})
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """The run's report: one self-contained HTML file (printable to PDF) with its spec (also as JSON in
        <script id="spec">), plan, data and code versions, curves and test results (docs/results.md, "Export")."""
        run = self.get_object()
        html, filename = run_report(run)
        record(request.user, run.project, Action.DOWNLOAD, run, name=f"{run.name}: {filename}")
        return download(html.encode("utf-8"), "html", filename)

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
        """The trained model as ONNX: input "image" (N, C, H, W) floats in [0, 1], output "logits"; class names, input
        shape, preprocessing and the training spec in its metadata_props (docs/models.md, "Exporting a model")."""
        run = self.get_object()
        if not run.is_finished:
            raise ServiceError("The model is not ready: the run has not finished.", code="not_ready", status_code=409)
        if not run.onnx_path.exists():
            why = run.results.get("onnx", {}).get("error") or "the run ended before its model was kept and exported."
            raise ServiceError(f"This run has no ONNX file: {why}", code="file_missing", status_code=404)
        return model_file(request, run, run.onnx_path, "onnx")

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path="model.safetensors")
    def model_safetensors(self, request, pk=None):
        """The kept weights as safetensors (the state dict of the ONNX file's model), with the same metadata in its
        header. Runs trained before the toolkit wrote this file answer 404."""
        run = self.get_object()
        if not run.is_finished:
            raise ServiceError("The weights are not ready: the run has not finished.", code="not_ready", status_code=409)
        if not run.safetensors_path.exists():
            why = ("it was trained before the toolkit wrote one. Download its ONNX model, or clone the run to train it again."
                   if run.onnx_path.exists() else "the run ended before its model was kept.")
            raise ServiceError(f"This run has no safetensors file: {why}", code="file_missing", status_code=404)
        return model_file(request, run, run.safetensors_path, "safetensors")


def model_file(request, run: TrainingRun, path, extension: str) -> FileResponse:
    """A run's model file as a download, recorded in the project's audit log."""
    filename = f"run-{run.pk}-{run.architecture}.{extension}"
    record(request.user, run.project, Action.DOWNLOAD, run, name=f"{run.name}: {filename}")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=filename, content_type="application/octet-stream")


class TrainingOptions(APIView):
    """The training spec's schema: every setting's kind, bounds, default and help; the optimizers, losses, schedules and
    metrics with their parameters; each architecture's resolved defaults, and which of its pretrained weights files are on
    this server (`weights_available`); where imported models are listed (`imported_models`, null where this server has no
    such list). The run form builds itself from it."""

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    def get(self, request):
        schema = spec_schema()
        for architecture in schema["architectures"]:
            architecture["weights_available"] = weights_available(MODELS[architecture["name"]])
        schema["imported_models"] = IMPORTED_MODELS if serves(IMPORTED_MODELS) else None
        return Response(schema)


IMPORTED_MODELS = "/api/imported-models/"


def serves(path: str) -> bool:
    """Whether this server has an address: the form asks only for lists that exist (a 404 would be noise in its console)."""
    try:
        return resolve(path).func is not api_not_found  # what answers every unknown address under /api/
    except Resolver404:
        return False


def weights_available(entry: ModelEntry) -> dict:
    """{weights name: {available, message}} for an architecture's pretrained weights on this server: found by name in the
    weights folder or torchvision's cache (the worker checks the hash when it reads the file); when absent, the message
    says which file to put where."""
    found = {}
    for weights in entry.weights:
        try:
            find_weights(weights, settings.PRETRAINED_WEIGHTS_DIR)
            found[weights.name] = {"available": True, "filename": weights.filename, "message": ""}
        except WeightsUnavailable as missing:
            found[weights.name] = {"available": False, "filename": weights.filename, "message": str(missing)}
    return found


def resume_from(request) -> Cursor:
    """Where a reconnecting client left off: EventSource's own Last-Event-ID header first (it is newer than an id in
    the address the page opened the stream with), then `?last_event_id=`."""
    given = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
    try:
        return Cursor.parse(given)
    except ValueError as exc:
        raise ServiceError(str(exc), field="last_event_id") from None


class RateSearchResultsSerializer(serializers.Serializer):
    """What a finished search found ({} before it ends)."""

    rates = serializers.ListField(child=serializers.FloatField(), required=False, help_text="The rates tried, one optimizer step each, rising.")
    losses = serializers.ListField(child=serializers.FloatField(), required=False, help_text="The training loss at each rate, smoothed.")
    suggestion = serializers.FloatField(allow_null=True, required=False,
                                        help_text="The suggested learning rate; null when the loss never clearly fell.")
    stopped_early_because = serializers.ChoiceField(
        choices=list(EARLY_ENDINGS), allow_null=True, required=False,
        help_text="Why the sweep ended before the last rate: the loss blew up (diverged, not_finite) or a stop; null: it swept them all.")


class RateSearchSerializer(JobSerializer):
    project = serializers.IntegerField(source="partition.dataset.project_id", read_only=True)
    results = serializers.SerializerMethodField(help_text="{} until the search ends; a stopped search keeps the curve so far.")

    class Meta:
        model = RateSearch
        fields = ["id", "project", "partition", "spec", "queue", *JOB_FIELDS, "results", "created_at"]
        read_only_fields = fields

    @extend_schema_field(RateSearchResultsSerializer)
    def get_results(self, search) -> dict:
        return search.results  # as the worker stored it: {} until then


class RateSearchViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Learning-rate searches (docs/rate-finder.md): a short sweep of rising rates with a run's settings, the loss
    against the rate, and a suggested rate. Not listed or deleted: finished searches go after a day."""

    serializer_class = RateSearchSerializer

    def get_queryset(self):
        return rate_searches_for(self.request.user).select_related("partition__dataset")

    def retrieve(self, request, *args, **kwargs):
        search = self.get_object()
        record(request.user, search.project, Action.READ, search)
        return Response(self.get_serializer(search).data)

    @extend_schema(request=RunLaunchSerializer, responses={202: RateSearchSerializer})
    def create(self, request):
        """Search a learning rate for these settings: the body is a run's (POST /api/runs/), checked the same way."""
        launch = RunLaunchSerializer(data=request.data, context={"request": request})
        launch.is_valid(raise_exception=True)
        search = start_rate_search(request.user, launch.validated_data["partition"], launch.spec_data())
        return Response(RateSearchSerializer(search).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: RateSearchSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop: a queued search at once; a running one after its current step, keeping the curve so far."""
        return Response(RateSearchSerializer(stop_rate_search(request.user, self.get_object())).data, status=status.HTTP_202_ACCEPTED)


class EvaluationSerializer(JobSerializer):
    project = serializers.IntegerField(source="run.project_id", read_only=True)
    dataset_name = serializers.CharField(source="dataset.name", read_only=True, allow_null=True, default=None,
                                         help_text="The other dataset's name (external validation); null for a subset.")
    results = serializers.JSONField(read_only=True, help_text="{} until the evaluation is done; then {classes, samples, patients, "
                                    "samples_without_patient, resamples, level, metrics: {name: {value, low, high}}, per_class, "
                                    "confusion, roc, precision_recall, calibration, operating_points} (docs/results.md).")
    queue_position = serializers.SerializerMethodField(help_text="1: next to be taken by a worker of its queue (runs, searches, "
                                                                 "evaluations and explanations wait in one); null once it left the queue.")

    class Meta:
        model = Evaluation
        fields = ["id", "project", "run", "subset", "dataset", "dataset_name", "class_mapping", "queue", "queue_position",
                  *JOB_FIELDS, "results", "created_at"]
        read_only_fields = fields

    def get_queue_position(self, evaluation) -> int | None:
        return job_queue_position(evaluation)


class EvaluationRequestSerializer(serializers.Serializer):
    run = serializers.IntegerField(help_text="The run whose kept model is measured.")
    subset = serializers.ChoiceField(choices=Evaluation.SUBSETS, default="test", help_text="The subset of the run's partition "
                                     "(ignored when a dataset is given: all of that dataset is measured).")
    dataset = serializers.IntegerField(required=False, help_text="Another dataset to measure whole (external validation).")
    class_mapping = serializers.DictField(child=serializers.CharField(allow_null=True), required=False,
                                          help_text="With a dataset: its class names to the run's (null leaves a class "
                                                    "out); names that match, ignoring case and punctuation, map themselves.")


class ClassMappingSerializer(serializers.Serializer):
    run_classes = serializers.ListField(child=serializers.CharField())
    dataset_classes = serializers.ListField(child=serializers.CharField())
    samples = serializers.DictField(child=serializers.IntegerField(), help_text="The dataset's samples per class.")
    suggested = serializers.DictField(child=serializers.CharField(allow_null=True),
                                      help_text="Each dataset class to the run's class of the same name, or null.")
    shared_samples = serializers.IntegerField(help_text="The dataset's samples that are images of the run's own dataset "
                                                        "(the same content); all of them is refused (code same_images).")
    shared_with_training = serializers.IntegerField(help_text="Of those, the images the model was trained on.")


class SamplePredictionSerializer(serializers.ModelSerializer):
    class Meta:
        model = SamplePrediction
        fields = ["id", "sample", "patient", "truth", "predicted", "probabilities", "truth_probability", "confidence", "correct"]
        read_only_fields = fields


class SegmentationCaseSerializer(serializers.ModelSerializer):
    mask_url = serializers.SerializerMethodField(help_text="The predicted label map: ?file=npy (the whole map) or one plane "
                                                           "as a transparent PNG over the sample viewer's (?axis=&index=).")

    class Meta:
        model = SegmentationCase
        fields = ["id", "sample", "patient", "mean_dice", "dice", "iou", "hd95", "nsd", "predicted_volume", "reference_volume",
                  "empty", "tolerance_mm", "mask_url"]
        read_only_fields = fields

    def get_mask_url(self, case) -> str:
        return f"/api/evaluations/{case.evaluation_id}/cases/{case.sample_id}/mask/"


PREDICTION_ORDERS = {"worst": ("truth_probability", "id"), "least_confident": ("confidence", "id"), "sample": ("sample_id", "id")}


class EvaluationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Evaluations (docs/results.md): a run's kept model measured on a subset of its partition, each sample's
    prediction stored, metrics with 95% intervals from a bootstrap over patients. Every run that succeeds is
    evaluated on its test subset by itself; `?run=` lists one run's."""

    serializer_class = EvaluationSerializer

    def get_queryset(self):
        evaluations = evaluations_for(self.request.user).select_related("run", "dataset")
        run = int_query_param(self.request, "run")
        return evaluations.filter(run_id=run) if run is not None else evaluations

    @extend_schema(parameters=[OpenApiParameter("run", int, description="Only this run's evaluations.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        evaluation = self.get_object()
        record(request.user, evaluation.project, Action.READ, evaluation)
        return Response(self.get_serializer(evaluation).data)

    @extend_schema(request=EvaluationRequestSerializer, responses={202: EvaluationSerializer})
    def create(self, request):
        """Measure a run's kept model on a subset of its partition (the project's owners)."""
        asked = EvaluationRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        run = runs_for(request.user).filter(pk=asked.validated_data["run"]).first()
        if run is None:
            raise ServiceError(f"There is no run {asked.validated_data['run']} that you can read.", field="run", code="not_found", status_code=404)
        dataset = None
        if "dataset" in asked.validated_data:
            if run.spec.get("task") == "segmentation":
                raise ServiceError("A segmentation run is evaluated on its own partition's test or validation subset; "
                                   "evaluation on another dataset is for classifiers.", field="dataset")
            dataset = readable_dataset(request.user, asked.validated_data["dataset"])
        evaluation = start_evaluation(run, asked.validated_data["subset"], request.user, dataset,
                                      asked.validated_data.get("class_mapping"))
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: EvaluationSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop (the project's owners): a queued evaluation at once; a running one after its current batch, keeping
        no prediction. One already ended answers 409."""
        return Response(EvaluationSerializer(stop_evaluation(request.user, self.get_object())).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[OpenApiParameter("run", int, required=True), OpenApiParameter("dataset", int, required=True)],
                   responses={200: ClassMappingSerializer})
    @action(detail=False, methods=["get"], url_path="class-mapping")
    def class_mapping(self, request):
        """Before evaluating a run on another dataset: both class lists and the suggested mapping, after the checks
        that the dataset fits the model (a 400 with the reason otherwise)."""
        run_id, dataset_id = int_query_param(request, "run"), int_query_param(request, "dataset")
        if run_id is None or dataset_id is None:
            raise ServiceError("Give both run and dataset (ids).", field="run" if run_id is None else "dataset")
        run = runs_for(request.user).filter(pk=run_id).first()
        if run is None:
            raise ServiceError(f"There is no run {run_id} that you can read.", field="run", code="not_found", status_code=404)
        dataset = readable_dataset(request.user, dataset_id)
        check_evaluable(run)
        check_fits(run, dataset)
        return Response(ClassMappingSerializer(mapping_facts(run, dataset)).data)

    @extend_schema(parameters=[OpenApiParameter("order", str, enum=[*PREDICTION_ORDERS],
                                                description="worst (the lowest probability of the true class first, the "
                                                            "default), least_confident, or sample"),
                               OpenApiParameter("truth", str, description="Only samples of this true class."),
                               OpenApiParameter("wrong", bool, description="Only the samples given the wrong class.")],
                   responses={200: SamplePredictionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def predictions(self, request, pk=None):
        """Each sample's prediction, sorted and filtered, in pages."""
        evaluation = self.get_object()
        order = request.query_params.get("order", "worst")
        if order not in PREDICTION_ORDERS:
            raise ServiceError(f"order is one of {', '.join(PREDICTION_ORDERS)}.", field="order")
        rows = evaluation.predictions.order_by(*PREDICTION_ORDERS[order])
        if request.query_params.get("truth"):
            rows = rows.filter(truth=request.query_params["truth"])
        if request.query_params.get("wrong") in ("1", "true"):
            rows = rows.filter(correct=False)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SamplePredictionSerializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("table", str, enum=[*export.EVALUATION_TABLES], description="metrics (the "
                                                "default): a row per metric and per class metric, with its interval; "
                                                "predictions: a row per sample with each class's probability; cases (segmentation): a row "
                                                "per case, worst first, with each label's Dice, IoU, HD95, NSD and volumes."),
                               FILE_PARAMETER],
                   responses=TABLE_FILE_RESPONSES)
    @action(detail=True, methods=["get"], url_path="export")
    def export_table(self, request, pk=None):
        """The evaluation's metrics with intervals, its per-sample predictions or its segmentation cases, as a file: CSV,
        XLSX or JSON."""
        evaluation = self.get_object()
        file_format = request.query_params.get("file", "csv")
        content, filename = export.evaluation_file(evaluation, request.query_params.get("table", "metrics"), file_format)
        return table_download(request, evaluation, evaluation.project, content, file_format, filename)

    @extend_schema(parameters=[OpenApiParameter("order", str, enum=[*CASE_ORDERS],
                                                description="worst (the lowest mean foreground Dice first, the default); "
                                                            "dice, iou, nsd (lowest first) or hd95 (highest first) of one "
                                                            "label (`class`); or sample"),
                               OpenApiParameter("class", str, description="The label a measure's order is of (default: "
                                                                          "the first foreground label)."),
                               OpenApiParameter("sample", int, description="Only this sample's case.")],
                   responses={200: SegmentationCaseSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def cases(self, request, pk=None):
        """A segmentation evaluation's cases with their scores per label, sorted worst first, in pages."""
        evaluation = self.get_object()
        rows = ordered_cases(evaluation, request.query_params.get("order", "worst"), request.query_params.get("class"))
        sample = int_query_param(request, "sample")
        if sample is not None:
            rows = rows.filter(sample_id=sample)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SegmentationCaseSerializer(page, many=True).data)

    @extend_schema(parameters=[
        OpenApiParameter("file", str, enum=["png", "npy"], description="png (the default): one plane; npy: the whole map "
                                                                        "of label values on the sample's grid."),
        OpenApiParameter("axis", str, enum=["axial", "coronal", "sagittal"], description="Plane (2D images: axial only)."),
        OpenApiParameter("index", int, description="Plane number along the axis (default: the middle)."),
        OpenApiParameter("style", str, enum=[*MASK_STYLES], description="outline (the default) or fill."),
    ], responses={(200, "image/png"): bytes, (200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path=r"cases/(?P<sample>[0-9]+)/mask")
    def case_mask(self, request, pk=None, sample=None):
        """A case's predicted label map: one plane as a transparent PNG on the grid of GET /api/samples/{id}/slice/'s
        plane (to lay over it), or the whole map as .npy (the dataset's label values, the sample's own grid)."""
        evaluation = self.get_object()
        case = case_of(evaluation, int(sample))
        file_format = request.query_params.get("file", "png")
        if file_format == "npy":
            path = evaluation.project.storage_dir / case.mask
            if not path.is_file():
                raise ServiceError("The predicted mask is missing from storage; evaluate the run again to rebuild it.",
                                   code="file_missing", status_code=404)
            filename = f"evaluation-{evaluation.pk}-sample-{case.sample_id}-predicted-mask.npy"
            record(request.user, evaluation.project, Action.DOWNLOAD, evaluation, name=filename)
            return FileResponse(open(path, "rb"), as_attachment=True, filename=filename, content_type="application/octet-stream")
        if file_format != "png":
            raise ServiceError("file is png or npy.", field="file")
        png, used, count = predicted_mask_png(case, request.query_params.get("axis", "axial"), int_query_param(request, "index"),
                                              request.query_params.get("style", "outline"))
        response = HttpResponse(png, content_type="image/png")
        response["X-Plane-Index"], response["X-Plane-Count"] = str(used), str(count)
        return response

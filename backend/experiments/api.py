"""/api/groups/: groups of runs (docs/results.md, "Groups: repeats and folds"); /api/comparisons/: runs and groups
side by side (docs/results.md, "Compare")."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlanMixin
from backend.core.errors import LARGEST_ID, int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.datasets.services import partitions_for
from backend.runs.api import TABLE_FILE_RESPONSES, table_download

from . import export
from .comparisons import comparison_view, comparisons_for, create_comparison, ordered_items, paired_tests, parse_ids, selection
from .models import Comparison, GroupMember, RunGroup
from .services import (
    MOST_SEEDS,
    comparison_deletion,
    delete_comparison,
    delete_group,
    group_deletion,
    group_summary,
    groups_for,
    launch_group,
)
from .sweeps import MOST_MEMBERS, launch_sweep, stop_group, sweep_summary

FILE_PARAMETER = OpenApiParameter("file", str, enum=list(export.FORMATS), description="csv (the default), xlsx (with an About "
                                                                                         "sheet) or json (a list of rows).")


class GroupLaunchSerializer(serializers.Serializer):
    """One spec launched as several runs. The checks of the seeds, the folds and the spec are the service's, so that a
    refusal names its field the same way for the API and the form."""

    partition = OwnedPrimaryKeyField(scope=partitions_for, model_name="partition")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    spec = serializers.JSONField(required=False, default=dict,
                                 help_text="The training settings, as POST /api/runs/ takes them (docs/training.md); the seed "
                                           "is the first member's.")
    seeds = serializers.JSONField(required=False, default=1,
                                  help_text=f"Runs per partition (2 to {MOST_SEEDS}; 1 to {MOST_SEEDS} with folds), seeded "
                                            "spec seed + 0, 1, ...")
    folds = serializers.BooleanField(required=False, default=False,
                                     help_text="One run per fold of the partition's k-fold cross-validation (crossed with the seeds).")
    search = serializers.JSONField(required=False, default=None,
                                   help_text="A sweep instead of repeats: {sampler: grid | random | bayesian, trials, parallel, "
                                             "pruner: none | successive_halving | median, dimensions: [{setting, values} or "
                                             "{setting, low, high, log, integer}], up to 4} (docs/results.md, \"Sweeps\"); "
                                             f"at most {MOST_MEMBERS} runs.")

    def validate(self, data):
        if data.get("search") is not None and (data.get("folds") or data.get("seeds") not in (1, None)):
            raise serializers.ValidationError({"search": "A sweep varies settings with one seed on one partition; launch it "
                                                         "alone, then repeat its best settings with seeds."})
        return data


class GroupMemberSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="run_id")
    name = serializers.CharField(source="run.name")
    status = serializers.CharField(source="run.status")
    message = serializers.CharField(source="run.message")
    epochs_completed = serializers.IntegerField(source="run.epochs_completed")
    epochs = serializers.IntegerField(source="run.epochs")
    partition = serializers.IntegerField(source="run.partition_id")
    # Declared, not derived from the model: a derived integer's limits are the database's (SQLite's differ from
    # PostgreSQL's), and the checked-in schema must not depend on where it was generated.
    seed = serializers.IntegerField(read_only=True)
    fold = serializers.IntegerField(read_only=True, allow_null=True, help_text="1..k: the fold held out (the validation subset).")
    trial = serializers.IntegerField(read_only=True, allow_null=True, help_text="A sweep's trial number (from 0).")
    attempt = serializers.IntegerField(read_only=True, help_text="2: a sweep member trained again after its first run failed.")
    pruned_at = serializers.IntegerField(read_only=True, allow_null=True,
                                         help_text="The epoch after which the sweep's pruner stopped it.")

    class Meta:
        model = GroupMember
        fields = ["run", "name", "status", "message", "epochs_completed", "epochs", "partition", "seed", "fold", "trial",
                  "values", "attempt", "outcome", "pruned_at"]


class RunGroupSerializer(serializers.ModelSerializer):
    members = serializers.IntegerField(source="members.count", read_only=True)
    seeds = serializers.IntegerField(read_only=True, help_text="Runs per partition, with seeds spec seed + 0 .. seeds - 1.")

    class Meta:
        model = RunGroup
        fields = ["id", "project", "partition", "kind", "name", "seeds", "members", "stop_requested", "created_at"]


class RunGroupDetailSerializer(RunGroupSerializer):
    members = GroupMemberSerializer(many=True, read_only=True)
    summary = serializers.SerializerMethodField()

    class Meta(RunGroupSerializer.Meta):
        fields = [*RunGroupSerializer.Meta.fields, "spec", "search", "members", "summary"]

    def get_summary(self, group) -> dict:
        """Repeats and folds: {subset, members, finished, succeeded, evaluated, curves: [{subset, name, epochs: [{epoch,
        mean, std, n}]}], test: {metric: {mean, std, n}}, pooled: {results, evaluations, runs, current}}: std is the
        sample standard deviation (ddof=1). A sweep: {search, rows: [{run, trial, attempt, values, status, outcome,
        pruned_at, epochs_completed, epochs, objective}], best, trials, used, finished, stopped, settled}."""
        return sweep_summary(group) if group.kind == RunGroup.Kind.SWEEP else group_summary(group)


class GroupViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Groups of runs: one spec repeated over seeds, cross-validated over the folds of a k-fold partition, or swept
    over settings. Each member is a normal run; the group adds the mean and standard deviation across its members and
    their pooled evaluation (a sweep: its trials and its best). `?project=` lists one project's. Deleting a group keeps
    its runs."""

    def deletion_plan(self, user, group):
        return group_deletion(group)

    def delete_thing(self, user, group, with_runs):
        delete_group(user, group)

    def get_serializer_class(self):
        return RunGroupDetailSerializer if self.action == "retrieve" else RunGroupSerializer

    def get_queryset(self):
        groups = groups_for(self.request.user).select_related("partition__dataset")
        project = int_query_param(self.request, "project")
        return groups.filter(project_id=project) if project is not None else groups

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's groups.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        group = self.get_object()
        record(request.user, group.project, Action.READ, group, object_type="group")
        return Response(self.get_serializer(group).data)

    @extend_schema(request=GroupLaunchSerializer, responses={202: RunGroupDetailSerializer})
    def create(self, request):
        """Launch the group's runs (the project's owners): they wait in their queue as any run does."""
        asked = GroupLaunchSerializer(data=request.data, context={"request": request})
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        if data.get("search") is not None:
            group = launch_sweep(request.user, data["partition"], data["spec"], data["search"], data.get("name", ""))
        else:
            group = launch_group(request.user, data["partition"], data["spec"], data["seeds"], data["folds"], data.get("name", ""))
        return Response(RunGroupDetailSerializer(group).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: RunGroupDetailSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop the group (the project's owners): no member starts any more (a sweep asks for no more trials); queued
        members stop at once, training ones after their current batch, keeping what they learnt."""
        group = stop_group(request.user, self.get_object())
        return Response(RunGroupDetailSerializer(group).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=[OpenApiParameter("table", str, enum=[*export.GROUP_TABLES], description="metrics (the default): "
                                                "a row per headline metric, its mean, SD and n across the runs and the pooled "
                                                "value with its interval; members: a row per run with its test metrics; trials "
                                                "(a sweep's only table, its default): a row per run with its settings, how it "
                                                "ended and its objective."),
                               FILE_PARAMETER],
                   responses=TABLE_FILE_RESPONSES)
    @action(detail=True, methods=["get"], url_path="export")
    def export_table(self, request, pk=None):
        """The group's metrics across its runs, or its runs one per row, as a file: CSV, XLSX (with an About sheet) or JSON."""
        group = self.get_object()
        file_format = request.query_params.get("file", "csv")
        default = "trials" if group.kind == RunGroup.Kind.SWEEP else "metrics"
        content, filename = export.group_file(group, request.query_params.get("table", default), file_format)
        return table_download(request, group, group.project, content, file_format, filename)


# ------------------------------------------------------------------ comparisons (docs/results.md, "Compare")


class ComparisonCreateSerializer(serializers.Serializer):
    """What to compare. The checks (one project, something in common, the metric recorded) are the service's, so a
    refusal names its field the same way for the API and the page."""

    project = serializers.IntegerField(required=False, min_value=1, max_value=LARGEST_ID,
                                       help_text="The project the runs and groups belong to (checked).")
    runs = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=LARGEST_ID), required=False, default=list,
                                 max_length=100, help_text="The runs compared, by id.")
    groups = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=LARGEST_ID), required=False,
                                   default=list, max_length=100, help_text="The groups compared, by id.")
    metric = serializers.CharField(max_length=50, required=False, allow_blank=True, default="",
                                   help_text="The metric whose curves per epoch are overlaid (default: accuracy, else loss).")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ComparisonSerializer(serializers.ModelSerializer):
    runs = serializers.SerializerMethodField(help_text="The runs compared, by id (in id order).")
    groups = serializers.SerializerMethodField(help_text="The groups compared, by id (in id order).")

    class Meta:
        model = Comparison
        fields = ["id", "project", "name", "runs", "groups", "metric", "created_by", "created_at"]

    def get_runs(self, comparison) -> list[int]:
        return sorted(run.pk for run in comparison.runs.all())

    def get_groups(self, comparison) -> list[int]:
        return sorted(group.pk for group in comparison.groups.all())


class ComparisonDetailSerializer(ComparisonSerializer):
    view = serializers.SerializerMethodField()

    class Meta(ComparisonSerializer.Meta):
        fields = [*ComparisonSerializer.Meta.fields, "view"]

    def get_view(self, comparison) -> dict:
        """{metric, metrics, shared_metrics, items: [{key, kind, id, name, classes, ...}], curves: [{item, subset, epochs,
        values, std}], test: [{metric, cells: [{item, value, low, high | mean, std, n, pooled, shown | refused}]}],
        roc: [{item, auc, curves | refused}], pairable}: docs/results.md, "Compare"."""
        runs, groups = ordered_items(comparison)
        metric = self.context.get("metric") or comparison.metric
        return comparison_view(runs, groups, metric)


PREVIEW_PARAMETERS = [
    OpenApiParameter("runs", str, description="Run ids, comma-separated (1,2,5)."),
    OpenApiParameter("groups", str, description="Group ids, comma-separated."),
    OpenApiParameter("metric", str, description="The metric whose curves are overlaid."),
    OpenApiParameter("project", int, description="The project (checked against the runs')."),
]


class ComparisonViewSet(DeletionPlanMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs and groups of one project side by side: curves of a metric overlaid, test metrics with intervals, ROC
    curves, and paired tests between two runs. Saved comparisons are read by the project's members (others: 404) and
    made (and deleted) by its owners. `?project=` lists one project's."""

    def deletion_plan(self, user, comparison):
        return comparison_deletion(comparison)

    def delete_thing(self, user, comparison, with_runs):
        delete_comparison(user, comparison)

    def get_serializer_class(self):
        return ComparisonDetailSerializer if self.action == "retrieve" else ComparisonSerializer

    def get_queryset(self):
        comparisons = comparisons_for(self.request.user).prefetch_related("runs", "groups")
        project = int_query_param(self.request, "project")
        return comparisons.filter(project_id=project) if project is not None else comparisons

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Only this project's comparisons.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[OpenApiParameter("metric", str, description="Overlay this metric's curves instead of the saved one.")])
    def retrieve(self, request, *args, **kwargs):
        comparison = self.get_object()
        record(request.user, comparison.project, Action.READ, comparison, object_type="comparison")
        metric = request.query_params.get("metric", "").strip()
        return Response(ComparisonDetailSerializer(comparison, context={"request": request, "metric": metric}).data)

    @extend_schema(request=ComparisonCreateSerializer, responses={201: ComparisonDetailSerializer})
    def create(self, request):
        """Save a comparison (the project's owners). Refused (400, with its field) when the runs are of different
        projects or have nothing in common."""
        asked = ComparisonCreateSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        comparison = create_comparison(request.user, data["runs"], data["groups"], data["metric"], data["name"],
                                       data.get("project"))
        return Response(ComparisonDetailSerializer(comparison, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=PREVIEW_PARAMETERS, responses={200: OpenApiTypes.OBJECT})
    @action(detail=False, methods=["get"], pagination_class=None)
    def preview(self, request):
        """What a comparison of these runs and groups would show, without saving it (the project's readers)."""
        project, runs, groups = selection(request.user, parse_ids(request.query_params.get("runs"), "runs"),
                                          parse_ids(request.query_params.get("groups"), "groups"),
                                          int_query_param(request, "project"))
        return Response(comparison_view(runs, groups, request.query_params.get("metric", ""), strict=True))

    @extend_schema(parameters=[OpenApiParameter("table", str, enum=[*export.COMPARISON_TABLES], description="metrics (the "
                                                "default): a row per item and metric of the results table, with its "
                                                "interval, a group's mean, SD and n, or the reason it is refused."),
                               FILE_PARAMETER],
                   responses=TABLE_FILE_RESPONSES)
    @action(detail=True, methods=["get"], url_path="export")
    def export_table(self, request, pk=None):
        """The comparison's results table as a file: CSV, XLSX (with an About sheet) or JSON."""
        comparison = self.get_object()
        file_format = request.query_params.get("file", "csv")
        content, filename = export.comparison_file(comparison, request.query_params.get("table", "metrics"), file_format)
        return table_download(request, comparison, comparison.project, content, file_format, filename)

    @extend_schema(parameters=[OpenApiParameter("a", int, description="One of the comparison's runs."),
                               OpenApiParameter("b", int, description="Another of its runs.")],
                   responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], pagination_class=None)
    def paired(self, request, pk=None):
        """Paired tests between two of the comparison's runs on the test samples both were evaluated on: DeLong's test
        of their AUCs (two classes) and McNemar's test of their accuracies, each with its p-value and n, or the reason
        it cannot be made."""
        comparison = self.get_object()
        return Response(paired_tests(comparison, int_query_param(request, "a"), int_query_param(request, "b")))

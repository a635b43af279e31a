"""/api/groups/: groups of runs (docs/results.md, "Groups: repeats and folds")."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.errors import int_query_param
from backend.core.fields import OwnedPrimaryKeyField
from backend.datasets.services import partitions_for

from .models import GroupMember, RunGroup
from .services import MOST_SEEDS, group_summary, groups_for, launch_group


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


class GroupMemberSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="run_id")
    name = serializers.CharField(source="run.name")
    status = serializers.CharField(source="run.status")
    message = serializers.CharField(source="run.message")
    epochs_completed = serializers.IntegerField(source="run.epochs_completed")
    epochs = serializers.IntegerField(source="run.epochs")
    partition = serializers.IntegerField(source="run.partition_id")

    class Meta:
        model = GroupMember
        fields = ["run", "name", "status", "message", "epochs_completed", "epochs", "partition", "seed", "fold"]


class RunGroupSerializer(serializers.ModelSerializer):
    members = serializers.IntegerField(source="members.count", read_only=True)

    class Meta:
        model = RunGroup
        fields = ["id", "project", "partition", "kind", "name", "seeds", "members", "created_at"]


class RunGroupDetailSerializer(RunGroupSerializer):
    members = GroupMemberSerializer(many=True, read_only=True)
    summary = serializers.SerializerMethodField()

    class Meta(RunGroupSerializer.Meta):
        fields = [*RunGroupSerializer.Meta.fields, "spec", "members", "summary"]

    def get_summary(self, group) -> dict:
        """{subset, members, finished, succeeded, evaluated, curves: [{subset, name, epochs: [{epoch, mean, std, n}]}],
        test: {metric: {mean, std, n}}, pooled: {results, evaluations, runs, current}}: std is the sample standard
        deviation (ddof=1)."""
        return group_summary(group)


class GroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Groups of runs: one spec repeated over seeds, or cross-validated over the folds of a k-fold partition. Each
    member is a normal run; the group adds the mean and standard deviation across its members and their pooled
    evaluation. `?project=` lists one project's."""

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
        group = launch_group(request.user, data["partition"], data["spec"], data["seeds"], data["folds"], data.get("name", ""))
        return Response(RunGroupDetailSerializer(group).data, status=status.HTTP_202_ACCEPTED)

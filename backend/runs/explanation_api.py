"""/api/explanations/: one sample's class probabilities and heat map by a run's kept model (docs/results.md, "Explain")."""
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.core.errors import ServiceError, int_query_param
from backend.core.jobs import JOB_FIELDS, JobSerializer

from .explanations import explanations_for, heat_map_png, readable_sample, start_explanation
from .models import Explanation
from .services import runs_for


class ExplanationSerializer(JobSerializer):
    project = serializers.IntegerField(source="run.project_id", read_only=True)
    dataset = serializers.IntegerField(source="sample.dataset_id", read_only=True, help_text="The sample's dataset.")
    results = serializers.JSONField(read_only=True, help_text="{} until done; then {classes, probabilities (in the order of "
                                    "classes), predicted, explained_class (the class the heat map is of: the predicted one), "
                                    "method, layer (the module Grad-CAM looked at), input_shape (what the model saw: C, H, W or C, D, H, W), windows "
                                    "(1, or the sliding windows of a volume larger than the patch), heat_map_shape (the "
                                    "sample's grid, D H W; null: no heat map), note (why not)}.")
    heat_map_url = serializers.SerializerMethodField(help_text="One plane of the heat map as a transparent PNG over the "
                                                               "sample viewer's plane (?axis=&index=); null without one.")

    class Meta:
        model = Explanation
        fields = ["id", "project", "run", "sample", "dataset", "queue", *JOB_FIELDS, "results", "heat_map_url", "created_at"]
        read_only_fields = fields

    def get_heat_map_url(self, explanation) -> str | None:
        if explanation.status != Explanation.Status.DONE or not explanation.results.get("heat_map_shape"):
            return None
        return f"/api/explanations/{explanation.pk}/heat-map/"


class ExplanationRequestSerializer(serializers.Serializer):
    run = serializers.IntegerField(help_text="The run whose kept model explains the sample.")
    sample = serializers.IntegerField(help_text="A sample of the run's dataset, or of another dataset of the same kind, "
                                                "channels and intensities.")


class ExplanationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Explanations: a sample's class probabilities and a Grad-CAM heat map by a run's kept model, computed by a worker.
    `?run=` lists one run's, `?sample=` one sample's."""

    serializer_class = ExplanationSerializer

    def get_queryset(self):
        explanations = explanations_for(self.request.user).select_related("run", "sample")
        run, sample = int_query_param(self.request, "run"), int_query_param(self.request, "sample")
        if run is not None:
            explanations = explanations.filter(run_id=run)
        return explanations.filter(sample_id=sample) if sample is not None else explanations

    @extend_schema(parameters=[OpenApiParameter("run", int, description="Only this run's explanations."),
                               OpenApiParameter("sample", int, description="Only this sample's.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        explanation = self.get_object()
        if explanation.is_finished:  # the page's polls of one under way are not reads of a result
            record(request.user, explanation.project, Action.READ, explanation)
        return Response(self.get_serializer(explanation).data)

    @extend_schema(request=ExplanationRequestSerializer, responses={202: ExplanationSerializer})
    def create(self, request):
        """Explain a sample with a run's kept model (the project's owners). The same run and sample queued, running or
        done already: that explanation is answered."""
        asked = ExplanationRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        run = runs_for(request.user).filter(pk=asked.validated_data["run"]).select_related("partition__dataset").first()
        if run is None:
            raise ServiceError(f"There is no run {asked.validated_data['run']} that you can read.", field="run", code="not_found",
                               status_code=404)
        explanation = start_explanation(request.user, run, readable_sample(request.user, asked.validated_data["sample"]))
        return Response(ExplanationSerializer(explanation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "image/png"): bytes}, parameters=[
        OpenApiParameter("axis", str, enum=["axial", "coronal", "sagittal"], description="Plane (2D images: axial only)."),
        OpenApiParameter("index", int, description="Plane number along the axis (default: the middle)."),
    ])
    @action(detail=True, methods=["get"], url_path="heat-map")
    def heat_map(self, request, pk=None):
        """One plane of the heat map as a PNG with transparency, on the grid of GET /api/samples/{id}/slice/'s plane."""
        png, used, count = heat_map_png(self.get_object(), request.query_params.get("axis", "axial"),
                                        int_query_param(request, "index"))
        response = HttpResponse(png, content_type="image/png")
        response["X-Plane-Index"], response["X-Plane-Count"] = str(used), str(count)
        return response

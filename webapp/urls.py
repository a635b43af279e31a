from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from backend.core.api import ArchitectureList, LayerSummary, ResourceList, api_not_found
from backend.core.auth_api import TokenLogin
from backend.datasets.api import DatasetViewSet, PartitionViewSet, SampleViewSet
from backend.experiments.api import ComparisonViewSet, GroupViewSet
from backend.pipelines.api import AggregationViewSet, MeasureList, OperationList, PipelineViewSet
from backend.projects.api import ProjectViewSet
from backend.runs.api import EvaluationViewSet, RateSearchViewSet, RunViewSet, TrainingOptions
from backend.runs.explanation_api import ExplanationViewSet
from backend.zoo.api import ImportedModelViewSet

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("samples", SampleViewSet, basename="sample")
router.register("partitions", PartitionViewSet, basename="partition")
router.register("runs", RunViewSet, basename="run")
router.register("rate-searches", RateSearchViewSet, basename="ratesearch")
router.register("evaluations", EvaluationViewSet, basename="evaluation")
router.register("explanations", ExplanationViewSet, basename="explanation")
router.register("groups", GroupViewSet, basename="group")
router.register("comparisons", ComparisonViewSet, basename="comparison")
router.register("pipelines", PipelineViewSet, basename="pipeline")
router.register("aggregations", AggregationViewSet, basename="aggregation")
router.register("imported-models", ImportedModelViewSet, basename="importedmodel")

api_urls = [
    path("", include(router.urls)),
    path("architectures/", ArchitectureList.as_view(), name="architectures"),
    path("architectures/<str:name>/summary/", LayerSummary.as_view(), name="architecture-summary"),
    path("operations/", OperationList.as_view(), name="operations"),
    path("measures/", MeasureList.as_view(), name="measures"),
    path("resources/", ResourceList.as_view(), name="resources"),
    path("training/", TrainingOptions.as_view(), name="training-options"),
    path("auth/token/", TokenLogin.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Anything else under /api/ answers in the API's error shape, not with an HTML page.
    re_path(r"^[\s\S]*$", api_not_found),
]

urlpatterns = [
    path("api/", include(api_urls)),
    path("admin/", admin.site.urls),
    path("", include("frontend.urls")),
]

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from . import views
from .auth import LoginView

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/<int:project_id>/", views.project_page, name="project"),
    path("projects/<int:project_id>/runs/new/", views.run_new_page, name="run-new"),
    path("projects/<int:project_id>/pipelines/new/", views.pipeline_page, name="pipeline-new"),
    path("projects/<int:project_id>/pipelines/<int:pipeline_id>/", views.pipeline_page, name="pipeline"),
    path("datasets/<int:dataset_id>/", views.dataset_page, name="dataset"),
    path("samples/<int:sample_id>/", views.sample_page, name="sample"),
    path("partitions/<int:partition_id>/", views.partition_page, name="partition"),
    path("runs/<int:run_id>/", views.run_page, name="run"),
    path("groups/<int:group_id>/", views.group_page, name="group"),
    path("comparisons/<int:comparison_id>/", views.comparison_page, name="comparison"),
    path("aggregations/<int:aggregation_id>/", views.aggregation_page, name="aggregation"),
    path("zoo/", views.zoo_page, name="zoo"),
    path("projects/<int:project_id>/models/", views.imported_models_page, name="imported-models"),
    path("imported-models/<int:importedmodel_id>/", views.imported_model_page, name="imported-model"),
    # Browsers ask /favicon.ico of what names no icon (the API's JSON, its docs): the pages' own (base.html).
    path("favicon.ico", RedirectView.as_view(url=static("frontend/favicon.svg")), name="favicon"),
]

"""Pages. Each renders a template around one object; the page's script talks to the REST API,
so the browser and scripts go through the same validation and the same messages."""
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from backend.audit.services import Action, events_for, record
from backend.datasets.models import Dataset, Sample
from backend.datasets.services import datasets_for, partitions_for
from backend.pipelines.models import Aggregation
from backend.pipelines.services import aggregations_for
from backend.projects.access import can_change, get_project, projects_for
from backend.projects.models import Role
from backend.runs.services import runs_for


@login_required
def home(request):
    return render(request, "frontend/home.html", {"projects": projects_for(request.user)})


@login_required
def project_page(request, project_id):
    project = get_project(request.user, project_id)
    changeable = can_change(request.user, project)
    return render(request, "frontend/project.html", {
        "project": project, "can_change": changeable,
        "events": events_for(request.user, project)[:20] if changeable else [],
        "members": project.members.select_related("user"), "roles": Role.choices,
        "datasets": project.datasets.all(),
        "runs": project.runs.select_related("partition__dataset"),
        "pipelines": project.pipelines.prefetch_related("versions"),
        "aggregations": Aggregation.objects.filter(dataset__project=project).select_related("dataset"),
    })


@login_required
def partition_page(request, partition_id):
    partition = get_object_or_404(partitions_for(request.user).select_related("dataset__project"), pk=partition_id)
    project = partition.dataset.project
    record(request.user, project, Action.READ, partition)
    return render(request, "frontend/partition.html", {"partition": partition, "dataset": partition.dataset, "project": project,
                                                        "can_change": can_change(request.user, project)})


@login_required
def pipeline_page(request, project_id, pipeline_id=None):
    """The pipeline editor: a new pipeline, or an existing one (its latest version)."""
    project = get_project(request.user, project_id)
    pipeline = get_object_or_404(project.pipelines, pk=pipeline_id) if pipeline_id else None
    if pipeline is not None:
        record(request.user, project, Action.READ, pipeline)
    return render(request, "frontend/pipeline.html", {
        "project": project, "pipeline": pipeline, "can_change": can_change(request.user, project),
        "datasets": project.datasets.filter(status=Dataset.Status.READY),
    })


@login_required
def aggregation_page(request, aggregation_id):
    """A table of measures: its progress, then charts per label, the rows and the exports."""
    aggregation = get_object_or_404(aggregations_for(request.user).select_related("dataset__project", "pipeline_version__pipeline"),
                                    pk=aggregation_id)
    project = aggregation.dataset.project
    record(request.user, project, Action.READ, aggregation)
    return render(request, "frontend/aggregation.html", {
        "aggregation": aggregation, "dataset": aggregation.dataset, "project": project,
        "version": aggregation.pipeline_version, "can_change": can_change(request.user, project)})


@login_required
def dataset_page(request, dataset_id):
    dataset = get_object_or_404(datasets_for(request.user).select_related("project"), pk=dataset_id)
    changeable = can_change(request.user, dataset.project)
    record(request.user, dataset.project, Action.READ, dataset)
    return render(request, "frontend/dataset.html", {"dataset": dataset, "project": dataset.project, "can_change": changeable,
                                                     "aggregations": dataset.aggregations.all()})


@login_required
def sample_page(request, sample_id):
    sample = get_object_or_404(Sample.objects.filter(dataset__in=datasets_for(request.user)).select_related("dataset__project"), pk=sample_id)
    record(request.user, sample.dataset.project, Action.READ, sample.dataset)
    return render(request, "frontend/sample.html", {"sample": sample, "dataset": sample.dataset, "project": sample.dataset.project})


@login_required
def run_new_page(request, project_id):
    """The run form: its fields come from GET /api/training/; the page gives it the project's partitions
    (?partition=<id> picks one), their classes (for per-class factors) and augmentation pipelines.
    ?from=<run> (Clone) is read by the page's script, through the API."""
    project = get_project(request.user, project_id)
    if not can_change(request.user, project):
        raise PermissionDenied("Only the project's owners can launch training runs.")
    partitions = partitions_for(request.user).filter(dataset__project=project, dataset__status=Dataset.Status.READY).select_related("dataset")
    return render(request, "frontend/run_new.html", {
        "project": project, "partitions": partitions, "selected": request.GET.get("partition", ""),
        "partition_classes": {partition.pk: partition.dataset.labels for partition in partitions},
        "augmentations": project.pipelines.filter(kind="augmentation").prefetch_related("versions"),
    })


@login_required
def run_page(request, run_id):
    run = get_object_or_404(runs_for(request.user).select_related("project", "partition__dataset"), pk=run_id)
    changeable = can_change(request.user, run.project)
    record(request.user, run.project, Action.READ, run)
    return render(request, "frontend/run.html", {"run": run, "project": run.project, "can_change": changeable})

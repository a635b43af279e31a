"""Pages. Each renders a template around one object; the page's script talks to the REST API,
so the browser and scripts go through the same validation and the same messages."""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from backend.audit.services import Action, events_for, record
from backend.datasets.label_names import label_rows
from backend.datasets.models import Dataset, Sample
from backend.datasets.planning import plan_in_words, plan_of
from backend.datasets.services import datasets_for, partitions_for
from backend.experiments.api import ComparisonDetailSerializer, RunGroupDetailSerializer
from backend.experiments.comparisons import comparisons_for
from backend.experiments.models import RunGroup
from backend.experiments.services import groups_for, run_groups_of
from backend.pipelines.models import Aggregation
from backend.pipelines.services import aggregations_for
from backend.projects.access import can_change, get_project, projects_for
from backend.projects.models import Role
from backend.runs.api import EvaluationSerializer
from backend.runs.lineage import lineage_of, runs_in, shown_lineage
from backend.runs.segmentations import draws_a_map
from backend.runs.services import evaluations_for, runs_for
from backend.zoo.services import architecture_choices, imported_models_for
from frontend.run_table import run_table


@login_required
def home(request):
    return render(request, "frontend/home.html", {"projects": projects_for(request.user)})


@login_required
def project_page(request, project_id):
    project = get_project(request.user, project_id)
    changeable = can_change(request.user, project)
    runs = list(project.runs.select_related("partition__dataset"))
    return render(request, "frontend/project.html", {
        "project": project, "can_change": changeable,
        "events": events_for(request.user, project)[:20] if changeable else [],
        "members": project.members.select_related("user"), "roles": Role.choices,
        "datasets": project.datasets.all(),
        "runs": runs, "run_table": run_table(runs),  # the settings that differ between the runs, a column each
        "pipelines": project.pipelines.prefetch_related("versions"),
        "aggregations": Aggregation.objects.filter(dataset__project=project).select_related("dataset"),
        "imported_models": project.imported_models.all(),
        "groups": run_groups_of(project),
        "comparisons": project.comparisons.all()[:20],  # saved comparisons, newest first
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
    plan = plan_of(dataset)
    labels = label_rows(dataset) if dataset.task == Dataset.Task.SEGMENTATION and dataset.status == Dataset.Status.READY else []
    return render(request, "frontend/dataset.html", {"dataset": dataset, "project": dataset.project, "can_change": changeable,
                                                     "aggregations": dataset.aggregations.all(), "label_rows": labels,
                                                     "plan": plan, "plan_rows": plan_in_words(plan) if plan else []})


@login_required
def sample_page(request, sample_id):
    sample = get_object_or_404(Sample.objects.filter(dataset__in=datasets_for(request.user)).select_related("dataset__project"), pk=sample_id)
    record(request.user, sample.dataset.project, Action.READ, sample.dataset)
    # Opened from a run's predictions (?run=<id>), or from a segmentation's case (?evaluation=<id>: its predicted mask
    # over the sample): a way back to that run, where this reader may open it.
    run_id, evaluation_id = request.GET.get("run", ""), request.GET.get("evaluation", "")
    from_run = runs_for(request.user).filter(pk=int(run_id)).first() if run_id.isdigit() else None
    from_evaluation = evaluations_for(request.user).select_related("run").filter(pk=int(evaluation_id)).first() \
        if evaluation_id.isdigit() else None
    if from_evaluation is not None:
        from_run = from_evaluation.run
    return render(request, "frontend/sample.html", {"sample": sample, "dataset": sample.dataset, "project": sample.dataset.project,
                                                    "from_run": from_run, "from_evaluation": from_evaluation})


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
        "partition_tasks": {partition.pk: partition.dataset.task for partition in partitions},
        # The images' size and channels: the form offers to resize inside the network when a model cannot take them.
        "partition_shapes": {partition.pk: {"height": partition.dataset.height, "width": partition.dataset.width,
                                            "channels": partition.dataset.channels} for partition in partitions},
        "augmentations": project.pipelines.filter(kind="augmentation").prefetch_related("versions"),
    })


@login_required
def zoo_page(request):
    """The model zoo: the networks as cards, and a chosen one's layers for one of the user's datasets (picked from
    the ready ones, by project) or for a typed image size. The page's script asks the API for both."""
    datasets = (datasets_for(request.user).filter(status=Dataset.Status.READY, channels__gt=0)
                .select_related("project").order_by("project__name", "name"))
    by_project: dict = {}
    for dataset in datasets:
        by_project.setdefault(dataset.project.name, []).append(dataset)
    return render(request, "frontend/zoo.html", {"datasets_by_project": by_project, "chosen_dataset": request.GET.get("dataset", "")})


@login_required
def run_page(request, run_id):
    run = get_object_or_404(runs_for(request.user).select_related("project", "partition__dataset"), pk=run_id)
    changeable = can_change(request.user, run.project)
    record(request.user, run.project, Action.READ, run)
    # Earlier runs in the chain are linked only where this reader may open them; the others are named.
    readable = set(runs_for(request.user).filter(pk__in=runs_in(lineage_of(run))).values_list("pk", flat=True))
    # The newest evaluation (on the test subset where there is one), as the API gives it: the page shows it at once.
    evaluation = run.evaluations.filter(subset="test", dataset__isnull=True).first() or run.evaluations.first()
    return render(request, "frontend/run.html", {"run": run, "project": run.project, "can_change": changeable,
                                                 "segments": draws_a_map(run),
                                                 "lineage": shown_lineage(run, readable),
                                                 "evaluation": EvaluationSerializer(evaluation).data if evaluation else None,
                                                 "other_datasets": other_datasets(request.user, run) if changeable else []})


def other_datasets(user, run) -> list:
    """Datasets the run's model could be measured on (external validation): ready, labelled with classes, readable by
    the user, not the run's own. Whether each fits the model is asked when one is chosen (its class mapping)."""
    if run.status != run.Status.SUCCEEDED:
        return []
    ready = datasets_for(user).filter(status=Dataset.Status.READY).exclude(pk=run.partition.dataset_id)
    return [d for d in ready.select_related("project").order_by("project__name", "name")
            if d.task != Dataset.Task.SEGMENTATION and any(d.labels)]


@login_required
def imported_models_page(request, project_id):
    """Import a model (ONNX, safetensors) and the project's imported models: opset, inputs, what each became and why."""
    project = get_project(request.user, project_id)
    return render(request, "frontend/imported_models.html", {
        "project": project, "can_change": can_change(request.user, project), "architectures": architecture_choices(),
        "imported_models": project.imported_models.select_related("created_by"),
        "max_megabytes": settings.MODEL_IMPORT_MAX_BYTES // 1024**2,
    })


@login_required
def imported_model_page(request, importedmodel_id):
    """One imported model: its facts, the import's outcome and reason, and a form to predict one image."""
    imported = get_object_or_404(imported_models_for(request.user).select_related("project", "created_by"), pk=importedmodel_id)
    record(request.user, imported.project, Action.READ, imported)
    return render(request, "frontend/imported_model.html", {"model": imported, "project": imported.project,
                                                            "can_change": can_change(request.user, imported.project)})


@login_required
def group_page(request, group_id):
    """A group of runs (repeats over seeds, folds of a cross-validation): its bands per epoch, its test metrics across
    members beside the pooled interval, its members; a sweep: what it tries, its trials against their outcome, its best.
    The page's script follows the group through the API."""
    group = get_object_or_404(groups_for(request.user).select_related("project", "partition__dataset"), pk=group_id)
    record(request.user, group.project, Action.READ, group, object_type="group")
    template = "frontend/sweep.html" if group.kind == RunGroup.Kind.SWEEP else "frontend/group.html"
    return render(request, template, {"group": group, "project": group.project, "can_change": can_change(request.user, group.project),
                                      "group_data": RunGroupDetailSerializer(group).data})


@login_required
def comparison_page(request, comparison_id):
    """Runs and groups side by side (docs/results.md, "Compare"): curves of a chosen metric, test metrics with
    intervals, bar charts, ROC curves and a paired test between two runs. Its address is shared with the project's
    members; the page draws at once from the comparison's JSON and asks the API for another metric or a paired test."""
    comparison = get_object_or_404(comparisons_for(request.user).select_related("project"), pk=comparison_id)
    record(request.user, comparison.project, Action.READ, comparison, object_type="comparison")
    return render(request, "frontend/comparison.html", {"comparison": comparison, "project": comparison.project,
                                                        "can_change": can_change(request.user, comparison.project),
                                                        "comparison_data": ComparisonDetailSerializer(comparison).data})

"""The rules of pipelines: who may change them, and that a used version never changes."""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlan, Thing, carry_out
from backend.core.errors import ServiceError
from backend.core.jobs import stop
from backend.projects.access import projects_for, require_owner
from workers.engine.pipelines import OPERATIONS, PipelineError
from workers.engine.pipelines import Pipeline as EnginePipeline
from workers.engine.pipelines.measures import checked_measures

from .models import Aggregation, Pipeline, PipelineVersion

RUN_ONCE = (Pipeline.Kind.PREPROCESSING, Pipeline.Kind.AGGREGATION)


def pipelines_for(user):
    return Pipeline.objects.filter(project__in=projects_for(user))


def checked_steps(steps, kind: str) -> list[dict]:
    """The canonical steps, or a ServiceError listing every problem with its step."""
    try:
        pipeline = EnginePipeline.from_steps(steps)
    except PipelineError as exc:
        errors = [{"code": "invalid", "message": f"Step {e.step + 1}: {e.message}", "field": f"steps[{e.step}].{e.param or 'op'}"}
                  for e in exc.errors]
        raise ServiceError(errors[0]["message"], field=errors[0]["field"], errors=errors)
    if kind in RUN_ONCE:
        random = [op.title for op in pipeline.operations if op.random]
        if random:
            raise ServiceError(f"A{'n' if kind == Pipeline.Kind.AGGREGATION else ''} {kind} pipeline runs once, so it cannot hold "
                               f"random operations ({', '.join(random)}); put them in an augmentation pipeline.", field="steps")
    return pipeline.steps()


def checked_measures_for(measures, kind: str) -> list[str]:
    """An aggregation pipeline's measures (at least one, each known); other kinds take none."""
    measures = measures or []
    if kind != Pipeline.Kind.AGGREGATION:
        if measures:
            raise ServiceError("Only aggregation pipelines take measures; choose the aggregation kind to measure samples.", field="measures")
        return []
    try:
        names = checked_measures(measures)
    except ValueError as exc:
        raise ServiceError(f"{str(exc)[0].upper()}{str(exc)[1:]}.", field="measures")
    if not names:
        raise ServiceError("Choose at least one measure (mean, volume of the mask, histogram ...): an aggregation pipeline "
                           "makes a table of them.", field="measures")
    return names


def create_pipeline(user, project, name: str, kind: str, steps, measures=None) -> Pipeline:
    require_owner(user, project)
    canonical = checked_steps(steps, kind)
    measures = checked_measures_for(measures, kind)
    try:
        with transaction.atomic():
            pipeline = Pipeline.objects.create(project=project, name=name.strip(), kind=kind, created_by=user)
            PipelineVersion.objects.create(pipeline=pipeline, number=1, steps=canonical, measures=measures)
    except IntegrityError:
        raise ServiceError(f"This project already has a pipeline called '{name.strip()}'; choose another name.", field="name")
    record(user, project, Action.CREATE, pipeline)
    return pipeline


def update_pipeline(user, pipeline: Pipeline, steps, name: str | None = None, measures=None) -> PipelineVersion:
    """Saves new steps (and measures): into the latest version while nothing used it, else as a new version.

    measures None keeps the latest version's.
    """
    require_owner(user, pipeline.project)
    canonical = checked_steps(steps, pipeline.kind)
    with transaction.atomic():
        latest = PipelineVersion.objects.select_for_update().filter(pipeline=pipeline).order_by("-number").first()
        if name is not None and name.strip() and name.strip() != pipeline.name:
            if Pipeline.objects.filter(project=pipeline.project, name=name.strip()).exclude(pk=pipeline.pk).exists():
                raise ServiceError(f"This project already has a pipeline called '{name.strip()}'; choose another name.", field="name")
            Pipeline.objects.filter(pk=pipeline.pk).update(name=name.strip())
        chosen = checked_measures_for(latest.measures if measures is None else measures, pipeline.kind)
        if (latest.steps, latest.measures) == (canonical, chosen):
            version = latest
        elif latest.used_at is None:
            latest.steps, latest.measures = canonical, chosen
            latest.save(update_fields=["steps", "measures"])
            version = latest
        else:
            version = PipelineVersion.objects.create(pipeline=pipeline, number=latest.number + 1, steps=canonical, measures=chosen)
    record(user, pipeline.project, Action.CHANGE, pipeline, name=f"{pipeline.name} v{version.number}")
    return version


def mark_used(version: PipelineVersion) -> None:
    """Freezes the version: from now on, edits make a new one."""
    PipelineVersion.objects.filter(pk=version.pk, used_at__isnull=True).update(used_at=timezone.now())


def pipeline_deletion(pipeline: Pipeline) -> DeletionPlan:
    """Deleting a pipeline takes its versions; the runs it augmented only when asked. The datasets it derived and the
    tables of measures it made forbid it: they say how they were made by naming it."""
    plan = DeletionPlan(Thing.of("pipeline", pipeline), row=pipeline)
    for version in pipeline.versions.all():
        plan.add_runs(version.runs.all())
        plan.also.extend(Thing.of("rate_search", search) for search in version.rate_searches.all() if not search.is_finished)
        made = [f"dataset '{dataset.name}'" for dataset in version.derived_datasets.all()]
        made += [f"table of measures '{aggregation.name}'" for aggregation in version.aggregations.all()]
        if made:
            plan.blocked_by.append(f"Version {version.number} made the {', '.join(made)}; it is kept so they can say how they "
                                   "were made. Delete them first.")
    return plan


def delete_pipeline(user, pipeline: Pipeline, with_runs: bool = False) -> None:
    carry_out(user, pipeline.project, pipeline_deletion(pipeline), with_runs)


def operation_schemas() -> list[dict]:
    return [kind.schema() for kind in OPERATIONS.values()]


WRONG_KIND = {
    Pipeline.Kind.AUGMENTATION: "An augmentation pipeline is applied while a model trains.",
    Pipeline.Kind.PREPROCESSING: "A preprocessing pipeline makes a derived dataset (POST /api/pipelines/{id}/run/).",
    Pipeline.Kind.AGGREGATION: "An aggregation pipeline makes a table of measures (POST /api/aggregations/).",
}


def check_runnable(pipeline: Pipeline, dataset) -> None:
    from backend.datasets.models import Dataset

    if dataset.project_id != pipeline.project_id:
        raise ServiceError("The dataset belongs to another project; run pipelines of the dataset's own project.", field="dataset")
    if dataset.status != Dataset.Status.READY:
        raise ServiceError("This dataset is not ready yet; wait for its ingest to finish.", field="dataset")


def run_preprocessing(user, pipeline: Pipeline, dataset, name: str = ""):
    """A derived dataset: the pipeline's latest version over the dataset, made by a worker job."""
    from backend.core.tasks import INGEST_QUEUE, send_after_commit
    from backend.datasets.models import Dataset

    require_owner(user, pipeline.project)
    if pipeline.kind != Pipeline.Kind.PREPROCESSING:
        raise ServiceError(WRONG_KIND[pipeline.kind] + " To make a derived dataset, run a preprocessing pipeline.", field="pipeline")
    check_runnable(pipeline, dataset)
    version = pipeline.latest
    with transaction.atomic():
        mark_used(version)
        derived = Dataset.objects.create(
            project=pipeline.project, name=(name or "").strip() or f"{dataset.name} · {pipeline.name} v{version.number}"[:200],
            task=dataset.task, label_names=dataset.label_names, derived_from=dataset, pipeline_version=version, created_by=user,
            upload_name=f"{pipeline.name} v{version.number} over {dataset.name}"[:255])
        send_after_commit("workers.tasks.preprocess_dataset", derived.pk, INGEST_QUEUE)
        record(user, pipeline.project, Action.CREATE, derived, name=f"{derived.name} (preprocessed)")
    return derived


def aggregations_for(user):
    return Aggregation.objects.filter(dataset__project__in=projects_for(user))


def start_aggregation(user, pipeline: Pipeline, dataset, name: str = "") -> Aggregation:
    """A table of measures: the pipeline's latest version over every sample of the dataset, made by a worker job."""
    from backend.core.tasks import INGEST_QUEUE, send_after_commit

    require_owner(user, pipeline.project)
    if pipeline.kind != Pipeline.Kind.AGGREGATION:
        raise ServiceError(WRONG_KIND[pipeline.kind] + " To measure samples, choose an aggregation pipeline.", field="pipeline")
    check_runnable(pipeline, dataset)
    version = pipeline.latest
    with transaction.atomic():
        mark_used(version)
        aggregation = Aggregation.objects.create(
            dataset=dataset, pipeline_version=version, measures=version.measures, created_by=user,
            name=(name or "").strip() or f"{pipeline.name} v{version.number} · {dataset.name}"[:200])
        send_after_commit("workers.tasks.aggregate_dataset", aggregation.pk, INGEST_QUEUE)
        record(user, pipeline.project, Action.CREATE, aggregation)
    return aggregation


def stop_aggregation(user, aggregation: Aggregation) -> None:
    require_owner(user, aggregation.project)
    stop(aggregation)


def aggregation_deletion(aggregation: Aggregation) -> DeletionPlan:
    """Deleting a table of measures takes its rows; one still measuring is stopped first."""
    return DeletionPlan(Thing.of("aggregation", aggregation), row=aggregation)


def delete_aggregation(user, aggregation: Aggregation, with_runs: bool = False) -> None:
    carry_out(user, aggregation.project, aggregation_deletion(aggregation), with_runs)

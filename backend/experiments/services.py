"""Groups of runs (issue 22, T5): launching one spec as several runs, and what the group's runs say together.

Each member is a normal run launched by the runs app's own service (queued, resumable, evaluated when it succeeds);
a group only records which runs belong together. Its figures: every metric per epoch as the mean across members with
a band of one standard deviation, the test metrics as mean ± standard deviation across members, and the members'
predictions pooled into one evaluation by a worker (workers/groups.py: results.py needs scikit-learn, hence SciPy,
which the web process does not import)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from django.db import transaction
from django.db.models import Count

from backend.audit.services import Action, record
from backend.core.deletion import DeletionPlan, Thing, carry_out
from backend.core.errors import ServiceError
from backend.datasets.models import Partition
from backend.projects.access import projects_for, require_owner
from backend.runs.models import Evaluation, MetricPoint, TrainingRun
from backend.runs.services import architecture_title, launch_run, prepared_spec, start_evaluation

from .models import Comparison, GroupMember, RunGroup

FEWEST_SEEDS, MOST_SEEDS = 2, 10


def groups_for(user):
    """Groups in the user's projects."""
    if not user.is_authenticated:
        return RunGroup.objects.none()
    return RunGroup.objects.filter(project__in=projects_for(user))


def run_groups_of(project):
    """A project's groups, newest first, each with its `member_count`."""
    return project.run_groups.select_related("partition__dataset").annotate(member_count=Count("members"))


# ------------------------------------------------------------------ launching


def fold_partitions(partition: Partition) -> list[Partition]:
    """The k partitions of the cross-validation `partition` belongs to, fold 1 first (each holds one fold out as its
    validation subset: backend/datasets/services.py create_kfold_partitions)."""
    if partition.method != Partition.Method.KFOLD or partition.folds < 2:
        raise ServiceError(f"The partition '{partition.name}' has no folds (it is not one fold of a k-fold cross-validation), "
                           "so there is nothing to cross-validate over. Make a k-fold partition on the dataset page, or "
                           "repeat with seeds instead.", field="folds")
    siblings = list(Partition.objects.filter(dataset=partition.dataset, method=Partition.Method.KFOLD, folds=partition.folds,
                                             seed=partition.seed).order_by("fold"))
    missing = sorted(set(range(1, partition.folds + 1)) - {p.fold for p in siblings})
    if missing:
        raise ServiceError(f"Fold{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of this {partition.folds}-fold "
                           "cross-validation were deleted; make the k-fold partitions again to cross-validate.", field="folds")
    return siblings


def check_seeds(seeds, folds: bool) -> int:
    fewest = 1 if folds else FEWEST_SEEDS  # a cross-validation is already several runs with one seed each
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not fewest <= seeds <= MOST_SEEDS:
        alone = " (1 is a single run: launch it as a run)" if not folds else ""
        raise ServiceError(f"Repeat with {fewest} to {MOST_SEEDS} seeds{alone}; got {seeds!r}.", field="seeds")
    return seeds


def spec_refusal(error: ServiceError) -> ServiceError:
    """The run service's refusal of the spec, each field named as the group's request has it (`spec.epochs`)."""
    def named(field):
        return field if field in (None, "partition") else f"spec.{field}"
    errors = [{**entry, "field": named(entry.get("field"))} for entry in error.errors]
    return ServiceError(errors[0]["message"], field=errors[0]["field"], code=error.code, status_code=error.status_code,
                        errors=errors)


def member_plan(project, partition: Partition, spec_data: dict, seeds: int, folds: bool, user) -> tuple[list[dict], str]:
    """(partition, fold, seed, spec) of every member, each spec checked by the run service before anything is made;
    and the architecture the specs resolve to."""
    partitions = fold_partitions(partition) if folds else [partition]
    try:
        first, _ = prepared_spec(project, partitions[0], spec_data, user)
        plan = []
        for member_partition in partitions:
            for offset in range(seeds):
                seed = first["seed"] + offset
                member_spec = {**spec_data, "seed": seed}
                prepared_spec(project, member_partition, member_spec, user)  # a fold's training subset may differ in size
                plan.append({"partition": member_partition, "fold": member_partition.fold if folds else None,
                             "seed": seed, "spec": member_spec})
    except ServiceError as refused:
        raise spec_refusal(refused) from None
    return plan, first["model"]["architecture"]


def group_name(partition: Partition, architecture: str, seeds: int, folds: bool, asked: str) -> str:
    if asked.strip():
        return asked.strip()[:200]
    model = architecture_title(architecture)
    what = f"{partition.folds}-fold cross-validation" + (f" × {seeds} seeds" if seeds > 1 else "") if folds else f"{seeds} seeds"
    return f"{model} on {partition.dataset.name}, {what}"[:200]


def member_name(group: RunGroup, fold: int | None, seed: int) -> str:
    where = f"fold {fold} of {group.partition.folds}, " if fold else ""
    return f"{group.name}: {where}seed {seed}"[:200]


def launch_group(user, partition: Partition, spec_data: dict, seeds: int = 1, folds: bool = False, name: str = "") -> RunGroup:
    """One spec as several runs: over `seeds` seeds (spec seed + 0, 1, ...), and over the folds of a k-fold partition
    when `folds`. Every member's spec is checked first; a refusal creates nothing."""
    project = partition.dataset.project
    require_owner(user, project)
    seeds = check_seeds(seeds, folds)
    if not isinstance(spec_data, dict):
        raise ServiceError("The spec is an object of training settings (docs/training.md).", field="spec")
    plan, architecture = member_plan(project, partition, spec_data, seeds, folds, user)
    with transaction.atomic():
        group = RunGroup.objects.create(project=project, partition=partition, seeds=seeds, spec=spec_data, created_by=user,
                                        kind=RunGroup.Kind.FOLDS if folds else RunGroup.Kind.SEEDS,
                                        name=group_name(partition, architecture, seeds, folds, name))
        for member in plan:
            run = launch_run(project, member["partition"], member["spec"], user,
                             name=member_name(group, member["fold"], member["seed"]))
            GroupMember.objects.create(group=group, run=run, seed=member["seed"], fold=member["fold"])
        record(user, project, Action.CREATE, group, object_type="group")
    return group


def evaluate_for_groups(run: TrainingRun) -> None:
    """A cross-validation's member, once it succeeds, is measured on the fold it held out (its validation subset):
    the out-of-fold predictions its group pools. (Members of repeats are measured on the test subset, as every run.)"""
    if not GroupMember.objects.filter(run=run, group__kind=RunGroup.Kind.FOLDS).exists():
        return
    run = TrainingRun.objects.get(pk=run.pk)  # as the training job has just written it: succeeded
    if not run.evaluations.filter(subset="validation", dataset__isnull=True).exists():
        start_evaluation(run, "validation")


# ------------------------------------------------------------------ the group's figures


def spread(values) -> dict:
    """Mean and sample standard deviation (ddof=1: the members are a sample of the runs this spec could give) of the
    values that are numbers; the deviation is None below two values."""
    kept = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(kept):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(kept.mean()), "std": float(kept.std(ddof=1)) if len(kept) > 1 else None, "n": int(len(kept))}


def epoch_bands(series: list[dict[int, float]]) -> list[dict]:
    """Per epoch that any member reached: the mean and standard deviation across the members that have a value."""
    epochs = sorted({epoch for values in series for epoch in values})
    return [{"epoch": epoch, **spread([values.get(epoch) for values in series])} for epoch in epochs]


def metric_bands(run_ids: list[int]) -> list[dict]:
    """Every metric the members recorded, per subset: its band per epoch."""
    by_metric: dict[tuple[str, str], dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    points = MetricPoint.objects.filter(run_id__in=run_ids).values_list("run_id", "subset", "name", "epoch", "value")
    for run_id, subset, name, epoch, value in points:
        by_metric[(subset, name)][run_id][epoch] = value
    return [{"subset": subset, "name": name, "epochs": epoch_bands(list(members.values()))}
            for (subset, name), members in sorted(by_metric.items(), key=lambda item: (item[0][1], item[0][0]))]


def test_spread(evaluations) -> dict[str, dict]:
    """Each headline metric of the members' evaluations: mean ± standard deviation across the members."""
    names = [name for evaluation in evaluations for name in evaluation.results.get("metrics", {})]
    return {name: spread([e.results["metrics"].get(name, {}).get("value") for e in evaluations]) for name in dict.fromkeys(names)}


def group_summary(group: RunGroup) -> dict:
    """The group page's figures: bands per epoch, the test metrics across members, the pooled evaluation (current
    when it pooled every member evaluated so far), and how many members have finished."""
    members = list(group.members.select_related("run__partition"))
    runs = [member.run for member in members]
    evaluations = group.member_evaluations()
    pooled = group.pooled or {}
    pooled_ids = sorted(pooled.get("evaluations", []))
    current = bool(evaluations) and pooled_ids == sorted(e.pk for e in evaluations)
    return {
        "subset": group.evaluated_subset,
        "members": len(runs),
        "finished": sum(run.is_finished for run in runs),
        "succeeded": sum(run.status == TrainingRun.Status.SUCCEEDED for run in runs),
        "evaluated": len(evaluations),
        "curves": metric_bands([run.pk for run in runs]),
        "test": test_spread(evaluations),
        "pooled": {**pooled, "current": current},
        # Nothing more will change without someone acting: every member finished, every evaluation expected ended, the
        # pooled figure caught up (or failed). The page stops asking then.
        "settled": all(run.is_finished for run in runs) and evaluations_ended(group, runs)
                   and (not evaluations or current or "error" in pooled),
    }


def evaluations_ended(group: RunGroup, runs: list[TrainingRun]) -> bool:
    """Every member that succeeded and has samples in the group's subset has an evaluation of it that ended."""
    subset = group.evaluated_subset
    expected = {run.pk for run in runs if run.status == TrainingRun.Status.SUCCEEDED and sum(run.partition.counts.get(subset, {}).values())}
    ended = set(Evaluation.objects.filter(run_id__in=expected, subset=subset, dataset__isnull=True,
                                          status__in=Evaluation.finished_statuses()).values_list("run_id", flat=True))
    return expected <= ended


# ------------------------------------------------------------------ deleting


def group_deletion(group: RunGroup) -> DeletionPlan:
    """Deleting a group takes the group alone (a sweep: its study too): its runs stay, each a normal run on the project
    page. Not while one of them is queued or training: the group would be gone under a sweep that still reports to it."""
    folders = [group.project.storage_dir / "sweeps" / str(group.pk)] if group.kind == RunGroup.Kind.SWEEP else []
    plan = DeletionPlan(Thing.of("group", group), row=group, folders=folders)
    working = group.runs.exclude(status__in=TrainingRun.finished_statuses()).count()
    if working:
        plan.blocked_by.append(f"{working} of its runs {'is' if working == 1 else 'are'} still queued or training; stop the "
                               "group first (Stop on its page, or POST stop/), then delete it. Its runs are kept either way.")
    return plan


def delete_group(actor, group: RunGroup) -> None:
    carry_out(actor, group.project, group_deletion(group), with_runs=False)


def comparison_deletion(comparison: Comparison) -> DeletionPlan:
    """A comparison is a saved selection: deleting it takes nothing else."""
    return DeletionPlan(Thing.of("comparison", comparison), row=comparison)


def delete_comparison(actor, comparison: Comparison) -> None:
    carry_out(actor, comparison.project, comparison_deletion(comparison), with_runs=False)

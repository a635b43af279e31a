"""Sweeps (issue 22, T5; docs/results.md "Sweeps"): one spec tried with other values of up to four settings, each
member a normal run (queued, resumable, evaluated when it succeeds) whose settings Optuna chose
(workers/engine/sweeps.py: its samplers, its pruners, its study in a journal file beside the sweep).

The life of a sweep: the launch checks the search and every value it can try against the run service (a refusal
creates nothing), then starts as many members as may run at once. Each member reports its validation metric per epoch
(`report_epoch`, from the training job): the pruner may stop it there. When a member ends, `member_ended` tells Optuna
how it did and starts the next; a member that crashed is trained once more with the same settings. The workers'
heartbeat calls `advance_sweeps` too, so a member stopped from a page, or a worker that died between two steps,
does not leave the sweep waiting."""
from __future__ import annotations

import logging
import math

from django.db import transaction
from django.db.models import Count, Q

from backend.audit.services import Action, record
from backend.core.errors import ServiceError
from backend.core.jobs import stop
from backend.datasets.models import Partition
from backend.projects.access import require_owner
from backend.runs.models import MetricPoint, TrainingRun
from backend.runs.services import architecture_title, launch_run, prepared_spec
from workers.engine.sweeps import MOST_MEMBERS, PRUNERS, SAMPLERS, Dimension, Search, SearchInvalid, Study, parsed_search

from .models import GroupMember, RunGroup
from .services import spec_refusal

log = logging.getLogger(__name__)
__all__ = ["MOST_MEMBERS", "launch_sweep", "stop_group", "sweep_summary"]
Outcome = GroupMember.Outcome
Status = TrainingRun.Status


# ------------------------------------------------------------------ checking and launching


def search_refusal(invalid: SearchInvalid) -> ServiceError:
    field = "search" if invalid.field == "search" else f"search.{invalid.field}"
    return ServiceError(str(invalid), field=field)


def with_setting(spec: dict, setting: str, value) -> dict:
    """A copy of the spec with one dotted setting set (`optimizer.learning_rate`), its sections copied on the way."""
    spec = dict(spec)
    head, _, rest = setting.partition(".")
    if rest:
        section = spec.get(head)
        spec[head] = with_setting(section if isinstance(section, dict) else {}, rest, value)
    else:
        spec[head] = value
    return spec


def with_settings(spec: dict, values: dict) -> dict:
    for setting, value in values.items():
        spec = with_setting(spec, setting, value)
    return spec


def setting_of(spec: dict, setting: str):
    for part in setting.split("."):
        spec = spec.get(part) if isinstance(spec, dict) else None
    return spec


def checked_dimension(project, partition: Partition, spec_data: dict, dimension: Dimension, k: int, user) -> Dimension:
    """Each listed value, or both ends of a range, is a spec the run service accepts; a range over a setting of
    whole numbers draws whole numbers."""
    tried = [("values", v) for v in dimension.values] or [("low", dimension.low), ("high", dimension.high)]
    resolved = None
    for part, value in tried:
        try:
            resolved, _ = prepared_spec(project, partition, with_setting(spec_data, dimension.setting, value), user)
        except ServiceError as refused:
            raise ServiceError(f"With {dimension.setting} = {value!r}: {refused}", field=f"search.dimensions.{k}.{part}") from None
        if setting_of(resolved.to_dict(), dimension.setting) is None:
            raise ServiceError(f"'{dimension.setting}' is not a training setting this spec has (docs/training.md lists them, "
                               "e.g. optimizer.learning_rate, batch_size, model.architecture).",
                               field=f"search.dimensions.{k}.setting")
    whole = isinstance(setting_of(resolved.to_dict(), dimension.setting), int)
    if dimension.is_range and whole and not dimension.integer:
        return Dimension(dimension.setting, low=int(math.ceil(dimension.low)), high=int(math.floor(dimension.high)),
                         log=dimension.log, integer=True)
    return dimension


def objective_of(spec, partition: Partition) -> tuple[str, str]:
    """The validation metric the sweep picks by (the spec's monitored one) and whether higher is better."""
    if not sum(partition.counts.get("validation", {}).values()):
        raise ServiceError("A sweep compares its runs on the validation subset, and this partition has none. Choose a "
                           "partition with a validation subset.", field="partition")
    subset, name, higher = spec.monitored
    if subset != "validation":
        raise ServiceError(f"A sweep picks settings by a validation metric; this spec monitors {subset}.{name}. Monitor a "
                           "validation metric (e.g. validation.accuracy).", field="spec.monitor")
    return f"{subset}.{name}", "maximize" if higher else "minimize"


def checked_search(project, partition: Partition, spec_data: dict, search_data, user) -> dict:
    """The search as stored with the sweep: what Optuna is asked, the objective and the seed."""
    try:
        search = parsed_search(search_data)
    except SearchInvalid as invalid:
        raise search_refusal(invalid) from None
    try:
        base, _ = prepared_spec(project, partition, spec_data, user)
    except ServiceError as refused:
        raise spec_refusal(refused) from None
    dimensions = tuple(checked_dimension(project, partition, spec_data, d, k, user) for k, d in enumerate(search.dimensions))
    objective, direction = objective_of(base, partition)
    epochs = max([base.epochs] + [int(v) for d in dimensions if d.setting == "epochs" for v in (d.values or (d.high,))])
    return {**Search(dimensions, search.sampler, search.trials, search.parallel, search.pruner).to_dict(),
            "objective": objective, "direction": direction, "epochs": epochs, "seed": base["seed"],
            "architecture": base["model"]["architecture"]}


def sweep_name(partition: Partition, search: dict, asked: str) -> str:
    if asked.strip():
        return asked.strip()[:200]
    settings = ", ".join(d["setting"] for d in search["dimensions"])
    return f"{architecture_title(search['architecture'])} on {partition.dataset.name}: sweep over {settings}"[:200]


def launch_sweep(user, partition: Partition, spec_data: dict, search_data, name: str = "") -> RunGroup:
    """Check the search and every value it can try, then start the first members. A refusal creates nothing."""
    project = partition.dataset.project
    require_owner(user, project)
    if not isinstance(spec_data, dict):
        raise ServiceError("The spec is an object of training settings (docs/training.md).", field="spec")
    search = checked_search(project, partition, spec_data, search_data, user)
    with transaction.atomic():
        group = RunGroup.objects.create(project=project, partition=partition, kind=RunGroup.Kind.SWEEP, seeds=1,
                                        spec=spec_data, search=search, created_by=user,
                                        name=sweep_name(partition, search, name))
        record(user, project, Action.CREATE, group, object_type="group")
        fill(RunGroup.objects.select_for_update().get(pk=group.pk))
    return group


# ------------------------------------------------------------------ the study


def sweep_folder(group: RunGroup):
    """Where the sweep's Optuna study is kept (removed with the sweep)."""
    return group.project.storage_dir / "sweeps" / str(group.pk)


def study_of(group: RunGroup) -> Study:
    search = parsed_search(group.search)
    return Study(sweep_folder(group) / "study.journal", search, group.search["direction"], group.search["epochs"],
                 group.search["seed"])


def member_name(group: RunGroup, trial: int, values: dict, attempt: int) -> str:
    shown = ", ".join(f"{setting.rsplit('.', 1)[-1]} {shown_value(value)}" for setting, value in values.items())
    again = " (again)" if attempt > 1 else ""
    return f"{group.name[:120]}: trial {trial + 1}{again}, {shown}"[:200]


def shown_value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def start_member(group: RunGroup, study: Study, values: dict | None = None, attempt: int = 1) -> GroupMember:
    """Ask Optuna for a trial (or for `values` again) and launch its run; the caller holds the group's lock."""
    trial, chosen = study.ask(values)
    spec = with_settings(group.spec, chosen)
    run = launch_run(group.project, group.partition, spec, group.created_by, name=member_name(group, trial, chosen, attempt))
    return GroupMember.objects.create(group=group, run=run, seed=run.spec["seed"], trial=trial, values=chosen, attempt=attempt)


def trials_used(members: list[GroupMember]) -> int:
    """Trials spent: a member trained again after a crash is its first run's trial."""
    return sum(member.outcome != Outcome.REPLACED for member in members)


def fill(group: RunGroup) -> None:
    """Start members until `parallel` are queued or training, or the trials are spent, or the sweep was stopped."""
    if group.stop_requested:
        return
    members = list(group.members.select_related("run"))
    active = sum(not member.run.is_finished for member in members)
    used = trials_used(members)
    if active >= group.search["parallel"] or used >= group.search["trials"]:
        return
    study = study_of(group)
    for _ in range(min(group.search["parallel"] - active, group.search["trials"] - used)):
        start_member(group, study)


# ------------------------------------------------------------------ while a member trains


def member_of(run_id: int) -> GroupMember | None:
    """The run's membership of a sweep, if it is one's."""
    return GroupMember.objects.filter(run_id=run_id, group__kind=RunGroup.Kind.SWEEP).select_related("group__project").first()


def report_epoch(member: GroupMember, epoch: int, value: float) -> str:
    """The member's objective after `epoch`, told to Optuna; the reason to stop it when the pruner says so, else "".
    A fault of the sweep's (its study unreadable) is logged and the run trains on: a sweep never fails a run."""
    group = member.group
    try:
        prune = study_of(group).report(member.trial, epoch, value)
    except Exception:  # noqa: BLE001 - see above
        log.exception("sweep %s could not take epoch %s of run %s; the run goes on unpruned", group.pk, epoch, member.run_id)
        return ""
    if not prune:
        return ""
    GroupMember.objects.filter(pk=member.pk).update(pruned_at=epoch)
    pruner = PRUNERS[group.search["pruner"]].split(":")[0].lower()
    return (f"Pruned by the sweep after epoch {epoch}: its {group.search['objective']} ({value:.4g}) was behind the other "
            f"runs' at that epoch ({pruner}); its settings are unlikely to win, so its time goes to the next trial.")


# ------------------------------------------------------------------ when members end


def member_ended(run_id: int) -> None:
    """Settle the sweep the run belongs to (if any) and start what comes next. Safe to call twice; a fault is logged,
    not raised: the run has ended as it did, and the workers' heartbeat advances the sweep again (`advance_sweeps`)."""
    group_id = GroupMember.objects.filter(run_id=run_id, group__kind=RunGroup.Kind.SWEEP).values_list("group_id", flat=True).first()
    if group_id is None:
        return
    try:
        advance(group_id)
    except Exception:  # noqa: BLE001 - see above
        log.exception("advancing sweep %s after run %s ended failed; the heartbeat tries again", group_id, run_id)


def advance(group_id: int) -> None:
    """Tell Optuna how each member that ended did, train a crashed one again, then start the next members. The group's
    row is locked meanwhile, so two members ending at once start one member each, never the same trial twice."""
    with transaction.atomic():
        group = RunGroup.objects.select_for_update().select_related("project", "partition__dataset").get(pk=group_id)
        study = None
        for member in group.members.select_related("run").filter(outcome=Outcome.PENDING):
            if member.run.is_finished:
                study = study or study_of(group)
                settle(group, study, member)
        fill(group)


def settle(group: RunGroup, study: Study, member: GroupMember) -> None:
    run = member.run
    outcome, value = member_outcome(group, member)
    if outcome == Outcome.FAILED and member.attempt == 1 and not group.stop_requested:
        outcome = Outcome.REPLACED
    study.tell(member.trial, "complete" if outcome == Outcome.COMPLETE else "pruned" if outcome == Outcome.PRUNED else "failed", value)
    GroupMember.objects.filter(pk=member.pk).update(outcome=outcome)
    if outcome == Outcome.REPLACED:
        log.warning("sweep %s: run %s (trial %s) failed; training its settings once more", group.pk, run.pk, member.trial)
        start_member(group, study, member.values, attempt=2)


def member_outcome(group: RunGroup, member: GroupMember) -> tuple[str, float | None]:
    run = member.run
    if run.status == Status.SUCCEEDED:
        value = objective_value(group, run)
        return (Outcome.COMPLETE, value) if value is not None else (Outcome.FAILED, None)
    if run.status == Status.STOPPED:
        return (Outcome.PRUNED, None) if member.pruned_at else (Outcome.STOPPED, None)
    return Outcome.FAILED, None


def objective_value(group: RunGroup, run: TrainingRun) -> float | None:
    """A finished member's figure: its kept epoch's objective (the monitored metric the sweep picks by)."""
    kept = (run.results or {}).get("kept") or {}
    value = kept.get("value")
    if kept.get("monitor") == group.search["objective"] and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def advance_sweeps() -> int:
    """Every sweep with a member that ended unsettled, or room for another member: advanced (the workers' heartbeat
    calls this every few seconds, so a finished sweep costs no query of its own). Returns how many were."""
    advanced = 0
    sweeps = RunGroup.objects.filter(kind=RunGroup.Kind.SWEEP).annotate(
        pending=Count("members", filter=Q(members__outcome=Outcome.PENDING)),
        used=Count("members", filter=~Q(members__outcome=Outcome.REPLACED))).only("pk", "search", "stop_requested")
    for group in sweeps:
        spent = group.stop_requested or group.used >= group.search["trials"]
        if not group.pending and spent:
            continue  # every member settled and no trial left to start: nothing will change
        members = list(group.members.select_related("run").only("outcome", "run__status"))
        unsettled = any(m.outcome == Outcome.PENDING and m.run.is_finished for m in members)
        room = not spent and sum(not m.run.is_finished for m in members) < group.search["parallel"]
        if unsettled or room:
            try:
                advance(group.pk)
                advanced += 1
            except Exception:  # noqa: BLE001 - one sweep's fault must not stop the others'
                log.exception("advancing sweep %s failed", group.pk)
    return advanced


def stop_group(user, group: RunGroup) -> RunGroup:
    """No member starts any more; the queued ones stop at once, the training ones after their current batch."""
    require_owner(user, group.project)
    with transaction.atomic():
        RunGroup.objects.filter(pk=group.pk).update(stop_requested=True)
        for run in TrainingRun.objects.filter(group_memberships__group=group).exclude(status__in=TrainingRun.finished_statuses()):
            stop(run)
        record(user, group.project, Action.CHANGE, group, object_type="group", name=f"{group.name}: stopped")
    if group.kind == RunGroup.Kind.SWEEP:
        advance(group.pk)  # the members stopped before they started are told now (no worker will end them)
    group.refresh_from_db()
    return group


# ------------------------------------------------------------------ what the page shows


def sweep_summary(group: RunGroup) -> dict:
    """The sweep's table (one row per member, its settings and its objective), the best member, and what the
    parallel-coordinates chart draws."""
    search = group.search
    members = list(group.members.select_related("run"))
    latest = last_objectives(group, [member.run_id for member in members])
    rows = [member_row(group, member, latest.get(member.run_id)) for member in members]
    scored = [row for row in rows if row["outcome"] == Outcome.COMPLETE and row["objective"] is not None]
    maximise = search["direction"] == "maximize"
    best = max(scored, key=lambda row: row["objective"] if maximise else -row["objective"]) if scored else None
    used = trials_used(members)
    return {
        "search": search, "samplers": SAMPLERS, "pruners": PRUNERS, "rows": rows, "best": best,
        "trials": search["trials"], "used": used, "stopped": group.stop_requested,
        "finished": sum(member.run.is_finished for member in members),
        "settled": all(member.outcome != Outcome.PENDING for member in members)
                   and (group.stop_requested or used >= search["trials"]),
    }


def member_row(group: RunGroup, member: GroupMember, last: float | None) -> dict:
    """`last`: the member's objective at the last epoch it measured, its figure while it trains, or once pruned or
    stopped; a succeeded member's is its kept epoch's."""
    run = member.run
    value = objective_value(group, run) if run.status == Status.SUCCEEDED else last
    return {"run": run.pk, "name": run.name, "trial": member.trial, "attempt": member.attempt, "values": member.values,
            "status": run.status, "outcome": member.outcome, "pruned_at": member.pruned_at,
            "epochs_completed": run.epochs_completed, "epochs": run.epochs, "objective": value}


def last_objectives(group: RunGroup, run_ids: list[int]) -> dict[int, float]:
    """Each run's objective at the last epoch it measured, in one query (the page asks every 2 s, for up to 200 runs)."""
    subset, _, name = group.search["objective"].partition(".")
    points = MetricPoint.objects.filter(run_id__in=run_ids, subset=subset, name=name).order_by("run_id", "-epoch")
    latest: dict[int, float] = {}
    for run_id, value in points.values_list("run_id", "value"):
        latest.setdefault(run_id, value)
    return {run_id: float(value) for run_id, value in latest.items() if math.isfinite(value)}

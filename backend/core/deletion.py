"""Deleting, the one way for every kind of thing: what a deletion takes with it is said before it happens.

`GET /api/<things>/<id>/deletion/` answers a DeletionPlan: what goes with the thing always (a dataset's
partitions, a run's metrics and files), the training runs that used it (deleted too only when the caller
asks, `?with_runs=true`, since their results are the reason to keep it), what forbids the deletion
(a merged dataset indexing this one), the jobs still working (stopped first: POST their `stop/`, wait
until they have finished) and the bytes freed on disk. `DELETE /api/<things>/<id>/` checks the same plan
and refuses (409, with the plan's words) whatever it does not allow. Each app builds the plans of its
own things in its services; this module is only their shape and the API's half.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import ProtectedError, RestrictedError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from backend.audit.services import Action, record
from backend.projects.access import require_owner

from .errors import ServiceError

# The API's path for each kind of thing (the router's prefixes, webapp/urls.py) and its page's, where it has one.
API_PATHS = {"dataset": "datasets", "partition": "partitions", "run": "runs", "pipeline": "pipelines",
             "aggregation": "aggregations", "imported_model": "imported-models", "rate_search": "rate-searches",
             "group": "groups", "comparison": "comparisons"}
PAGE_PATHS = {"dataset": "datasets", "partition": "partitions", "run": "runs", "aggregation": "aggregations",
              "imported_model": "imported-models", "group": "groups", "comparison": "comparisons"}


@dataclass
class Thing:
    """One object a deletion concerns, as a person reads it and a script finds it."""

    type: str
    id: int
    name: str
    finished: bool = True  # a job that has ended (or a thing that is no job)
    status: str = ""

    @classmethod
    def of(cls, kind: str, obj) -> Thing:
        finished = getattr(obj, "is_finished", True)
        return cls(kind, obj.pk, str(getattr(obj, "name", "") or obj), finished, getattr(obj, "status", ""))

    @property
    def url(self) -> str:
        return f"/api/{API_PATHS[self.type]}/{self.id}/"

    @property
    def page(self) -> str:
        return f"/{PAGE_PATHS[self.type]}/{self.id}/" if self.type in PAGE_PATHS else ""

    def label(self) -> str:
        return f"{self.type.replace('_', ' ')} {self.id} '{self.name}'"


@dataclass
class DeletionPlan:
    target: Thing
    also: list[Thing] = field(default_factory=list)  # deleted with the target, always
    runs: list[Thing] = field(default_factory=list)  # training runs that used it: deleted only with with_runs
    blocked_by: list[str] = field(default_factory=list)  # reasons nothing here can lift
    folders: list[Path] = field(default_factory=list)  # removed from storage once the rows are gone
    row: object = None  # the target's model instance
    run_rows: list = field(default_factory=list)

    def add_runs(self, runs) -> None:
        known = {row.pk for row in self.run_rows}
        for run in runs:
            if run.pk not in known:
                known.add(run.pk)
                self.run_rows.append(run)
                self.runs.append(Thing.of("run", run))

    def running(self, with_runs: bool) -> list[Thing]:
        """The jobs that must stop before the deletion (the target, what goes with it, and the runs if they go)."""
        return [thing for thing in [self.target, *self.also, *(self.runs if with_runs else [])] if not thing.finished]

    def bytes(self, with_runs: bool) -> int:
        return sum(folder_size(folder) for folder in self.folders_to_remove(with_runs))

    def folders_to_remove(self, with_runs: bool) -> list[Path]:
        return self.folders + ([run.storage_dir for run in self.run_rows] if with_runs else [])

    def require_allowed(self, with_runs: bool) -> None:
        """Raise (409, the reason and what to do) unless the deletion may happen now."""
        if self.blocked_by:
            raise conflict(" ".join(self.blocked_by))
        if self.runs and not with_runs:
            names = ", ".join(run.label() for run in self.runs[:5]) + (f" and {len(self.runs) - 5} more" if len(self.runs) > 5 else "")
            raise conflict(f"{len(self.runs)} training run(s) used this {self.target.type.replace('_', ' ')} ({names}); "
                           "it is kept so their results stay reproducible. Delete them with it (with_runs=true) or first.")
        running = self.running(with_runs)
        if running:
            raise conflict(f"A worker is still working on {', '.join(thing.label() for thing in running)}; "
                           "stop it first (POST its stop/), then delete.")


def carry_out(actor, project, plan: DeletionPlan, with_runs: bool) -> None:
    """The deletion `plan` describes, if `actor` may change the project and it is allowed now: the runs first (when
    asked), then the target (what goes with it follows by the database's cascades), each in the audit log; the folders
    once the transaction has committed."""
    require_owner(actor, project)
    plan.require_allowed(with_runs)
    folders = plan.folders_to_remove(with_runs)  # before delete(), which clears the primary keys they are named by
    try:
        with transaction.atomic():
            for run in plan.run_rows if with_runs else []:
                record(actor, project, Action.DELETE, run, name=f"{run.name} (with {plan.target.label()})")
                run.delete()
            record(actor, project, Action.DELETE, plan.row)
            plan.row.delete()
    except (ProtectedError, RestrictedError) as exc:  # something began to use it since the plan was read
        users = ", ".join(sorted({f"{type(obj)._meta.verbose_name} {obj.pk}" for obj in exc.args[1]})[:5])
        raise conflict(f"{users} began to use this {plan.target.type.replace('_', ' ')} a moment ago; look again "
                       "at what deleting it takes (GET deletion/).") from exc
    for folder in folders:
        transaction.on_commit(lambda folder=folder: shutil.rmtree(folder, ignore_errors=True))


def conflict(message: str) -> ServiceError:
    return ServiceError(message, code="conflict", status_code=409)


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


class ThingSerializer(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.IntegerField()
    name = serializers.CharField()
    finished = serializers.BooleanField(help_text="False for a job still queued or working: stop it before the deletion.")
    status = serializers.CharField()
    url = serializers.CharField(help_text="Its API address; a job is stopped with POST <url>stop/.")
    page = serializers.CharField(help_text="Its page, where it has one.")


class DeletionPlanSerializer(serializers.Serializer):
    target = ThingSerializer()
    also = ThingSerializer(many=True, help_text="Deleted with it, always.")
    runs = ThingSerializer(many=True, help_text="Training runs that used it: deleted too only with with_runs=true, else the deletion is refused.")
    blocked_by = serializers.ListField(child=serializers.CharField(), help_text="Why it cannot be deleted now, and what to do.")
    running = ThingSerializer(many=True, help_text="Jobs still working that must be stopped first (with_runs counted).")
    bytes = serializers.IntegerField(help_text="Bytes of storage freed (with_runs counted).")
    allowed = serializers.BooleanField(help_text="True when DELETE with the same with_runs would succeed now.")
    reason = serializers.CharField(help_text="Why DELETE would be refused now; empty when allowed.")

    @classmethod
    def for_plan(cls, plan: DeletionPlan, with_runs: bool) -> dict:
        try:
            plan.require_allowed(with_runs)
            reason = ""
        except ServiceError as refusal:
            reason = refusal.message
        return cls({"target": plan.target, "also": plan.also, "runs": plan.runs, "blocked_by": plan.blocked_by,
                    "running": plan.running(with_runs), "bytes": plan.bytes(with_runs), "allowed": not reason,
                    "reason": reason}).data


WITH_RUNS = OpenApiParameter("with_runs", bool, description="Also delete the training runs that used it (default false: "
                                                            "the deletion is refused while runs used it).")


def with_runs_requested(request) -> bool:
    value = request.query_params.get("with_runs", "false").strip().lower()
    if value not in {"true", "false", "1", "0", "yes", "no"}:
        raise ServiceError(f"with_runs is true or false, not {value[:20]!r}.", field="with_runs")
    return value in {"true", "1", "yes"}


class DeletionPlanMixin:
    """For a viewset whose things can be deleted: GET <id>/deletion/, and DELETE asking the same plan.
    The viewset names the services: `deletion_plan(user, obj)` and `delete(user, obj, with_runs)`."""

    def deletion_plan(self, user, obj) -> DeletionPlan:
        raise NotImplementedError

    def delete_thing(self, user, obj, with_runs: bool) -> None:
        raise NotImplementedError

    @extend_schema(parameters=[WITH_RUNS], responses=DeletionPlanSerializer)
    @action(detail=True, methods=["get"])
    def deletion(self, request, pk=None):
        """What deleting it would take with it, what is still working and must be stopped first, and whether DELETE
        would succeed now (with the same with_runs)."""
        plan = self.deletion_plan(request.user, self.get_object())
        return Response(DeletionPlanSerializer.for_plan(plan, with_runs_requested(request)))

    @extend_schema(parameters=[WITH_RUNS])
    def destroy(self, request, *args, **kwargs):
        """Delete it and what goes with it (GET deletion/ says what); refused (409, with the reason) while a job still
        works on it or runs used it (unless with_runs=true). Its files are removed from storage; the audit log records it."""
        self.delete_thing(request.user, self.get_object(), with_runs_requested(request))
        return Response(status=204)

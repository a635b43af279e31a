"""Recording and reading the audit log."""
from datetime import timedelta

from django.utils import timezone

from backend.projects.access import require_owner

from .models import AuditEvent

Action = AuditEvent.Action
FRIENDLY_TYPES = {"trainingrun": "run", "ratesearch": "rate_search", "importedmodel": "imported_model", "rungroup": "group"}


# Pages poll the objects they show every second; one read per user and object in this
# window is enough to say who looked at what.
READ_WINDOW = timedelta(minutes=10)


def record(user, project, action: str, obj=None, object_type: str = "", name: str = "") -> None:
    """Write one audit event; `obj` (a model instance) names the object when given."""
    object_type = object_type or (FRIENDLY_TYPES.get(obj._meta.model_name, obj._meta.model_name) if obj is not None else "project")
    object_id = obj.pk if obj is not None else getattr(project, "pk", None)
    if action == Action.READ and AuditEvent.objects.filter(
        user_id=getattr(user, "pk", None), action=action, object_type=object_type, object_id=object_id,
        at__gte=timezone.now() - READ_WINDOW,
    ).exists():
        return
    AuditEvent.objects.create(
        project=project if project is not None and project.pk else None,
        project_name=getattr(project, "name", ""),
        user=user if user is not None and user.is_authenticated else None,
        username=getattr(user, "username", "") or "anonymous",
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_name=name or str(obj if obj is not None else project)[:200],
    )


def events_for(actor, project):
    """The project's audit log; only its owners may read it."""
    require_owner(actor, project)
    return AuditEvent.objects.filter(project=project).select_related("user")

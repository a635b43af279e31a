"""Who may do what with a project: the access rules every service and page asks.

A project is private to its creator and shared with other users as viewer (read) or
owner (read, change, delete, share). Users with no role get 404 for everything in it,
so names do not leak; viewers get 403 when they try to change something. These rules
import nothing of the services that use them (projects, audit, datasets ...), so any of
those can use them without an import cycle.
"""
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404

from backend.core.errors import ServiceError

from .models import Project, ProjectMember, Role


def projects_for(user):
    """The projects a user may see."""
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(Q(owner=user) | Q(members__user=user)).distinct()


def get_project(user, project_id) -> Project:
    return get_object_or_404(projects_for(user), pk=project_id)


def role_of(user, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if project.owner_id == user.pk:
        return Role.OWNER
    return ProjectMember.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def can_change(user, project: Project) -> bool:
    return role_of(user, project) == Role.OWNER


def require_owner(user, project: Project) -> None:
    """Raise unless the user may change the project: 404 for strangers, 403 for viewers."""
    role = role_of(user, project)
    if role is None:
        raise Http404
    if role != Role.OWNER:
        raise ServiceError(
            "You can view this project but not change it. Ask one of its owners for the owner role.",
            code="permission_denied", status_code=403,
        )

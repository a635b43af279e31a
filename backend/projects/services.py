"""Projects and who may do what with them.

A project is private to its creator and shared with other users as viewer (read) or
owner (read, change, delete, share). Users with no role get 404 for everything in it,
so names do not leak; viewers get 403 when they try to change something.
"""
import shutil

from django.contrib.auth import get_user_model
from django.db import transaction
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


def create_project(user, name: str, description: str = "", deidentify: bool = True) -> Project:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the project a name.", field="name")
    return Project.objects.create(owner=user, name=name, description=description, deidentify=deidentify)


def share_project(actor, project: Project, username: str, role: str) -> ProjectMember:
    require_owner(actor, project)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ServiceError(f"There is no user named '{username}'.", field="username")
    if user.pk == project.owner_id:
        raise ServiceError(f"'{username}' created this project and is always an owner.", field="username")
    member, _ = ProjectMember.objects.update_or_create(project=project, user=user, defaults={"role": role})
    audit(actor, project, "share", name=f"{username} as {role}")
    return member


def unshare_project(actor, project: Project, member: ProjectMember) -> None:
    require_owner(actor, project)
    audit(actor, project, "share", name=f"{member.user.username} removed")
    member.delete()


def audit(actor, project, action: str, name: str = "") -> None:
    # Imported here: the audit app builds on projects, not the other way round.
    from backend.audit.services import record

    record(actor, project, action, name=name)


def remove_tree_after_commit(path) -> None:
    """Delete a storage folder once the rows that pointed to it are gone for good."""
    transaction.on_commit(lambda: shutil.rmtree(path, ignore_errors=True))


def update_project(actor, project: Project, **fields) -> Project:
    require_owner(actor, project)
    for name, value in fields.items():
        setattr(project, name, value)
    project.save()
    audit(actor, project, "change")
    return project


def delete_project(actor, project: Project) -> None:
    """A project goes with everything in it: runs first (they protect their data), then the rest."""
    require_owner(actor, project)
    folder = project.storage_dir  # before delete(), which clears the primary key it is named by
    with transaction.atomic():
        audit(actor, project, "delete")
        project.runs.all().delete()
        project.delete()
        remove_tree_after_commit(folder)

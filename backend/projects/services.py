"""Projects: creating, sharing, changing and deleting them (the access rules are access.py)."""
import shutil

from django.contrib.auth import get_user_model
from django.db import transaction

from backend.audit.services import record
from backend.core.errors import ServiceError

from .access import require_owner
from .models import Project, ProjectMember


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

from django.shortcuts import get_object_or_404

from backend.core.errors import ServiceError

from .models import Project


def projects_for(user):
    """The projects a user may see. Owner-only for now; sharing comes with roles."""
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(owner=user)


def get_project(user, project_id) -> Project:
    return get_object_or_404(projects_for(user), pk=project_id)


def create_project(user, name: str, description: str = "") -> Project:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the project a name.", field="name")
    return Project.objects.create(owner=user, name=name, description=description)


def remove_tree_after_commit(path) -> None:
    """Delete a storage folder once the rows that pointed to it are gone for good."""
    import shutil

    from django.db import transaction

    transaction.on_commit(lambda: shutil.rmtree(path, ignore_errors=True))


def delete_project(project: Project) -> None:
    """A project goes with everything in it: runs first (they protect their data), then the rest."""
    from django.db import transaction

    folder = project.storage_dir  # before delete(), which clears the primary key it is named by
    with transaction.atomic():
        project.runs.all().delete()
        project.delete()
        remove_tree_after_commit(folder)

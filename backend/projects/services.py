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

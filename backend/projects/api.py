from rest_framework import serializers, viewsets

from .models import Project
from .services import create_project, delete_project, projects_for


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "owner", "created_at"]
        extra_kwargs = {"name": {"error_messages": {"blank": "Give the project a name."}}}


class ProjectViewSet(viewsets.ModelViewSet):
    """Projects hold datasets, partitions and runs; each is private to its owner."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        return projects_for(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = create_project(self.request.user, **serializer.validated_data)

    def perform_destroy(self, project):
        delete_project(project)

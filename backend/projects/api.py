from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backend.audit.models import AuditEvent
from backend.audit.services import events_for

from .access import projects_for, role_of
from .models import Project, ProjectMember, Role
from .services import create_project, delete_project, share_project, unshare_project, update_project


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    role = serializers.SerializerMethodField(help_text="Your role in this project: owner or viewer.")

    class Meta:
        model = Project
        fields = ["id", "name", "description", "deidentify", "owner", "role", "created_at"]
        extra_kwargs = {"name": {"error_messages": {"blank": "Give the project a name."}}}

    def get_role(self, project) -> str | None:
        return role_of(self.context["request"].user, project)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = ProjectMember
        fields = ["id", "username", "role", "added_at"]
        read_only_fields = ["id", "added_at"]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "username", "action", "object_type", "object_id", "object_name"]
        read_only_fields = fields


class ProjectViewSet(viewsets.ModelViewSet):
    """Projects hold datasets, partitions and runs; private to their creator unless shared."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        return projects_for(self.request.user).select_related("owner")

    def perform_create(self, serializer):
        serializer.instance = create_project(self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = update_project(self.request.user, serializer.instance, **serializer.validated_data)

    def perform_destroy(self, project):
        delete_project(self.request.user, project)

    @extend_schema(responses=MemberSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def members(self, request, pk=None):
        """The users this project is shared with, and their roles (its creator is always an owner)."""
        return Response(MemberSerializer(self.get_object().members.select_related("user"), many=True).data)

    @extend_schema(request=MemberSerializer, responses={201: MemberSerializer})
    @members.mapping.post
    def share(self, request, pk=None):
        """Share the project with a user as viewer or owner (owners only); again to change the role."""
        member = MemberSerializer(data=request.data)
        member.is_valid(raise_exception=True)
        created = share_project(request.user, self.get_object(), member.validated_data["user"]["username"], member.validated_data["role"])
        return Response(MemberSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<member_id>\d+)")
    def unshare(self, request, pk=None, member_id=None):
        """Stop sharing the project with a user (owners only)."""
        project = self.get_object()
        unshare_project(request.user, project, get_object_or_404(project.members, pk=member_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=AuditEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def audit(self, request, pk=None):
        """Who read, downloaded, changed or deleted what in this project, newest first (owners only)."""
        page = self.paginate_queryset(events_for(request.user, self.get_object()))
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)

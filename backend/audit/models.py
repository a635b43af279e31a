from django.conf import settings
from django.db import models

from backend.projects.models import Project


class AuditEvent(models.Model):
    """Who read, downloaded, changed or deleted what in a project, and when."""

    class Action(models.TextChoices):
        READ = "read", "Read"
        DOWNLOAD = "download", "Downloaded"
        CREATE = "create", "Created"
        CHANGE = "change", "Changed"
        DELETE = "delete", "Deleted"
        SHARE = "share", "Shared"

    # Kept when the project goes: the record of a deletion must outlive what was deleted.
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, related_name="audit_events")
    project_name = models.CharField(max_length=200)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=10, choices=Action.choices)
    object_type = models.CharField(max_length=30)
    object_id = models.BigIntegerField(null=True)
    object_name = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

import secrets

from django.conf import settings
from django.db import models


def new_secret() -> str:
    return secrets.token_hex(32)


class Project(models.Model):
    """The unit of ownership: datasets, partitions and runs belong to a project."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    deidentify = models.BooleanField(
        default=True, help_text="De-identify DICOM files and identifier columns on the way in (PS3.15 Basic Profile).")
    # The key of the project's pseudonyms, date shifts and UID remapping: the same patient always maps the same way.
    deid_secret = models.CharField(max_length=64, default=new_secret, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def storage_dir(self):
        return settings.STORAGE_ROOT / "projects" / str(self.pk)

    def deidentifier(self):
        from workers.engine.ingest.deid import Deidentifier

        return Deidentifier(bytes.fromhex(self.deid_secret)) if self.deidentify else None


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer (read)"
    OWNER = "owner", "Owner (read, change, delete, share)"


class ProjectMember(models.Model):
    """A user a project is shared with. The project's creator is always an owner, without a row."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["added_at"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_role_per_user")]

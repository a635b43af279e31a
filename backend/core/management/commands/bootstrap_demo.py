"""Create the demo account, a demo project and its generated dataset; print how to log in."""
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand

from backend.datasets.models import Dataset
from backend.datasets.services import create_dataset_from_upload
from backend.projects.models import Project
from workers.engine.demo import write_demo_zip

DEMO_USER = "demo"
DEMO_DATASET = "Demo lesions"


class Command(BaseCommand):
    help = "Create (or reset) the demo account and its demo dataset."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=DEMO_USER)
        user.set_password(password)
        user.save()
        zip_path = settings.VAR_DIR / "demo" / "demo_lesions.zip"
        if not zip_path.exists():
            write_demo_zip(zip_path, per_class=300)
        project, _ = Project.objects.get_or_create(owner=user, name="Demo", defaults={"description": "Generated lesion / normal images."})
        if not Dataset.objects.filter(project=project, name=DEMO_DATASET).exclude(status=Dataset.Status.FAILED).exists():
            with open(zip_path, "rb") as handle:
                create_dataset_from_upload(project, DEMO_DATASET, [File(handle, name=zip_path.name)], user)
        self.stdout.write(f"Demo account: user '{DEMO_USER}', password '{password}'")
        self.stdout.write(f"Demo archive to upload yourself: {zip_path}")

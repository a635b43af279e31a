"""The Celery application and its queue routing.

Queues:
  ingest     data work (unpacking uploads, building caches); any worker.
  train-cpu  training runs (and learning-rate searches) the user placed on the CPU.
  train-gpu  training runs (and searches) the user placed on a GPU; only GPU workers consume it.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("webapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")

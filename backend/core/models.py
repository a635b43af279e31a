from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """A Celery worker that is (or was recently) online, and what it can do."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    gpu_count = models.PositiveIntegerField(default=0)
    gpu_names = models.JSONField(default=list)
    cpu_count = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    @classmethod
    def online(cls):
        horizon = timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
        return cls.objects.filter(last_seen__gte=horizon)

    @classmethod
    def queue_is_served(cls, logical_queue: str) -> bool:
        from .tasks import queue_name

        return any(queue_name(logical_queue) in worker.queues for worker in cls.online())

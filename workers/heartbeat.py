"""Worker heartbeats: each worker writes what it serves, so pages can offer only real resources,
and sweeps for jobs whose worker died (workers/jobs.py). Connected when the worker imports its tasks."""
import logging
import os
import socket
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from .jobs import recover_stale_jobs

log = logging.getLogger(__name__)
_stop = threading.Event()


def gpu_inventory() -> list[str]:
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA install must not stop a CPU worker
        log.exception("could not list GPUs")
    return []


def beat(hostname: str, queues: list[str], gpus: list[str]) -> None:
    from backend.core.models import WorkerHeartbeat

    close_old_connections()
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": queues, "gpu_count": len(gpus), "gpu_names": gpus,
            "cpu_count": os.cpu_count() or 1, "last_seen": timezone.now(),
        },
    )


def heartbeat_loop(hostname, queues, gpus):
    from backend.experiments.sweeps import advance_sweeps

    starting = True
    while not _stop.is_set():
        try:
            beat(hostname, queues, gpus)
            recover_stale_jobs(hostname, starting)
            advance_sweeps()  # a member stopped from a page, or ended while no worker could start the next
            starting = False
        except Exception:
            log.exception("heartbeat failed")
        _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)


@worker_ready.connect
def start_heartbeat(sender=None, **kwargs):
    # Celery sends worker_ready with the worker's Consumer as sender.
    consumer = sender
    task_consumer = getattr(consumer, "task_consumer", None)
    queues = sorted(q.name for q in task_consumer.queues) if task_consumer else []
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    thread = threading.Thread(target=heartbeat_loop, args=(hostname, queues, gpu_inventory()), daemon=True)
    thread.start()


@worker_shutdown.connect
def stop_heartbeat(sender=None, **kwargs):
    _stop.set()
    from backend.core.models import WorkerHeartbeat

    try:
        hostname = getattr(sender, "hostname", None)
        if hostname:
            WorkerHeartbeat.objects.filter(hostname=hostname).delete()
    except Exception:
        log.exception("could not remove heartbeat")

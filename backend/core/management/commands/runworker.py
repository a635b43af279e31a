"""Start a Celery worker that serves the queues this machine can: GPU training only where CUDA works."""
import os
import sys

from django.core.management.base import BaseCommand

from backend.core.tasks import INGEST_QUEUE, TRAIN_QUEUES, queue_name


def default_queues(pool: str = "") -> list[str]:
    """Ingest and CPU training, GPU training where CUDA works; with a pool, also that pool's training queues."""
    import torch

    devices = ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]
    queues = [INGEST_QUEUE, *(TRAIN_QUEUES[d] for d in devices)]
    if pool:
        queues += [f"{TRAIN_QUEUES[d]}-{pool}" for d in devices]
    return [queue_name(queue) for queue in queues]


class Command(BaseCommand):
    help = "Start a Celery worker for this machine's resources."

    def add_arguments(self, parser):
        parser.add_argument("--queues", help="Comma-separated queues (default: ingest,train-cpu, plus train-gpu when CUDA works; TOOLKIT_QUEUE_PREFIX is prepended to the defaults).")
        parser.add_argument("--pool", default="", help="A named pool of workers (e.g. a100): also serve runs that ask for it "
                                                        "(resources.pool), on the queues train-cpu-<pool> and train-gpu-<pool>.")
        parser.add_argument("--name", default="worker", help="Worker name; the host name is appended.")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, **options):
        queues = options["queues"] or ",".join(default_queues(options["pool"]))
        # The solo pool runs jobs in the worker's own process: CUDA cannot be used in
        # forked children once the parent has touched it, and one training job per
        # worker is what we want anyway (it uses all the machine's cores or its GPU).
        command = [
            sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool", "solo",
            "-Q", queues, "-n", f"{options['name']}@%h", "--loglevel", options["loglevel"],
            "--without-gossip", "--without-mingle",
        ]
        self.stdout.write(f"Worker serving queues: {queues}")
        os.execv(sys.executable, command)

"""Run the whole toolkit on one machine: web server and Celery worker, until Ctrl-C.

The worker is kept alive: one that dies is started again, with a back-off and a line in the log
(backend/core/supervision.py)."""
import signal
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand

from backend.core.supervision import Child, Supervisor


class Command(BaseCommand):
    help = "Start the web server and a worker (started again if it dies); print the URL and the demo account."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, **options):
        call_command("bootstrap_demo")
        address = f"{options['host']}:{options['port']}"
        supervisor = Supervisor([
            Child("web server", [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", address, "--workers", "2",
                                 "--threads", "4", "--timeout", "600", "--access-logfile", "-"], restart=False),
            Child("worker", [sys.executable, "manage.py", "runworker"], restart=True),
        ])
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.append(True))
        self.stdout.write(self.style.SUCCESS(f"\nThe toolkit is running at http://{address}/  (Ctrl-C stops it)\n"))
        supervisor.run()
        if supervisor.stopped_because:
            sys.exit(f"Stopped because {supervisor.stopped_because}.")

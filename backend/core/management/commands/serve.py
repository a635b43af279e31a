"""Run the whole toolkit on one machine: web server (uvicorn, ASGI) and Celery worker, until Ctrl-C.

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
            Child("web server", web_server_command(options["host"], options["port"]), restart=False),
            Child("worker", [sys.executable, "manage.py", "runworker"], restart=True),
        ])
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.append(True))
        self.stdout.write(self.style.SUCCESS(f"\nThe toolkit is running at http://{address}/  (Ctrl-C stops it)\n"))
        supervisor.run()
        if supervisor.stopped_because:
            sys.exit(f"Stopped because {supervisor.stopped_because}.")


def web_server_command(host: str, port: str) -> list[str]:
    """uvicorn on the ASGI application: live pages hold a stream open per watcher, which an event loop
    keeps for the price of a coroutine. A stream never ends by itself, so a shutdown waits for open
    ones only a few seconds; their pages reconnect to the next server and carry on where they were."""
    return [sys.executable, "-m", "uvicorn", "webapp.asgi:application", "--host", host, "--port", str(port),
            "--workers", "2", "--lifespan", "off", "--timeout-graceful-shutdown", "5"]

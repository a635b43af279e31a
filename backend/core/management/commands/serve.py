"""Run the whole toolkit on one machine: web server and Celery worker, until Ctrl-C."""
import signal
import subprocess
import sys
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the web server and a worker; print the URL and the demo account."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, **options):
        call_command("bootstrap_demo")
        address = f"{options['host']}:{options['port']}"
        children = [
            subprocess.Popen([sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", address,
                              "--workers", "2", "--threads", "4", "--timeout", "600", "--access-logfile", "-"]),
            subprocess.Popen([sys.executable, "manage.py", "runworker"]),
        ]
        self.stdout.write(self.style.SUCCESS(f"\nThe toolkit is running at http://{address}/  (Ctrl-C stops it)\n"))
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        failed = [child.args[2] for child in children if child.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            sys.exit(f"Stopped because a process exited: {failed}")

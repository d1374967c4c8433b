"""Run web, a Celery worker and beat together: the embedded all-in-one hub.

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too, so a
half-running hub never goes unnoticed.
"""

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the web server, a Celery worker (queues psa and default) and beat in one command."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port for the web server")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args, bind, concurrency, **options):
        python = sys.executable
        commands = {
            "web": [python, "-m", "gunicorn", "hub.wsgi", "--bind", bind, "--workers", "2", "--threads", "4",
                    "--access-logfile", "-"],
            "worker": [python, "-m", "celery", "-A", "hub", "worker", "-Q", "psa,default",
                       "--concurrency", str(concurrency), "--loglevel", "INFO"],
            "beat": [python, "-m", "celery", "-A", "hub", "beat", "--loglevel", "INFO"],
        }
        children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(f"PSA hub running: web on http://{bind}/, worker and beat started. Ctrl-C stops all three.")

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with status {child.returncode}; stopping the others.")
                    exit_code = child.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        self.stdout.write("PSA hub stopped.")
        if exit_code:
            sys.exit(exit_code)

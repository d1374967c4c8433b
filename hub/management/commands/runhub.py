"""Run web, a Celery worker and beat together: the embedded all-in-one hub.

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too, so a
half-running hub never goes unnoticed.

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches only this
command, which then stops the children one way, once: gunicorn finishes its requests, the
worker its running tasks (a second signal to the worker would cut them short). Whatever is
still running after the grace period is killed with its whole process group, pool processes
included, so nothing is left behind.
"""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

GRACE_SECONDS = 15


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Command(BaseCommand):
    help = "Start the web server, a Celery worker (queues psa and default) and beat in one command."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port for the web server")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args, bind, concurrency, **options):
        python = sys.executable
        commands = {
            "web": [python, "-m", "gunicorn", "hub.wsgi", "--bind", bind, "--workers", "2", "--threads", "4",
                    "--graceful-timeout", str(GRACE_SECONDS - 5), "--access-logfile", "-"],
            "worker": [python, "-m", "celery", "-A", "hub", "worker", "-Q", "psa,default",
                       "--concurrency", str(concurrency), "--loglevel", "INFO"],
            "beat": [python, "-m", "celery", "-A", "hub", "beat", "--loglevel", "INFO"],
        }

        signals_received = 0

        def on_signal(signum, frame):
            nonlocal signals_received
            signals_received += 1
            if signals_received > 1:
                # Asked again while stopping: stop waiting.
                for child in children.values():
                    _kill_group(child.pid)

        children: dict[str, subprocess.Popen] = {}
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for name, cmd in commands.items():
                children[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
            self.stdout.write(
                f"PSA hub running: web on http://{bind}/, worker and beat started. Ctrl-C stops all three."
            )
            exit_code = self._supervise(children, lambda: signals_received > 0)
        finally:
            self._stop(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("PSA hub stopped.")
        if exit_code:
            sys.exit(exit_code)

    def _supervise(self, children, stop_requested) -> int:
        while not stop_requested():
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with status {child.returncode}; stopping the others.")
                    return child.returncode or 1
            time.sleep(0.3)
        return 0

    def _stop(self, children) -> None:
        for child in children.values():
            if child.poll() is None:
                try:
                    child.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + GRACE_SECONDS
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop within {GRACE_SECONDS}s; killing it.")
        # The main processes are gone or overdue; take their pool processes with them.
        for child in children.values():
            if child.poll() is None or _group_alive(child.pid):
                time.sleep(0.5)
                _kill_group(child.pid)
            child.wait()

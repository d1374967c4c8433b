"""A real Celery worker process on the test database, for the integration and browser tiers.

`running_worker()` starts `python -m celery -A hub worker -Q psa,default` and stops it again.
The worker uses the test database (DATABASE_URL pointing at it), the same data folder and the
same broker as the test process: kombu's filesystem transport under HUB_DATA_DIR, or REDIS_URL's
Redis with a key prefix of this run. Tests that use it need committed rows: `transactional_db`
or `live_server`. `extra_env` adds settings of the worker (e.g. the fake PSAs' addresses).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from django.db import connection

from hub.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60
STOP_TIMEOUT = 20
QUEUES = ("psa", "default")


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path
    busy_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def worker_database_url() -> str:
    """DATABASE_URL of the database the tests use now (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        path = Path(db["NAME"]).resolve()
        if not path.is_file():
            pytest.fail(f"The SQLite test database must be a file a worker can open, not {db['NAME']!r}.")
        return f"sqlite:///{path}"
    parts = urlsplit(settings.DATABASE_URL)
    return parts._replace(path="/" + quote(db["NAME"])).geturl()


def _use_broker_options(options: dict) -> None:
    """Publish from this process with these transport options from now on."""
    celery_app.conf.broker_transport_options = options
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _purge(queues) -> None:
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            channel.queue_purge(queue)


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # warm shutdown: finish the running task, then exit
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # The worker runs in a process group of its own: take any pool process left with it.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _busy(worker: Worker) -> list[str]:
    """Tasks running now: the marker files of live pool processes (a killed one leaves its own)."""
    running = []
    for marker in worker.busy_dir.iterdir():
        pid = int(marker.name.split("-", 1)[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        running.append(marker.name.split("-", 1)[1])
    return running


def settle(worker: Worker, timeout: float = 30) -> None:
    """Leave the worker with nothing to do: drop what is queued and wait for the running tasks
    to finish. Called before each test's database flush: a task still writing while the flush
    TRUNCATEs every table can deadlock it on PostgreSQL, and a task left over would act on the
    next test's rows. (Celery's inspect would say the same on Redis, but gets no answers over
    the embedded filesystem broker: the worker marks its running tasks in files instead.)"""
    if worker.process.poll() is not None:
        return
    _purge(QUEUES)
    deadline = time.monotonic() + timeout
    idle_checks = 0
    while idle_checks < 2:  # twice: a message fetched just before the purge may be starting
        idle_checks = 0 if _busy(worker) else idle_checks + 1
        if time.monotonic() > deadline:
            pytest.fail(f"The Celery worker was still running {_busy(worker)} {timeout}s after the test:\n"
                        f"{worker.log_tail()}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_worker(tmp_path_factory, extra_env: dict[str, str] | None = None) -> Iterator[Worker]:
    if celery_app.conf.task_always_eager:
        pytest.fail("CELERY_TASK_ALWAYS_EAGER is on: these tests need tasks to go to a real worker.")

    original_options = dict(celery_app.conf.broker_transport_options or {})
    prefix = f"hubtest-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    if settings.REDIS_URL:
        _use_broker_options({**original_options, "global_keyprefix": prefix})
    _purge(QUEUES)  # nothing left over from an earlier run or test

    folder = tmp_path_factory.mktemp("celery-worker")
    log_path, busy_dir = folder / "worker.log", folder / "busy"
    busy_dir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY_FILE", "HUB_ENCRYPTION_KEYS_FILE", "CELERY_BROKER_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.integration.worker_settings",
        HUB_TEST_BROKER_PREFIX=prefix,
        HUB_TEST_BUSY_DIR=str(busy_dir),
        DATABASE_URL=worker_database_url(),
        HUB_DATA_DIR=str(settings.DATA_DIR),
        # The same secrets as this process, whatever produced them, so the worker can read
        # what the tests encrypt.
        SECRET_KEY=settings.SECRET_KEY,
        HUB_ENCRYPTION_KEYS=settings.HUB_ENCRYPTION_KEYS,
        PYTHONUNBUFFERED="1",
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    env.update(extra_env or {})

    command = [
        sys.executable, "-m", "celery", "-A", "hub", "worker",
        "-Q", ",".join(QUEUES), "--concurrency", "2", "--pool", "prefork",
        "--loglevel", "INFO", "--hostname", f"hubtest-{os.getpid()}-{uuid.uuid4().hex[:4]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    worker = Worker(process, log_path, busy_dir)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while " ready." not in worker.log():
            if process.poll() is not None:
                pytest.fail(f"The Celery worker exited with status {process.returncode}:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"The Celery worker was not ready within {READY_TIMEOUT}s:\n{worker.log_tail()}")
            time.sleep(0.2)
        yield worker
    finally:
        _stop(process)
        if settings.REDIS_URL:
            _use_broker_options(original_options)
            _delete_redis_keys(prefix)


# The fixtures: a conftest imports both, so the worker lives as long as its package's tests.


@pytest.fixture(scope="package")
def worker_session(django_db_setup, tmp_path_factory, fake_psas) -> Iterator[Worker]:
    with running_worker(tmp_path_factory, fake_psas.worker_env()) as worker:
        yield worker


@pytest.fixture
def worker_process(worker_session, transactional_db) -> Iterator[Worker]:
    """The package's worker, settled after the test and before its database flush."""
    yield worker_session
    settle(worker_session)

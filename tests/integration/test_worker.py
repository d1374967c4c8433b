"""A task enqueued from the web is executed by a real worker process, both under pytest's live
server and under `manage.py runhub` (the embedded all-in-one hub that `make run` starts)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hub.models import WorkerPing
from tests.factories import PASSWORD
from tests.integration.pages import ping_worker, sign_in

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_a_ping_from_the_system_page_is_answered_by_the_worker_process(
    worker_process, transactional_db, live_server, personas
):
    session = sign_in(live_server.url, personas.admin.email, PASSWORD)

    result = ping_worker(session, live_server.url)

    assert result.first_state == "waiting", "the page must not wait for the task"
    assert result.final_state == "answered", (
        f"no answer within 30 s:\n{result.html}\n--- worker log ---\n{worker_process.log_tail()}"
    )
    ping_id = result.status_url.rstrip("/").rsplit("/", 1)[-1]
    ping = WorkerPing.objects.get(pk=ping_id)
    assert ping.answered_at is not None and ping.answered_at >= ping.requested_at
    assert worker_process.process.poll() is None
    assert "hub.tasks.answer_ping[" in worker_process.log(), "the worker process did not run the task"


# `manage.py runhub`: web + worker + beat in one command --------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state), from /proc, or from `ps` where there is no /proc."""
    table = {}
    if Path("/proc/self/stat").exists():
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), fields[0])
        return table
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,stat="], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        pid, ppid, state = line.split()[:3]
        table[int(pid)] = (int(ppid), state[0])
    return table


def _descendants(pid: int) -> set[int]:
    table = _process_table()
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    table = _process_table()
    return {pid for pid in pids if pid in table and table[pid][1] not in {"Z", "X"}}


@pytest.fixture
def embedded_env(tmp_path):
    """The environment of `make run` on a fresh machine: no DATABASE_URL or REDIS_URL, its own
    data folder, secrets generated there, an admin from HUB_ADMIN_EMAIL/HUB_ADMIN_PASSWORD."""
    dropped = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "HUB_ENCRYPTION_KEYS",
               "SECRET_KEY_FILE", "HUB_ENCRYPTION_KEYS_FILE", "CELERY_TASK_ALWAYS_EAGER"}  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(
        DJANGO_SETTINGS_MODULE="hub.settings",
        DEBUG="true",
        HUB_DATA_DIR=str(tmp_path / "hub-data"),
        HUB_ADMIN_EMAIL="owner@msp.example",
        HUB_ADMIN_PASSWORD="first-admin-password-7",
        HUB_ADMIN_ACCOUNT="Test MSP",
        PYTHONUNBUFFERED="1",
    )
    return env


def _manage(env, *args) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_runhub_serves_sign_in_runs_a_queued_task_and_stops_everything_on_ctrl_c(embedded_env, tmp_path):
    _manage(embedded_env, "migrate", "--noinput")
    out = _manage(embedded_env, "bootstrap_admin")
    assert "owner@msp.example" in out
    assert "first-admin-password-7" not in out, "a password from the environment is never printed"

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "runhub.log"
    with open(log_path, "wb") as log:
        hub = subprocess.Popen(
            [sys.executable, "manage.py", "runhub", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT, env=embedded_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def log_tail():
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])

    processes: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert hub.poll() is None, f"runhub exited with status {hub.returncode}:\n{log_tail()}"
            try:
                if requests.get(f"{base_url}/login/", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting, or slow to answer on a busy machine
                pass
            assert time.monotonic() < deadline, f"no sign-in page within 60 s:\n{log_tail()}"
            time.sleep(0.3)

        login = requests.get(f"{base_url}/login/", timeout=5)
        assert login.status_code == 200 and "Sign in" in login.text

        with sign_in(base_url, "owner@msp.example", "first-admin-password-7") as session:
            result = ping_worker(session, base_url)
        assert result.first_state == "waiting"
        assert result.final_state == "answered", f"no answer within 30 s:\n{result.html}\n{log_tail()}"

        children = _descendants(hub.pid)
        direct = {pid for pid in children if _process_table().get(pid, (0,))[0] == hub.pid}
        assert len(direct) == 3, f"expected web, worker and beat under runhub, found {sorted(direct)}"
        processes = children | {hub.pid}

        hub.send_signal(signal.SIGINT)  # Ctrl-C
        started = time.monotonic()
        try:
            hub.wait(timeout=25)
        except subprocess.TimeoutExpired:
            pytest.fail(f"runhub still running 25 s after Ctrl-C:\n{log_tail()}")
        took = time.monotonic() - started
        assert hub.returncode == 0, f"runhub exited with {hub.returncode}:\n{log_tail()}"

        deadline = time.monotonic() + 5
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(children), f"left running after Ctrl-C: {sorted(_alive(children))}\n{log_tail()}"
        assert "PSA hub stopped." in log_tail()
        assert took < 20, f"stopping took {took:.1f} s"
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        for pid in _alive(processes):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# docker-compose.yml ---------------------------------------------------------------------------------


def test_docker_compose_file_is_valid():
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("the docker-compose command is not installed here (.ci/run installs Debian's docker-compose)")
    done = subprocess.run(
        [compose, "--env-file", ".env.example", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"docker-compose rejects docker-compose.yml:\n{done.stdout}\n{done.stderr}"

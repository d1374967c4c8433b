"""Benchmark: incidents posted through the API become tickets in the ConnectWise HTTP fake.

    make bench-tickets                      # embedded: SQLite + filesystem broker in a temp folder
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_bench REDIS_URL=redis://127.0.0.1:6379/5 make bench-tickets
    .venv/bin/python -m tests.bench.bench_tickets --incidents 500 --phases clean

A command that prints figures, not a test. It starts the fake ConnectWise in this process (with
100 ms added to every answer), gunicorn serving the hub, and a real Celery worker (prefork) on
the same database and broker; links a connection and sets up ticketing as an admin would; then,
per phase, posts the incidents through POST /api/v1/incidents/ as fast as the API takes them and
waits until every incident is synced. Figures per phase: API accept rate, accept -> ticket
created latency (the fake's clock at the moment it made the ticket, against the incident's
created_at), tickets created against incidents, duplicates (tickets carrying one reference),
PSA requests per incident, and the time the worker needed to drain the queue.

Phases: "clean" (nothing goes wrong) and "kill" (the whole worker is killed with SIGKILL and
started again twice while it is busy; what it held is recovered by the redelivery of its
messages or by the sweeper, which this command runs as beat would). Each phase uses an account
of its own, so the figures do not mix. Everything stops by itself: a phase gives up after
--timeout seconds and says what was missing.

Production settings apply, with two exceptions the summary prints: the sweeper runs every
--sweep-every seconds (beat: every minute) and the claim lease and sweep age are shortened
(--claim-lease, --sweep-after) so that the kill phase recovers in minutes, not after the
production lease of 10 minutes; neither changes what is created, only when.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]

# Bench-only overrides, applied in the worker processes and in this one (see `worker` below).
ENV_CLAIM_LEASE = "BENCH_CLAIM_LEASE_SECONDS"
ENV_SWEEP_AFTER = "BENCH_SWEEP_AFTER_SECONDS"
ENV_CW_RPM = "BENCH_CONNECTWISE_REQUESTS_PER_MINUTE"

# The fake ConnectWise's seeded board 1 "Service Desk" and its statuses, the priorities.
BOARD_ID, BOARD_NAME = "1", "Service Desk"
STATUS_MAP = {"Open": "101", "Pending": "103", "Snoozed": "104", "Done": "105", "Canceled": "106", "Dismissed": "107"}
PRIORITY_MAP = {"Critical": "1", "High": "2", "Medium": "3", "Low": "4"}
SEVERITIES = ["Critical", "High", "Medium", "Low"]
TENANTS = 20  # mapped to the fake's companies 1001..1020


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- the worker: hub's Celery worker with the bench overrides --------------------------------------


def apply_overrides() -> None:
    """In a worker process (before it forks) and in this one: the bench's lease, sweep age and
    ConnectWise budget, when set."""
    from django.utils import timezone

    from integrations import registry
    from ticketing import services

    if os.environ.get(ENV_CLAIM_LEASE):
        services.CLAIM_LEASE = timezone.timedelta(seconds=float(os.environ[ENV_CLAIM_LEASE]))
    if os.environ.get(ENV_SWEEP_AFTER):
        services.SWEEP_AFTER = timezone.timedelta(seconds=float(os.environ[ENV_SWEEP_AFTER]))
    if os.environ.get(ENV_CW_RPM):
        provider = registry.provider("connectwise")
        provider.budget = dataclasses.replace(provider.budget, max_requests=int(os.environ[ENV_CW_RPM]), window_seconds=60)


def run_worker(argv: list[str]) -> None:
    import django

    django.setup()
    apply_overrides()
    from hub.celery import app

    app.worker_main(["worker", *argv])


# --- the processes -------------------------------------------------------------------------------


@dataclass
class Processes:
    env: dict
    run_dir: Path
    concurrency: int
    web_workers: int
    web: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    base_url: str = ""
    worker_starts: int = 0

    def start_web(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        log_file = open(self.run_dir / "web.log", "ab")  # noqa: SIM115 - closed with the process
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "hub.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(self.web_workers), "--worker-class", "gthread", "--threads", "4",
             "--backlog", "2048", "--timeout", "60"],
            cwd=ROOT, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        import requests

        deadline = time.monotonic() + 60
        while True:
            if self.web.poll() is not None:
                raise SystemExit(f"gunicorn exited: see {self.run_dir / 'web.log'}")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not answer within 60 s: see {self.run_dir / 'web.log'}")
            time.sleep(0.3)

    def start_worker(self) -> None:
        self.worker_starts += 1
        path = self.run_dir / f"worker-{self.worker_starts}.log"
        log_file = open(path, "ab")  # noqa: SIM115 - closed with the process
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_tickets", "worker", "-Q", "psa,default",
             "--concurrency", str(self.concurrency), "--pool", "prefork", "--loglevel", "INFO",
             "--hostname", f"bench-{os.getpid()}-{self.worker_starts}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while " ready." not in path.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start: see {path}")
            time.sleep(0.2)

    def kill_worker(self) -> None:
        """kill -9 the worker and its pool processes: nothing is finished, nothing is acked."""
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()

    def stop(self) -> None:
        for process in (self.worker, self.web):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


# --- the fake, with the moment each ticket was made ---------------------------------------------------


class TimedFake:
    """The fake ConnectWise, recording when (this machine's clock) each ticket create answered."""

    def __init__(self, latency_ms: int):
        from tests.fakes.connectwise_server import FakeConnectWise

        self.fake = FakeConnectWise(latency_ms=latency_ms, bulk_companies=TENANTS + 5)
        self.created: dict[str, list[float]] = defaultdict(list)  # reference -> times
        self.requests: dict[str, int] = defaultdict(int)  # "account id" -> PSA requests
        self.lock = threading.Lock()
        original = self.fake.handle

        def handle(method, target, headers, raw, host):
            status, response_headers, body = original(method, target, headers, raw, host)
            path = target.split("?")[0].rstrip("/")
            if "/apis/3.0/service/tickets" in path:  # not the picklists the link refreshes
                with self.lock:
                    self.requests["tickets"] += 1
            if method == "POST" and path.endswith("service/tickets") and status == 201:
                reference = json.loads(body).get("externalXRef") or ""
                with self.lock:
                    self.created[reference].append(time.time())
            return status, response_headers, body

        self.fake.handle = handle
        self.fake.start()
        # A killed worker leaves answers with nobody to read them: no traceback for each.
        self.fake._server.handle_error = lambda request, client_address: None


# --- one phase --------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    incidents: int
    accepted: int = 0
    refused: dict = field(default_factory=dict)
    post_seconds: float = 0.0
    drain_seconds: float = 0.0
    latencies: list = field(default_factory=list)
    tickets: int = 0
    duplicates: int = 0
    missing: int = 0
    failed: int = 0
    not_synced: int = 0
    psa_requests: int = 0
    kills: list = field(default_factory=list)
    swept: int = 0
    timed_out: bool = False

    @property
    def accept_rate(self) -> float:
        return self.accepted / self.post_seconds if self.post_seconds else 0.0


def set_up_account(name: str, fake: TimedFake, processes: Processes):
    """An account linked to the fake, ticketing configured, tenants mapped, an API key."""
    from hub.models import Account, ApiKey, Tenant
    from integrations import services as integration_services
    from integrations.models import CompanyMapping, Connection
    from ticketing.models import TicketingConfig

    account = Account.objects.create(name=f"{name} {secrets.token_hex(3)}")
    config = {k: v for k, v in fake.fake.provider_config().items() if k != "client_id"}
    connection = integration_services.save_connection(account, "connectwise", config, fake.fake.provider_secrets())
    # The verification queues behind what an earlier phase left in the broker.
    deadline = time.monotonic() + 600
    while Connection.objects.get(pk=connection.pk).status != Connection.Status.CONNECTED:
        connection.refresh_from_db()
        if connection.status == Connection.Status.FAILED or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not verify the connection: {connection.last_error or 'timeout'}")
        time.sleep(0.3)
    TicketingConfig.objects.create(
        account=account, vendor="connectwise", board_id=BOARD_ID, board_name=BOARD_NAME,
        status_map=dict(STATUS_MAP), priority_map=dict(PRIORITY_MAP), type_id="201", source_id="4",
    )  # fmt: skip
    tenants = []
    for n in range(1, TENANTS + 1):
        tenant = Tenant.objects.create(account=account, name=f"Client {n:04d} Pty", external_id=f"client-{n}")
        CompanyMapping.objects.create(account=account, tenant=tenant, company_id=str(1000 + n), company_name=tenant.name)
        tenants.append(tenant.external_id)
    _, key = ApiKey.issue(account=account, name="bench")
    return account, key, tenants


def run_phase(name: str, args, fake: TimedFake, processes: Processes, *, kills: int) -> PhaseResult:
    import requests
    from django.db import connections

    from ticketing import services
    from ticketing.models import Incident

    log(f"phase {name}: setting up an account")
    account, key, tenants = set_up_account(f"Bench {name}", fake, processes)
    prefix = f"hub-{account.pk}-"
    result = PhaseResult(name, args.incidents)
    requests_before = fake.requests["tickets"]

    def tickets_made() -> int:
        with fake.lock:
            return sum(1 for ref in fake.created if ref.startswith(prefix))

    # The sweeper, as beat runs it (every minute in production).
    stop = threading.Event()

    def sweeper():
        while not stop.wait(args.sweep_every):
            try:
                result.swept += services.sweep()
            except Exception as exc:  # keep sweeping; say what went wrong
                log(f"sweep failed: {exc!r}")
        connections.close_all()

    # The killer: kill -9 the whole worker while it is busy, then start it again.
    def killer():
        marks = [round(args.incidents * (n + 1) / (kills + 1)) for n in range(kills)]
        for mark in marks:
            while tickets_made() < mark:
                if stop.wait(0.05):
                    return
            processes.kill_worker()
            made = tickets_made()
            log(f"  killed the worker (kill -9) at {made} tickets; restarting it")
            result.kills.append(made)
            time.sleep(1)
            processes.start_worker()

    threads = [threading.Thread(target=sweeper, daemon=True)]
    if kills:
        threads.append(threading.Thread(target=killer, daemon=True))
    for thread in threads:
        thread.start()

    local = threading.local()

    def post(n: int) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
        body = {"tenant": tenants[n % len(tenants)], "title": f"Bench incident {n}", "severity": SEVERITIES[n % 4],
                "details": "Mailbox rule forwarding to an outside address.", "dedupe_key": f"bench-{n}"}  # fmt: skip
        try:
            return session.post(f"{processes.base_url}/api/v1/incidents/", json=body, timeout=60).status_code
        except requests.RequestException as exc:
            return type(exc).__name__

    log(f"phase {name}: posting {args.incidents} incidents with {args.clients} clients")
    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        statuses = list(pool.map(post, range(args.incidents)))
    result.post_seconds = time.monotonic() - started
    result.accepted = sum(1 for s in statuses if s == 201)
    for status in statuses:
        if status != 201:
            result.refused[str(status)] = result.refused.get(str(status), 0) + 1
    log(f"phase {name}: {result.accepted} accepted in {result.post_seconds:.1f} s "
        f"({result.accept_rate:.0f}/s); waiting for the tickets")  # fmt: skip

    incidents = Incident.objects.filter(account=account)
    deadline = started + args.timeout
    last_report = 0.0
    while True:
        synced = incidents.filter(sync_state=Incident.Sync.SYNCED).count()
        failed = incidents.filter(sync_state=Incident.Sync.FAILED).count()
        if synced + failed >= result.accepted and (not kills or len(result.kills) == kills):
            break
        if time.monotonic() > deadline:
            result.timed_out = True
            break
        if time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            log(f"  {synced} synced, {failed} failed, {tickets_made()} tickets in the fake")
        time.sleep(0.5)
    result.drain_seconds = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    time.sleep(1)  # a create answered after the last sync would still be counted

    rows = list(incidents.values_list("pk", "created_at", "sync_state"))
    with fake.lock:
        created = {ref: list(times) for ref, times in fake.created.items() if ref.startswith(prefix)}
    for pk, created_at, state in rows:
        times = created.get(f"{prefix}{pk}")
        if times:
            result.latencies.append(min(times) - created_at.timestamp())
        else:
            result.missing += 1
        result.failed += state == Incident.Sync.FAILED
        result.not_synced += state not in (Incident.Sync.SYNCED, Incident.Sync.FAILED)
    result.tickets = len(created)
    result.duplicates = sum(len(times) - 1 for times in created.values())
    result.psa_requests = fake.requests["tickets"] - requests_before
    connections.close_all()
    return result


# --- set-up of the environment ---------------------------------------------------------------------


def prepare_environment(args) -> tuple[dict, Path, str]:
    """The environment of every process: this run's secrets, the database and broker."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench-tickets-"))
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_FILE", "HUB_ENCRYPTION_KEYS_FILE"}}
    from cryptography.fernet import Fernet

    env.update(
        DJANGO_SETTINGS_MODULE="hub.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        HUB_ENCRYPTION_KEYS=f"bench:{Fernet.generate_key().decode()}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PSA_ALLOW_PRIVATE_HOSTS="true",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        CELERY_TASK_ALWAYS_EAGER="false",
        **{ENV_CLAIM_LEASE: str(args.claim_lease), ENV_SWEEP_AFTER: str(args.sweep_after)},
    )
    if args.connectwise_rpm:
        env[ENV_CW_RPM] = str(args.connectwise_rpm)
    if env.get("DATABASE_URL"):
        ensure_database(env["DATABASE_URL"])
        where = f"PostgreSQL ({urlsplit(env['DATABASE_URL']).path.lstrip('/')})"
    else:
        env["HUB_DATA_DIR"] = str(run_dir / "hub-data")
        where = "SQLite"
    where += " + Redis" if env.get("REDIS_URL") else " + filesystem broker"
    return env, run_dir, where


def ensure_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database when it does not exist yet."""
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password, dbname="postgres"
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()


def purge_queues() -> None:
    """Nothing left over from an earlier run: its tasks would name accounts of an old fake."""
    from hub.celery import app

    with app.connection_for_write() as conn:
        for queue in ("psa", "default"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # a queue that was never declared
                pass


# --- the report ------------------------------------------------------------------------------------


def report(results: list[PhaseResult], args, where: str, fake: TimedFake) -> bool:
    from integrations import registry

    policy = registry.provider("connectwise").budget
    rpm = args.connectwise_rpm or policy.max_requests * 60 // policy.window_seconds
    print()
    print("=" * 78)
    print(f"bench-tickets: {args.incidents} incidents per phase, ConnectWise fake +{args.latency_ms} ms per answer")
    print(f"  {where}; gunicorn {args.web_workers} workers x 4 threads; Celery prefork concurrency "
          f"{args.concurrency}; {args.clients} API clients; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"  ConnectWise budget {rpm} requests/min, {policy.max_concurrent} at once per connection"
          + (" (overridden)" if args.connectwise_rpm else " (the production policy)"))  # fmt: skip
    print(f"  bench overrides: sweeper every {args.sweep_every:g} s (beat: 60 s), claim lease {args.claim_lease:g} s "
          f"(prod 600 s), sweep after {args.sweep_after:g} s (prod 300 s)")  # fmt: skip
    print("-" * 78)
    ok = True
    for r in results:
        print(f"phase {r.name}" + (f" — worker killed (kill -9) and restarted at {r.kills} tickets" if r.kills else ""))
        refused = f" (refused: {r.refused})" if r.refused else ""
        print(f"  API accept rate        {r.accept_rate:8.1f} incidents/s  ({r.accepted} in {r.post_seconds:.1f} s){refused}")
        if r.latencies:
            print(f"  accept -> ticket       p50 {percentile(r.latencies, 50):7.2f} s   p95 {percentile(r.latencies, 95):7.2f} s"
                  f"   p99 {percentile(r.latencies, 99):7.2f} s   max {max(r.latencies):7.2f} s")  # fmt: skip
        print(f"  drained in             {r.drain_seconds:8.1f} s  ({r.tickets / r.drain_seconds if r.drain_seconds else 0:.1f} tickets/s)")
        print(f"  tickets created        {r.tickets:8d}    incidents {r.accepted}   "
              f"{'OK' if r.tickets == r.accepted else 'MISMATCH'}")  # fmt: skip
        print(f"  duplicates             {r.duplicates:8d}    {'OK' if r.duplicates == 0 else 'DUPLICATES'}")
        print(f"  ticket requests/incid. {r.psa_requests / max(1, r.accepted):8.2f}    swept (re-queued) {r.swept}")
        if r.failed or r.not_synced or r.missing or r.timed_out:
            print(f"  !! failed {r.failed}, not synced {r.not_synced}, without ticket {r.missing}"
                  + (f", gave up after {args.timeout} s" if r.timed_out else ""))  # fmt: skip
        ok = ok and r.tickets == r.accepted == args.incidents and r.duplicates == 0 and not r.timed_out
        print("-" * 78)
    print("RESULT: " + ("tickets == incidents and no duplicates in every phase" if ok else "FAILED (see above)"))
    print("=" * 78)
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        run_worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=6, help="Celery prefork processes")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn worker processes (4 threads each)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent API clients posting incidents")
    parser.add_argument("--phases", default="clean,kill", help="clean, kill or both (comma separated)")
    parser.add_argument("--kills", type=int, default=2, help="worker kills in the kill phase")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds a phase may take in all")
    parser.add_argument("--sweep-every", type=float, default=10)
    parser.add_argument("--claim-lease", type=float, default=240)
    parser.add_argument("--sweep-after", type=float, default=120)
    parser.add_argument("--connectwise-rpm", type=int, default=0,
                        help="ConnectWise requests per minute per connection (default: the production policy)")
    args = parser.parse_args(argv)

    env, run_dir, where = prepare_environment(args)
    os.environ.clear()
    os.environ.update(env)
    log(f"run folder {run_dir} ({where}); migrating")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    import django

    django.setup()
    apply_overrides()
    purge_queues()

    fake = TimedFake(args.latency_ms)
    env["CONNECTWISE_CLIENT_ID"] = os.environ["CONNECTWISE_CLIENT_ID"] = fake.fake.client_id
    from django.conf import settings

    settings.CONNECTWISE_CLIENT_ID = fake.fake.client_id
    processes = Processes(env, run_dir, args.concurrency, args.web_workers)
    results: list[PhaseResult] = []
    failed_phases: list[str] = []
    try:
        processes.start_web()
        processes.start_worker()
        log(f"web at {processes.base_url}, worker up, fake ConnectWise at {fake.fake.base_url}")
        for phase in [p.strip() for p in args.phases.split(",") if p.strip()]:
            try:
                results.append(run_phase(phase, args, fake, processes, kills=args.kills if phase == "kill" else 0))
            except RuntimeError as exc:
                log(f"phase {phase} stopped: {exc}")
                failed_phases.append(phase)
    finally:
        processes.stop()
        fake.fake.stop()
    ok = report(results, args, where, fake) and not failed_phases
    if failed_phases:
        print(f"phases that could not run: {', '.join(failed_phases)}")
    print(f"logs: {run_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

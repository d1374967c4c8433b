"""Benchmark: billing sync of 2,000 mapped tenants into each vendor's HTTP fake (+100 ms per answer).

    make bench-billing                      # embedded: SQLite + file cache in a temporary folder
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_bench_billing REDIS_URL=redis://127.0.0.1:6379/10 make bench-billing
    .venv/bin/python -m tests.bench.bench_billing --tenants 200 --vendors connectwise

A command that prints figures, not a test. Per vendor it starts the vendor's fake in this process
with 2,000 extra companies and, for each, what billing needs (ConnectWise: an active agreement,
half of them already carrying an addition of the catalog item; Autotask: a Recurring Service
contract, half with the Service line on it; Halo: half of the clients with a licence of the
item), links an account to it the way the hub does (verification and list refreshes included),
maps 2,000 tenants (company, agreement/contract, product), reports their usage in bulk, sets the
mode to automatic with guardrails that let every line through, and then:

  1. first sync   — Sync now of every tenant (creates and updates);
  2. re-sync      — Sync now again with nothing changed (must write nothing);

and checks that every quantity in the fake equals the tenant's count. Figures per vendor and
phase: wall time, the run's own phase times, PSA requests (reads, writes, token requests) per
tenant, and the lines' outcomes.

How it runs the engine: `billing.services.start_run` exactly as the page's "Sync now" does,
with Celery in eager mode (CELERY_TASK_ALWAYS_EAGER), so the task `billing.execute_run` runs in
this process when the run is committed: the real claim, plan and apply, the real vendor adapters
and HTTP client (timeouts, retries, the rate limiter and concurrency cap shared through the cache
— Redis with REDIS_URL — and every request logged in the integration log) against the fake over
loopback HTTP. Only the broker hop to a worker process is left out; it adds nothing per tenant.
The vendors' production request budgets apply unless overridden (printed in the summary).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
VENDORS = ("connectwise", "autotask", "halo")
PRODUCT_KEY = "users"


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def units_of(n: int) -> int:
    return 1 + (n * 37) % 250


# --- the fakes, seeded for billing --------------------------------------------------------------------


@dataclass
class Seeded:
    """What one tenant is mapped to: company, agreement/contract, line, and where to look."""

    external_id: str
    name: str
    company_id: str
    agreement_id: str = ""
    line_id: str = ""
    units: int = 0


class Vendor:
    slug: str
    product_id: str
    fake: object

    def time_answers(self) -> None:
        """Add up the time the fake spends answering (its added latency included), so the report
        can tell the hub's own time from the PSA's."""
        import threading

        self.answer_seconds, lock = 0.0, threading.Lock()
        original = self.fake.handle

        def handle(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with lock:
                    self.answer_seconds += time.perf_counter() - started

        self.fake.handle = handle

    def start(self, tenants: int, latency_ms: int) -> list[Seeded]:
        raise NotImplementedError

    def link_values(self) -> tuple[dict, dict]:
        raise NotImplementedError

    def settings(self) -> dict:
        """Django settings of a hub that reaches this fake."""
        return {}

    def requests(self) -> list:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def classify(self, entry) -> str:
        """read | write | auth | other"""
        raise NotImplementedError

    def quantity(self, seeded: Seeded) -> tuple[int | None, str]:
        """(the quantity the fake holds for the tenant's product, a problem if not exactly one line)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class ConnectWise(Vendor):
    slug, product_id = "connectwise", "701"

    def start(self, tenants, latency_ms):
        from tests.fakes.connectwise_server import FakeConnectWise, _company_ref

        self.fake = fake = FakeConnectWise(latency_ms=0, bulk_companies=tenants)
        seeded = []
        companies = fake.data["companies"].records
        agreements, additions = fake.data["agreements"].records, fake.data["additions"].records
        template = dict(agreements[3003])
        product = {"id": 701, "identifier": "MDR-SEAT"}
        for n in range(1, tenants + 1):
            company = companies[1000 + n]
            agreement_id = 100_000 + n
            agreements[agreement_id] = {**template, "id": agreement_id, "name": f"Managed Services {n:04d}",
                                        "company": _company_ref(company)}  # fmt: skip
            if n % 2 == 0:  # half already billed: updated (or left alone) instead of created
                additions[200_000 + n] = {
                    "id": 200_000 + n, "product": product, "quantity": max(0, units_of(n) - 3 + (n % 5)),
                    "lessIncluded": 0, "unitPrice": 12.5, "unitCost": 6.0, "billCustomer": "Billable",
                    "effectiveDate": "2024-01-01T00:00:00Z", "cancelledDate": None, "taxableFlag": False,
                    "invoiceDescription": "MDR", "description": "MDR", "agreementId": agreement_id,
                    "agreementStatus": "Active", "uom": "Each", "extPrice": 0, "extCost": 0,
                }  # fmt: skip
            seeded.append(Seeded(f"cw-{n}", company["name"], str(company["id"]), str(agreement_id), units=units_of(n)))
        fake.start()
        fake.latency_ms = latency_ms
        return seeded

    def link_values(self):
        config = {k: v for k, v in self.fake.provider_config().items() if k != "client_id"}
        return config, self.fake.provider_secrets()

    def settings(self) -> dict:
        return {"CONNECTWISE_CLIENT_ID": self.fake.client_id}

    def requests(self):
        with self.fake.lock:
            return [r for r in self.fake.requests if "/apis/3.0/" in r.path]

    def clear(self):
        with self.fake.lock:
            self.fake.requests.clear()

    def classify(self, entry):
        return "read" if entry.method == "GET" else "write"

    def quantity(self, seeded):
        agreement_id = int(seeded.agreement_id)
        found = [a for a in self._by_agreement().get(agreement_id, []) if a["product"]["id"] == 701 and a["cancelledDate"] is None]
        if len(found) != 1:
            return None, f"{len(found)} additions"
        return found[0]["quantity"], ""

    def _by_agreement(self):
        if not hasattr(self, "_index") or self._index_at != len(self.fake.additions):
            index = {}
            for addition in self.fake.additions.values():
                index.setdefault(addition["agreementId"], []).append(addition)
            self._index, self._index_at = index, len(self.fake.additions)
        return self._index

    def stop(self):
        self.fake.stop()


class Autotask(Vendor):
    slug, product_id = "autotask", "1"

    def start(self, tenants, latency_ms):
        from tests.fakes.autotask_server import AutotaskFake

        self.fake = fake = AutotaskFake(companies=tenants + 1, latency_ms=0)
        today = fake.today
        seeded = []
        for n in range(1, tenants + 1):
            contract_id = 300_000 + n
            company = fake.tables["Companies"][n]
            services = {1: max(0, units_of(n) - 3 + (n % 5))} if n % 2 == 0 else {}
            fake.add_contract(contract_id, f"Managed Services {n:04d}", company_id=n, start=today - timedelta(days=100),
                              end=today + timedelta(days=265), services=services)  # fmt: skip
            seeded.append(Seeded(f"at-{n}", company["companyName"], str(n), str(contract_id), units=units_of(n)))
        fake.start()
        fake.latency_ms = latency_ms
        return seeded

    def link_values(self):
        return {"username": self.fake.username}, {"secret": self.fake.secret, "integration_code": self.fake.integration_code}

    def settings(self) -> dict:
        return {"AUTOTASK_ZONE_DISCOVERY_URL": self.fake.discovery_url}

    def requests(self):
        with self.fake.lock:
            return [r for r in self.fake.requests if r.entity]

    def clear(self):
        self.fake.reset_log()

    def classify(self, entry):
        if entry.method == "GET" or entry.path.rstrip("/").lower().endswith("/query"):
            return "read"
        return "write"

    def quantity(self, seeded):
        contract_id = int(seeded.agreement_id)
        lines = [cs for cs in self._lines().get(contract_id, []) if cs["serviceID"] == 1]
        if len(lines) != 1:
            return None, f"{len(lines)} service lines"
        return self.fake.units_today(lines[0]["id"]), ""

    def _lines(self):
        index = {}
        for line in self.fake.tables["ContractServices"].values():
            index.setdefault(line["contractID"], []).append(line)
        return index

    def stop(self):
        self.fake.stop()


class Halo(Vendor):
    slug, product_id = "halo", "1"
    FIRST = 10  # clients 1..6 carry the seed's own licences; the bench's start after them

    def start(self, tenants, latency_ms):
        from tests.fakes.halo_server import HaloFake, _licence

        self.fake = fake = HaloFake(clients=tenants + self.FIRST, latency_ms=0)
        data = fake.data
        seeded = []
        for n in range(1, tenants + 1):
            client = data.clients[self.FIRST + n]
            client["inactive"] = False
            if n % 2 == 0:
                licence_id = 10_000 + n
                data.licences[licence_id] = _licence(licence_id, "Email Security", client, 1, data.items[1]["name"],
                                                     max(0, units_of(n) - 3 + (n % 5)))  # fmt: skip
            seeded.append(Seeded(f"halo-{n}", client["name"], str(client["id"]), units=units_of(n)))
        fake.start()
        fake.latency_ms = latency_ms
        return seeded

    def link_values(self):
        return self.fake.config(), self.fake.secrets()

    def requests(self):
        with self.fake.lock:
            return list(self.fake.requests)

    def clear(self):
        self.fake.clear_log()

    def classify(self, entry):
        if "/token" in entry.path:
            return "auth"
        return "read" if entry.method == "GET" else "write"

    def quantity(self, seeded):
        client_id = int(seeded.company_id)
        found = [lic for lic in self._by_client().get(client_id, []) if lic.get("item_id") == 1 and not lic.get("deleted")]
        if len(found) != 1:
            return None, f"{len(found)} licences"
        return found[0]["count"], ""

    def _by_client(self):
        index = {}
        for licence in self.fake.licences.values():
            index.setdefault(licence["client_id"], []).append(licence)
        return index

    def stop(self):
        self.fake.stop()


VENDOR_CLASSES = {"connectwise": ConnectWise, "autotask": Autotask, "halo": Halo}


# --- one vendor ---------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    plan_seconds: float = 0.0
    apply_seconds: float = 0.0
    psa_seconds: float = 0.0  # the fake answering, its added latency included
    requests: Counter = field(default_factory=Counter)
    by_endpoint: Counter = field(default_factory=Counter)
    outcomes: dict = field(default_factory=dict)
    state: str = ""
    message: str = ""


@dataclass
class VendorResult:
    slug: str
    tenants: int
    setup_seconds: float = 0.0
    phases: list = field(default_factory=list)
    mismatches: list = field(default_factory=list)
    checked: int = 0
    log_rows: int = 0


def set_up(vendor: Vendor, seeded: list[Seeded]):
    from billing import services
    from billing.models import BillingMapping, Mode
    from hub.models import Account, Tenant
    from integrations import services as integration_services
    from integrations.models import CompanyMapping, Connection

    account = Account.objects.create(name=f"Bench billing {vendor.slug} {secrets.token_hex(3)}")
    config, secret_values = vendor.link_values()
    connection = integration_services.save_connection(account, vendor.slug, config, secret_values)
    connection.refresh_from_db()  # verified in this process (eager tasks), lists refreshed too
    if connection.status != Connection.Status.CONNECTED:
        raise SystemExit(f"{vendor.slug}: the link was not verified: {connection.last_error or connection.status}")
    product = services.save_product(account, PRODUCT_KEY, {"name": "Users", "psa_product_id": vendor.product_id,
                                                           "psa_product_name": "Bench product"})  # fmt: skip
    tenants = Tenant.objects.bulk_create(
        [Tenant(account=account, name=s.name, external_id=s.external_id) for s in seeded], batch_size=1000
    )
    tenants = {t.external_id: t for t in Tenant.objects.filter(account=account)}
    CompanyMapping.objects.bulk_create(
        [CompanyMapping(account=account, tenant=tenants[s.external_id], company_id=s.company_id, company_name=s.name)
         for s in seeded], batch_size=1000,
    )  # fmt: skip
    BillingMapping.objects.bulk_create(
        [BillingMapping(account=account, tenant=tenants[s.external_id], product=product, company_id=s.company_id,
                        company_name=s.name, agreement_id=s.agreement_id, agreement_name=f"Contract of {s.name}",
                        line_id=s.line_id) for s in seeded], batch_size=1000,
    )  # fmt: skip
    services.record_usage(account, [services.UsageReport(tenants[s.external_id], PRODUCT_KEY, s.units) for s in seeded])
    # Automatic, and guardrails that let a first sync from nothing through (the bench measures writes).
    services.update_settings(account, {"mode": Mode.AUTOMATIC, "max_change_percent": 10_000, "max_change_units": 10_000_000,
                                       "schedule": "off"})  # fmt: skip
    return account, tenants


def run_phase(name: str, account, vendor: Vendor, tenants: int) -> Phase:
    from billing import services
    from billing.models import BillingRun

    vendor.clear()
    phase = Phase(name)
    vendor.answer_seconds = 0.0
    started = time.monotonic()
    run = services.start_run(account, trigger=BillingRun.Trigger.MANUAL, apply=True, label="bench")
    # With eager tasks the run has been executed by now (on commit); wait all the same.
    deadline = time.monotonic() + 3600
    while True:
        run.refresh_from_db()
        if not run.is_active:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"run #{run.pk} still {run.state} after an hour")
        time.sleep(0.5)
    phase.seconds = time.monotonic() - started
    phase.psa_seconds = vendor.answer_seconds
    if run.started_at and run.planned_at:
        phase.plan_seconds = (run.planned_at - run.started_at).total_seconds()
    if run.planned_at and run.finished_at:
        phase.apply_seconds = (run.finished_at - run.planned_at).total_seconds()
    phase.state, phase.message, phase.outcomes = run.state, run.message, dict(run.counts)
    for entry in vendor.requests():
        kind = vendor.classify(entry)
        phase.requests[kind] += 1
        path = urlsplit(entry.path).path
        phase.by_endpoint[f"{entry.method} {_shape(path)}"] += 1
    return phase


def _shape(path: str) -> str:
    """/v4_6/atservicesrest/V1.0/Contracts/query -> Contracts/query; ids become {id}."""
    for marker in ("/apis/3.0/", "/V1.0/", "/api/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return "/".join("{id}" if part.isdigit() else part for part in path.strip("/").split("/"))


def check(vendor: Vendor, seeded: list[Seeded], result: VendorResult) -> None:
    for s in seeded:
        quantity, problem = vendor.quantity(s)
        result.checked += 1
        if problem or quantity != s.units:
            result.mismatches.append((s.external_id, s.units, quantity, problem))


def bench_vendor(slug: str, args) -> VendorResult:
    from integrations.models import IntegrationLog

    vendor = VENDOR_CLASSES[slug]()
    log(f"{slug}: seeding the fake with {args.tenants} companies and their agreements/contracts/licences")
    seeded = vendor.start(args.tenants, args.latency_ms)
    vendor.time_answers()
    from django.conf import settings

    for name, value in vendor.settings().items():
        setattr(settings, name, value)
    result = VendorResult(slug, args.tenants)
    try:
        started = time.monotonic()
        account, _ = set_up(vendor, seeded)
        result.setup_seconds = time.monotonic() - started
        log(f"{slug}: linked and {args.tenants} tenants mapped in {result.setup_seconds:.1f} s; first sync")
        for name in ("first sync", "re-sync"):
            phase = run_phase(name, account, vendor, args.tenants)
            result.phases.append(phase)
            log(f"{slug}: {name} {phase.state} in {phase.seconds:.1f} s: {phase.message}")
        check(vendor, seeded, result)
        result.log_rows = IntegrationLog.objects.filter(account=account).count()
    finally:
        vendor.stop()
    return result


# --- environment and report ------------------------------------------------------------------------------


def prepare_environment(args) -> str:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-billing-"))
    from cryptography.fernet import Fernet

    os.environ.pop("SECRET_KEY_FILE", None)
    os.environ.pop("HUB_ENCRYPTION_KEYS_FILE", None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="hub.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        HUB_ENCRYPTION_KEYS=f"bench:{Fernet.generate_key().decode()}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PSA_ALLOW_PRIVATE_HOSTS="true",
        CELERY_TASK_ALWAYS_EAGER="true",
        LOG_LEVEL="WARNING",
    )
    if os.environ.get("DATABASE_URL"):
        from tests.bench.bench_tickets import ensure_database

        ensure_database(os.environ["DATABASE_URL"])
        where = f"PostgreSQL ({urlsplit(os.environ['DATABASE_URL']).path.lstrip('/')})"
    else:
        os.environ["HUB_DATA_DIR"] = str(run_dir / "hub-data")
        where = "SQLite"
    where += " + Redis cache (rate limits)" if os.environ.get("REDIS_URL") else " + file cache"
    return where


def apply_budgets(args) -> dict:
    import dataclasses

    from integrations import registry

    shown = {}
    for slug, value in (("connectwise", args.connectwise_per_minute), ("autotask", args.autotask_per_hour),
                        ("halo", args.halo_per_5min)):  # fmt: skip
        provider = registry.provider(slug)
        policy = provider.budget
        if value:
            policy = provider.budget = dataclasses.replace(policy, max_requests=value)
        shown[slug] = f"{policy.max_requests} per {policy.window_seconds} s" + (" (overridden)" if value else " (production)")
    return shown


def report(results: list[VendorResult], args, where: str, budgets: dict) -> bool:
    print()
    print("=" * 86)
    print(f"bench-billing: {args.tenants} mapped tenants per vendor, fake PSA +{args.latency_ms} ms per answer, "
          f"one product ({PRODUCT_KEY})")  # fmt: skip
    print(f"  {where}; engine: billing.services.start_run -> billing.execute_run (Celery eager, in this process), "
          "real adapters over HTTP")  # fmt: skip
    print("  request budgets: " + "; ".join(f"{slug} {text}" for slug, text in budgets.items() if slug in args.vendors))
    ok = True
    for r in results:
        print("-" * 86)
        print(f"{r.slug}: set-up (link, verify, lists, {r.tenants} mappings, usage) {r.setup_seconds:.1f} s")
        for p in r.phases:
            per = {kind: p.requests[kind] / r.tenants for kind in ("read", "write", "auth")}
            print(f"  {p.name:<11} wall {p.seconds:7.1f} s (plan {p.plan_seconds:6.1f} s, apply {p.apply_seconds:6.1f} s)  "
                  f"state {p.state}")  # fmt: skip
            hub = max(0.0, p.seconds - p.psa_seconds)
            print(f"              PSA answering {p.psa_seconds:7.1f} s; the hub's own time {hub:6.1f} s "
                  f"({1000 * hub / r.tenants:.1f} ms per tenant: database, log rows, HTTP client, and any wait for "
                  "the request budget)")  # fmt: skip
            print(f"              PSA requests {sum(p.requests.values()):6d}: reads {p.requests['read']:5d} "
                  f"({per['read']:.3f}/tenant)  writes {p.requests['write']:5d} ({per['write']:.3f}/tenant)"
                  + (f"  token {p.requests['auth']}" if p.requests["auth"] else ""))  # fmt: skip
            top = ", ".join(f"{k} ×{v}" for k, v in p.by_endpoint.most_common(6))
            print(f"              by endpoint: {top}")
            outcomes = ", ".join(f"{k} {v}" for k, v in p.outcomes.items() if v and k != "total")
            print(f"              lines: {outcomes}")
        resync = r.phases[-1] if len(r.phases) > 1 else None
        # At most one read of its own per tenant, plus the listings every tenant shares (ConnectWise:
        # the agreements of 100 companies and the catalog item per request; 2 % leaves room for them).
        resync_ok = resync is not None and resync.requests["write"] == 0 and resync.requests["read"] <= r.tenants * 1.02
        equal = not r.mismatches and r.checked == r.tenants
        reads = resync.requests["read"] / r.tenants if resync else float("nan")
        print(f"  re-sync target (<= 1 read per tenant + shared listings, no write): {reads:.3f} reads/tenant, "
              f"{resync.requests['write'] if resync else '?'} writes: {'OK' if resync_ok else 'MISSED'}")  # fmt: skip
        print(f"  every quantity in the fake equals the tenant's count: "
              f"{'OK' if equal else 'NO'} ({r.checked - len(r.mismatches)}/{r.tenants})")  # fmt: skip
        for external_id, units, quantity, problem in r.mismatches[:10]:
            print(f"    !! {external_id}: count {units}, fake {quantity} {problem}")
        print(f"  integration log rows for the account: {r.log_rows}")
        ok = ok and resync_ok and equal and all(p.state == "done" for p in r.phases)
    print("=" * 86)
    print("RESULT: " + ("every quantity equal, re-sync read-only within target" if ok else "FAILED (see above)"))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--vendors", default=",".join(VENDORS))
    parser.add_argument("--connectwise-per-minute", type=int, default=0, help="override the production budget")
    parser.add_argument("--autotask-per-hour", type=int, default=0, help="override the production budget")
    parser.add_argument("--halo-per-5min", type=int, default=0, help="override the production budget")
    args = parser.parse_args(argv)
    args.vendors = [v.strip() for v in args.vendors.split(",") if v.strip()]
    unknown = set(args.vendors) - set(VENDORS)
    if unknown:
        parser.error(f"unknown vendor(s): {', '.join(sorted(unknown))}")

    where = prepare_environment(args)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    log(f"{where}; migrating")
    call_command("migrate", verbosity=0, interactive=False)
    budgets = apply_budgets(args)
    results = []
    for slug in args.vendors:
        results.append(bench_vendor(slug, args))
    return 0 if report(results, args, where, budgets) else 1


if __name__ == "__main__":
    sys.exit(main())

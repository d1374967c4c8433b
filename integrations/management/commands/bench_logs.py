"""`manage.py bench_logs` (make bench-logs): server time of the logs page with a million rows.

Fills PostgreSQL with --rows integration log rows across --accounts accounts (one large account
holds --big-share of them, the rest share the remainder) in one INSERT … SELECT over
generate_series, with the secondary indexes dropped during the load and rebuilt after. Then
it times the real pages through Django's test client (middleware, query, template): the logs
page of the large account and of a typical one, without and with each filter, first page and
page 50 (reached by following the cursor), the API, vendor staff across all accounts, the
Integrations page with its health panel; and prints p50/p95, the sizes of the table and each
index per million rows, and a retention sweep.

Runs against DATABASE_URL, which must be PostgreSQL, e.g.
DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_bench_logs (created when missing).
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils import timezone

TABLE = "integrations_integrationlog"
PREFIX = "Bench MSP "
ACTIONS = (["ticket.create"] * 3 + ["ticket.sync"] * 3 + ["ticket.update"] * 2 + ["ticket.note"] + ["billing.sync"] * 3
           + ["connection.verify", "connection.picklist", "import.companies"] + ["webhook.received"] * 4
           + ["mapping.company"])
ERRORS = [
    ("auth_failed", "Authentication failed: check the Company ID, Public and Private keys of the API member."),
    ("invalid", "ConnectWise could not create the ticket: the Service Board has no Default Team (Cannot find default "
                "team for board specified). Set an active Default Team, then retry."),
    ("permission_missing", "ConnectWise API user does not have permission to access Service > Priority."),
    ("blocked", "Multiple agreements contain the mapped product for this company. Only one agreement per company "
                "should have the product. Resolve in ConnectWise."),
    ("unavailable", "Could not reach ConnectWise at acme.example.com: the connection timed out. Check the region/URL."),
    ("", "Tenant is not mapped to a PSA company and no default company is set. Map it under Integrations."),
    ("blocked", "Duplicate service found: the mapped Autotask Service appears 2 times on this contract."),
    ("blocked", "Contract has a start date in the future. Billing cannot be synced until the contract period has begun."),
]


def _sql_array(values) -> str:
    return "ARRAY[" + ",".join("'" + str(v).replace("'", "''") + "'" for v in values) + "]"


class Command(BaseCommand):
    help = "Benchmark the integration logs page on PostgreSQL with a million log rows."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--accounts", type=int, default=100)
        parser.add_argument("--big-share", type=float, default=0.2,
                            help="Share of the rows held by the largest account (default 0.2)")
        parser.add_argument("--repeat", type=int, default=30, help="Timed requests per scenario")
        parser.add_argument("--fresh", action="store_true", help="Regenerate the rows even if they are there")
        parser.add_argument("--no-retention", action="store_true", help="Skip the retention sweep")
        parser.add_argument("--explain", action="store_true", help="Print the query plan of each scenario")

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("bench_logs needs PostgreSQL: set DATABASE_URL=postgres://…/hub_bench_logs")
        self.options = options
        self.out = self.stdout.write
        self.create_database_if_missing()
        call_command("migrate", verbosity=0, interactive=False)
        accounts = self.prepare(options["rows"], options["accounts"], options["big_share"], options["fresh"])
        setup_test_environment()  # the test client's host; e-mail to memory
        settings.DEBUG = False
        self.report_sizes()
        self.time_pages(accounts)
        if not options["no_retention"]:
            self.time_retention()

    def create_database_if_missing(self) -> None:
        from django.db.utils import OperationalError

        try:
            connection.ensure_connection()
            return
        except OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
        import psycopg2

        params = connection.get_connection_params()
        name = params.pop("database", None) or params.pop("dbname")
        params["dbname"] = "postgres"
        maintenance = psycopg2.connect(**params)
        maintenance.autocommit = True
        with maintenance.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        maintenance.close()
        self.out(f"Created database {name}.")

    # --- data ---------------------------------------------------------------------------------------------

    def prepare(self, rows: int, n_accounts: int, big_share: float, fresh: bool) -> dict:
        from django.contrib.auth import get_user_model

        from hub.models import Account, Membership, Tenant
        from integrations.models import Connection, IntegrationLog

        User = get_user_model()
        accounts = list(Account.objects.filter(name__startswith=PREFIX).order_by("name"))
        if len(accounts) != n_accounts:
            fresh = True
            IntegrationLog.objects.filter(account__name__startswith=PREFIX).delete()
            Account.objects.filter(name__startswith=PREFIX).delete()
            accounts = [Account.objects.create(name=f"{PREFIX}{n:03d}") for n in range(n_accounts)]
            for account in accounts:
                Connection.objects.create(account=account, vendor="connectwise", status="connected",
                                          config={"company_id": "acme", "site": "acme.example.com"},
                                          credentials_updated_at=timezone.now() - timedelta(days=30))
                Tenant.objects.bulk_create([Tenant(account=account, name=f"Customer {account.pk}-{t}",
                                                   external_id=f"t{account.pk}-{t}") for t in range(20)])
        admin, _ = User.objects.get_or_create(username="bench-admin@example.com", defaults={"email": "bench-admin@example.com"})
        staff, _ = User.objects.get_or_create(username="bench-staff@example.com",
                                              defaults={"email": "bench-staff@example.com", "is_staff": True})
        for account in accounts[:2]:
            Membership.objects.get_or_create(user=admin, account=account, defaults={"role": "admin"})
        have = IntegrationLog.objects.filter(account__in=accounts).count()
        if fresh or abs(have - rows) > rows * 0.02:
            self.load(rows, accounts, big_share)
        else:
            self.out(f"Reusing {have:,} rows already loaded (--fresh to regenerate).")
        return {"big": accounts[0], "typical": accounts[1], "admin": admin, "staff": staff}

    def load(self, rows: int, accounts, big_share: float) -> None:
        from hub.models import Tenant
        from integrations.models import Connection

        self.out(f"Loading {rows:,} rows across {len(accounts)} accounts ({big_share:.0%} in the largest)…")
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE NOT account_id = ANY(%s))", [[a.pk for a in accounts]])
            if cursor.fetchone()[0]:
                cursor.execute(f"DELETE FROM {TABLE} WHERE account_id = ANY(%s)", [[a.pk for a in accounts]])
            else:
                cursor.execute(f"TRUNCATE {TABLE}")  # only bench rows: no dead tuples left behind
            cursor.execute("DROP TABLE IF EXISTS bench_accounts")
            cursor.execute("CREATE TEMP TABLE bench_accounts (idx int PRIMARY KEY, account_id bigint, connection_id uuid, "
                           "tenant_ids bigint[])")
            for idx, account in enumerate(accounts):
                tenant_ids = list(Tenant.objects.filter(account=account).values_list("pk", flat=True))
                connection_id = Connection.objects.filter(account=account).values_list("pk", flat=True).first()
                cursor.execute("INSERT INTO bench_accounts VALUES (%s, %s, %s, %s)", [idx, account.pk, connection_id, tenant_ids])
            # Secondary indexes are rebuilt after the load: far faster than maintaining them row by row.
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s",
                           [TABLE, "%_pkey"])
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
            others = len(accounts) - 1
            error_kinds = _sql_array([k for k, _ in ERRORS])
            error_texts = _sql_array([m for _, m in ERRORS])
            cursor.execute(f"""
                INSERT INTO {TABLE} (account_id, connection_id, tenant_id, action, action_group, outcome, error_kind,
                    message, http_method, http_path, http_status, duration_ms, request_excerpt, response_excerpt,
                    correlation_id, subject, created_at)
                SELECT b.account_id, b.connection_id,
                    CASE WHEN s.r_ten < 0.7 THEN b.tenant_ids[1 + floor(s.r_ten2 * array_length(b.tenant_ids, 1))::int] END,
                    s.action, split_part(s.action, '.', 1), s.outcome,
                    CASE WHEN s.outcome = 'error' AND NOT s.is_request THEN ({error_kinds})[1 + s.err] ELSE '' END,
                    CASE
                      WHEN s.is_request THEN s.method || ' ' || s.path || ' → ' || s.status
                      WHEN s.outcome = 'error' THEN 'Incident #' || s.g || ': ' || ({error_texts})[1 + s.err]
                      WHEN s.outcome = 'skipped' THEN 'Skipped: the integration is paused; incident #' || s.g || ' is held.'
                      WHEN s.action LIKE 'ticket.%%' AND b.idx %% 2 = 1
                        THEN 'Created ticket ' || s.g || ' for incident #' || (s.g / 2) || ' in Autotask queue Level I Support.'
                      WHEN s.action LIKE 'ticket.%%' THEN 'Created ticket T' || s.g || ' for incident #' || (s.g / 2) || ' on board Help Desk.'
                      WHEN s.action LIKE 'billing.%%' THEN 'Synced ' || (s.g %% 500) || ' units of Managed Security to agreement addition ' || (s.g %% 9000) || '.'
                      WHEN s.action LIKE 'webhook.%%' THEN 'Ticket T' || s.g || ' status changed to In Progress in ConnectWise.'
                      WHEN s.action LIKE 'import.%%' THEN 'Imported ' || (s.g %% 2000) || ' companies from ConnectWise.'
                      WHEN s.action LIKE 'mapping.%%' THEN 'Tenant mapped to company ' || s.g || '.'
                      ELSE 'Connected to ConnectWise (Acme IT Services).'
                    END,
                    CASE WHEN s.is_request THEN s.method ELSE '' END,
                    CASE WHEN s.is_request THEN s.path ELSE '' END,
                    CASE WHEN s.is_request THEN s.status END,
                    CASE WHEN s.is_request THEN 40 + floor(s.r_dur * 900)::int END,
                    CASE WHEN s.is_request AND s.method <> 'GET'
                         THEN '{{"summary": "Phishing email reported by a user", "board": {{"id": 1}}, "company": {{"id": ' || (s.g %% 900) || '}}, "initialDescription": "' || repeat('Details of the incident. ', 6) || '"}}' ELSE '' END,
                    CASE WHEN s.is_request AND s.outcome = 'error'
                         THEN '{{"code": "InvalidObject", "message": "ticket object is invalid", "errors": [{{"code": "InvalidObject", "message": "Cannot find default team for board specified", "field": "board"}}]}}'
                         WHEN s.is_request THEN '{{"id": ' || s.g || ', "summary": "Phishing email reported by a user", "status": {{"id": 16, "name": "New"}}, "_info": {{"lastUpdated": "2025-01-01T00:00:00Z"}}}}'
                         ELSE '' END,
                    substr(md5((s.g / 3)::text), 1, 16),
                    CASE WHEN s.action LIKE 'ticket.%%' THEN 'incident:' || (s.g / 3)
                         WHEN s.action LIKE 'billing.%%' THEN 'billing_run:' || (s.g / 1000) ELSE '' END,
                    now() - s.r_time * interval '90 days'
                FROM (
                    SELECT q.*,
                        ({_sql_array(ACTIONS)})[1 + floor(q.r_act * {len(ACTIONS)})::int] AS action,
                        CASE WHEN q.r_out < 0.08 THEN 'error' WHEN q.r_out < 0.10 THEN 'skipped' ELSE 'ok' END AS outcome,
                        q.r_req < 0.35 AS is_request,
                        floor(q.r_err * {len(ERRORS)})::int AS err,
                        (ARRAY['GET', 'GET', 'POST', 'PATCH'])[1 + floor(q.r_met * 4)::int] AS method,
                        '/v4_6_release/apis/3.0/service/tickets/' || (q.g %% 100000) AS path,
                        CASE WHEN q.r_out < 0.08 THEN (ARRAY[400, 401, 403, 404, 429, 500, 502])[1 + floor(q.r_sta * 7)::int]
                             ELSE (ARRAY[200, 200, 200, 201, 204])[1 + floor(q.r_sta * 5)::int] END AS status
                    FROM (
                        SELECT g, random() AS r_acc, random() AS r_acc2, random() AS r_act, random() AS r_out,
                               random() AS r_req, random() AS r_err, random() AS r_met, random() AS r_sta,
                               random() AS r_ten, random() AS r_ten2, random() AS r_dur, random() AS r_time
                        FROM generate_series(1, %s) AS g
                    ) q
                ) s
                JOIN bench_accounts b
                  ON b.idx = CASE WHEN s.r_acc < %s THEN 0 ELSE 1 + floor(s.r_acc2 * {others})::int END
            """, [rows, big_share])
            loaded = time.monotonic() - started
            cursor.execute("SET maintenance_work_mem = '512MB'")
            for name, definition in indexes:
                cursor.execute(definition)
            cursor.execute(f"VACUUM ANALYZE {TABLE}") if connection.get_autocommit() else cursor.execute(f"ANALYZE {TABLE}")
        self.out(f"Loaded in {loaded:.1f} s, indexes rebuilt in {time.monotonic() - started - loaded:.1f} s.")

    # --- sizes --------------------------------------------------------------------------------------------------

    def report_sizes(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            total = cursor.fetchone()[0]
            cursor.execute("SELECT pg_relation_size(%s), pg_indexes_size(%s), pg_total_relation_size(%s)", [TABLE] * 3)
            heap, indexes, everything = cursor.fetchone()
            cursor.execute("SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                           "WHERE relname = %s ORDER BY 2 DESC", [TABLE])
            per_index = cursor.fetchall()
        million = total / 1_000_000 or 1
        mib = 1024 * 1024
        self.out(f"\n== Size: {total:,} rows in {TABLE} (figures per million rows) ==")
        self.out(f"  table (heap + TOAST)  {(everything - indexes) / mib / million:8.1f} MiB   (heap alone {heap / mib / million:.1f} MiB)")
        self.out(f"  all indexes           {indexes / mib / million:8.1f} MiB")
        self.out(f"  total                 {everything / mib / million:8.1f} MiB")
        for name, size in per_index:
            self.out(f"    {name:<52} {size / mib / million:7.1f} MiB")

    # --- timings ------------------------------------------------------------------------------------------------

    def _time(self, client: Client, url: str) -> list[float]:
        for _ in range(2):
            response = client.get(url)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}")
        samples = []
        for _ in range(self.options["repeat"]):
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        return samples

    def _cursor_of_page(self, params: dict, account, user, page_number: int) -> str | None:
        from django.http import QueryDict

        from integrations import logs

        query = QueryDict(mutable=True)
        query.update(params)
        filters = logs.parse_filters(query, user=user, account=account)
        cursor = ""
        for _ in range(page_number - 1):
            rows, cursor = logs.page(filters, select_related=False)
            if not cursor:
                return None
            filters.cursor = logs.decode_cursor(cursor)
        return cursor

    def time_pages(self, accounts: dict) -> None:
        from hub.tenancy import SESSION_KEY
        from integrations.models import IntegrationLog

        big, typical, admin, staff = accounts["big"], accounts["typical"], accounts["admin"], accounts["staff"]
        counts = {a.pk: IntegrationLog.objects.filter(account=a).count() for a in (big, typical)}
        tenant = big.tenants.order_by("pk").first()
        day_from = (timezone.now() - timedelta(days=40)).date().isoformat()
        day_to = (timezone.now() - timedelta(days=30)).date().isoformat()
        rare = IntegrationLog.objects.filter(account=big, outcome="error", http_method="").values_list("message", flat=True).first()
        rare_term = rare.split(":", 1)[0] + ":" if rare else "Incident #1:"
        scenarios = [
            ("no filter", {}),
            ("range=24h", {"range": "24h"}),
            ("range=7d", {"range": "7d"}),
            ("since..until (10 days)", {"since": day_from, "until": day_to}),
            ("tenant", {"tenant": tenant.external_id}),
            ("group=ticket", {"group": "ticket"}),
            ("group=import (rare)", {"group": "import"}),
            ("action=connection.verify", {"action": "connection.verify"}),
            ("outcome=error", {"outcome": "error"}),
            ("status=401", {"status": "401"}),
            ("level=actions", {"level": "actions"}),
            ("q=default team (~0.6%)", {"q": "default team"}),
            (f"q={rare_term} (1 row)", {"q": rare_term}),
            ("q=ticket (common)", {"q": "ticket"}),
            ("q=timed out (~0.6%)", {"q": "timed out"}),
            ("q=Level I Support (other accounts' words)", {"q": "Level I Support"}),
            ("q=paused + group=billing", {"q": "paused", "group": "billing"}),
            ("group+outcome+range=7d", {"group": "ticket", "outcome": "error", "range": "7d"}),
        ]
        client = Client()
        client.force_login(admin)
        results = []

        def run(label: str, account, user, params: dict, page_client: Client, base: str = "/settings/logs/"):
            session = page_client.session
            session[SESSION_KEY] = account.pk
            session.save()
            first = f"{base}?{urlencode(params)}" if params else base
            row = [label, self._stats(self._time(page_client, first))]
            cursor = self._cursor_of_page(params, None if params.get("account") == "all" else account, user, 50)
            if cursor:
                row.append(self._stats(self._time(page_client, f"{base}?{urlencode({**params, 'cursor': cursor})}")))
            else:
                row.append(None)
            results.append(row)
            if self.options["explain"]:
                self._explain(params, account, user)

        self.out(f"\n== Logs page, server time in ms (p50 / p95 of {self.options['repeat']} requests; target p95 < 150) ==")
        for label, params in scenarios:
            run(f"large account ({counts[big.pk]:,} rows): {label}", big, admin, params, client)
        for label, params in [scenarios[0], scenarios[8], scenarios[11], scenarios[15]]:
            run(f"typical account ({counts[typical.pk]:,} rows): {label}", typical, admin, params, client)
        staff_client = Client()
        staff_client.force_login(staff)
        run("vendor staff, all accounts: no filter", big, staff, {"account": "all"}, staff_client)
        run("vendor staff, all accounts: outcome=error", big, staff, {"account": "all", "outcome": "error"}, staff_client)
        run("vendor staff, all accounts: status=401", big, staff, {"account": "all", "status": "401"}, staff_client)
        run("API /api/v1/logs: no filter", big, admin, {}, client, base="/api/v1/logs")
        run("API /api/v1/logs: group=billing&outcome=error", big, admin, {"group": "billing", "outcome": "error"}, client,
            base="/api/v1/logs")
        session = client.session
        session[SESSION_KEY] = big.pk
        session.save()
        results.append(["Integrations page with health panel (large account)", self._stats(self._time(client, "/settings/integrations/")), None])

        width = max(len(r[0]) for r in results) + 2
        self.out(f"{'scenario':<{width}}{'first page':>22}{'page 50':>22}")
        worst = 0.0
        for label, first, fiftieth in results:
            cells = [f"{s[0]:7.1f} / {s[1]:7.1f}" if s else "—" for s in (first, fiftieth)]
            worst = max([worst] + [s[1] for s in (first, fiftieth) if s])
            self.out(f"{label:<{width}}{cells[0]:>22}{cells[1]:>22}")
        self.out(f"Worst p95: {worst:.1f} ms ({'within' if worst < 150 else 'ABOVE'} the 150 ms target).")

    @staticmethod
    def _stats(samples: list[float]) -> tuple[float, float]:
        samples = sorted(samples)
        p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
        return statistics.median(samples), p95

    def _explain(self, params: dict, account, user) -> None:
        from django.http import QueryDict

        from integrations import logs

        query = QueryDict(mutable=True)
        query.update(params)
        filters = logs.parse_filters(query, user=user, account=account)
        queryset = logs.after_cursor(logs.filtered(filters), filters.cursor)[: filters.page_size + 1]
        self.out(queryset.explain(analyze=True))

    # --- retention ----------------------------------------------------------------------------------------------

    def time_retention(self) -> None:
        from integrations import logs
        from integrations.models import IntegrationLog

        days = 89
        due = IntegrationLog.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).count()
        batches: list[float] = []
        started = time.monotonic()
        deleted = 0
        while True:
            t0 = time.perf_counter()
            n = logs.purge_old_entries(days=days, max_batches=1)
            batches.append((time.perf_counter() - t0) * 1000)
            deleted += n
            if n < 5000:
                break
        elapsed = time.monotonic() - started
        self.out(f"\n== Retention: entries older than {days} days ({due:,} rows) ==")
        self.out(f"  deleted {deleted:,} rows in {len(batches)} batches of ≤5,000 in {elapsed:.1f} s; "
                 f"longest batch (one short transaction) {max(batches):.0f} ms, median {statistics.median(batches):.0f} ms")
        connections.close_all()

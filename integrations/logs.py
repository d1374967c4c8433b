"""Reading the integration log: filters, keyset pages, entry detail, support text, CSV, retention.

Shared by the logs pages (integrations/views_logs.py), the API (integrations/api.py) and the
benchmark (`manage.py bench_logs`). Pages are keyset pages on (created_at, id), newest first:
a page is one short range scan of an index ending in those two columns however deep it is
(no OFFSET, no COUNT). Filter values that cannot be used are dropped with a message in
`LogFilters.warnings`; they never raise.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import dataclasses
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from hub.models import Account, Tenant
from hub.retention import delete_in_batches
from integrations.models import IntegrationLog

logger = logging.getLogger(__name__)

# The action filter: the part of `action` before the first dot (IntegrationLog.action_group).
GROUPS = {
    "connection": "Connection",
    "ticket": "Tickets",
    "billing": "Billing",
    "import": "Imports",
    "webhook": "Webhooks",
    "mapping": "Tenant mapping",
}
OUTCOMES = dict(IntegrationLog.Outcome.choices)
LEVELS = {"all": "Actions and PSA requests", "actions": "Actions only", "requests": "PSA requests only"}
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
          "90d": timedelta(days=90)}
RANGE_LABELS = {"": "Any time", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days",
                "90d": "Last 90 days"}
SEARCH_MIN, SEARCH_MAX = 3, 200
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ACTION = re.compile(r"[a-z_]{1,16}(\.[a-z_]{1,40}){1,3}", re.I)
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
SUPPORT_TEXT_MAX = 200  # entries in one "Copy for support" block
ALL_ACCOUNTS = "all"

# What the hub was doing, by action; the subject ("incident:42") is added after it.
ACTION_LABELS = {
    "connection.link": "Linking the PSA",
    "connection.update": "Updating the PSA credentials",
    "connection.verify": "Verifying the connection",
    "connection.permissions": "Checking the API user's permissions",
    "connection.picklist": "Refreshing a PSA list (boards, statuses, priorities…)",
    "connection.pause": "Pausing the integration",
    "connection.resume": "Resuming the integration",
    "connection.remove": "Removing the integration",
    "connection.health": "Recording a change of the connection's health",
    "import.companies": "Importing customers from the PSA",
    "mapping.company": "Mapping a tenant to a PSA company",
    "ticket.create": "Creating a ticket",
    "ticket.sync": "Sending an incident to the PSA",
    "ticket.update": "Updating a ticket's status or priority",
    "ticket.note": "Adding a note to a ticket",
    "billing.sync": "Syncing billing to the PSA",
    "billing.plan": "Planning a billing run",
    "billing.apply": "Writing billing units to the PSA",
    "log.delete": "Deleting a log entry",
}
GROUP_VERBS = {
    "ticket": "Working on a ticket",
    "billing": "Syncing billing",
    "import": "Importing from the PSA",
    "webhook": "Receiving a PSA webhook",
    "connection": "Working on the connection",
    "mapping": "Mapping tenants",
}
# URL names tried for a subject's page, first that exists wins (those pages belong to other
# apps and may not exist yet: then there is no link).
SUBJECT_PAGES = {
    "incident": ("Incident", ("incident_detail", "incident", "ticketing_incident")),
    "billing_run": ("Billing run", ("billing_run_detail", "billing_run", "billing_run_show")),
}


# --- filters ----------------------------------------------------------------------------------


@dataclass
class LogFilters:
    """What the person asked for, after dropping what cannot be used (see `warnings`)."""

    account: Account | None  # None: every account (vendor staff only)
    all_accounts_allowed: bool = False
    range: str = ""
    since: datetime | None = None
    until: datetime | None = None
    since_raw: str = ""
    until_raw: str = ""
    tenant: Tenant | None = None
    group: str = ""
    action: str = ""  # an exact action ("connection.verify"), within `group`
    outcome: str = ""
    status: int | None = None
    q: str = ""
    level: str = "all"
    cursor: tuple[datetime, int] | None = None
    page_size: int = PAGE_SIZE
    warnings: list[str] = field(default_factory=list)

    def params(self, *, cursor: str = "") -> dict[str, str]:
        """The query string of these filters (what was kept), for links and the next page."""
        values = {
            "account": (str(self.account.pk) if self.account else ALL_ACCOUNTS) if self.all_accounts_allowed else "",
            "range": self.range,
            "since": self.since_raw if self.since else "",
            "until": self.until_raw if self.until else "",
            "tenant": self.tenant.external_id if self.tenant else "",
            "group": "" if self.action else self.group,
            "action": self.action,
            "outcome": self.outcome,
            "status": str(self.status) if self.status is not None else "",
            "q": self.q,
            "level": "" if self.level == "all" else self.level,
            "cursor": cursor,
        }
        return {k: v for k, v in values.items() if v}

    def querystring(self, **extra) -> str:
        return urlencode(self.params(**extra))

    @property
    def active(self) -> bool:
        return bool(self.range or self.since or self.until or self.tenant or self.group or self.action or self.outcome
                    or self.status is not None or self.q or self.level != "all")


def _first(params, name: str) -> str:
    value = params.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def parse_filters(params, *, user, account: Account | None, page_size_param: str = "") -> LogFilters:
    """Read the filters from a query dict (page or API). Values that cannot be used are
    dropped with a message; another account's logs are a 404 for anyone but vendor staff."""
    is_staff = bool(getattr(user, "is_staff", False))
    filters = LogFilters(account=account, all_accounts_allowed=is_staff)
    warn = filters.warnings.append

    raw_account = _first(params, "account")
    if raw_account:
        if is_staff:
            if raw_account == ALL_ACCOUNTS:
                filters.account = None
            elif raw_account.isdigit() and (chosen := Account.objects.filter(pk=int(raw_account)).first()):
                filters.account = chosen
            else:
                warn(f"Account “{raw_account}” was ignored: there is no such account.")
        elif not (raw_account.isdigit() and account is not None and int(raw_account) == account.pk):
            if raw_account.isdigit() or raw_account == ALL_ACCOUNTS:
                # Members read their own account's log only; another account's does not exist for them.
                raise Http404("No such account.")
            warn(f"Account “{raw_account}” was ignored: it is not an account number.")

    now = timezone.now()
    raw_range = _first(params, "range")
    if raw_range:
        if raw_range in RANGES:
            filters.range = raw_range
            filters.since = now - RANGES[raw_range]
        else:
            warn(f"Time range “{raw_range}” was ignored: use one of {', '.join(RANGES)}.")
    for name in ("since", "until"):
        raw = _first(params, name)
        if not raw:
            continue
        when = _parse_when(raw, end_of_day=name == "until")
        if when is None:
            warn(f"“{raw}” is not a date or time, so the “{'from' if name == 'since' else 'to'}” limit was ignored. "
                 "Use YYYY-MM-DD or YYYY-MM-DDTHH:MM.")
            continue
        if name == "since":
            filters.since = max(filters.since, when) if filters.since else when
            filters.since_raw = raw
        else:
            filters.until, filters.until_raw = when, raw
    if filters.since and filters.until and filters.since >= filters.until:
        warn("The time range ends before it starts, so its end was ignored.")
        filters.until, filters.until_raw = None, ""

    raw_tenant = _first(params, "tenant")
    if raw_tenant:
        if filters.account is None:
            warn("The tenant filter was ignored: choose an account first.")
        else:
            tenant = Tenant.objects.for_account(filters.account).filter(external_id=raw_tenant[:255]).first()
            if tenant is None:
                warn(f"Tenant “{raw_tenant[:80]}” was ignored: this account has no tenant with that external ID.")
            filters.tenant = tenant

    raw_group = _first(params, "group")
    raw_action = _first(params, "action")
    for raw, exact in ((raw_group, False), (raw_action, True)):
        if not raw:
            continue
        group = raw.split(".", 1)[0].lower()
        exact = exact and "." in raw
        if group not in GROUPS or (exact and not _ACTION.fullmatch(raw)):
            warn(f"Action “{raw[:40]}” was ignored: use one of {', '.join(GROUPS)}.")
            continue
        filters.group = group
        if exact:
            filters.action = raw.lower()

    raw_outcome = _first(params, "outcome").lower()
    if raw_outcome:
        if raw_outcome in OUTCOMES:
            filters.outcome = raw_outcome
        else:
            warn(f"Outcome “{raw_outcome[:40]}” was ignored: use one of {', '.join(OUTCOMES)}.")

    raw_status = _first(params, "status")
    if raw_status:
        if raw_status.isdigit() and 100 <= int(raw_status) <= 599:
            filters.status = int(raw_status)
        else:
            warn(f"PSA HTTP status “{raw_status[:40]}” was ignored: give a status code such as 401 or 500.")

    raw_q = _first(params, "q")
    if raw_q:
        if len(raw_q) < SEARCH_MIN:
            warn(f"The search “{raw_q}” was ignored: type at least {SEARCH_MIN} characters.")
        elif "\x00" in raw_q:
            warn("The search was ignored: it contains a NUL character.")
        else:
            if len(raw_q) > SEARCH_MAX:
                warn(f"The search was shortened to its first {SEARCH_MAX} characters.")
            filters.q = raw_q[:SEARCH_MAX]

    raw_level = _first(params, "level").lower()
    if raw_level:
        if raw_level in LEVELS:
            filters.level = raw_level
        else:
            warn(f"Show “{raw_level[:40]}” was ignored: use one of {', '.join(LEVELS)}.")

    raw_cursor = _first(params, "cursor")
    if raw_cursor:
        filters.cursor = decode_cursor(raw_cursor)
        if filters.cursor is None:
            warn("The page link was not valid, so the newest entries are shown.")

    if page_size_param:
        raw_size = _first(params, page_size_param)
        if raw_size:
            if raw_size.isdigit() and 1 <= int(raw_size) <= MAX_PAGE_SIZE:
                filters.page_size = int(raw_size)
            else:
                warn(f"Page size “{raw_size[:20]}” was ignored: give a number from 1 to {MAX_PAGE_SIZE}.")
    return filters


def _parse_when(raw: str, *, end_of_day: bool) -> datetime | None:
    """An ISO date or date-time; a date alone means its start (or, for `until`, its end)."""
    raw = raw[:40]
    try:
        day = parse_date(raw) if _DATE_ONLY.fullmatch(raw) else None
        if day is not None:
            when = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end_of_day else timedelta(0))
        else:
            when = parse_datetime(raw.replace(" ", "T", 1))
            if when is None:
                return None
    except (ValueError, OverflowError):
        return None
    if timezone.is_naive(when):
        when = timezone.make_aware(when, timezone.get_current_timezone())
    if not 1970 <= when.year <= 9998:
        return None
    return when


# --- queries -----------------------------------------------------------------------------------


def base_queryset(account: Account | None) -> QuerySet:
    queryset = IntegrationLog.objects.all() if account is None else IntegrationLog.objects.for_account(account)
    return queryset.order_by("-created_at", "-id")


def filtered(filters: LogFilters) -> QuerySet:
    queryset = base_queryset(filters.account)
    if filters.since:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until:
        queryset = queryset.filter(created_at__lt=filters.until)
    if filters.tenant:
        queryset = queryset.filter(tenant=filters.tenant)
    if filters.group:
        queryset = queryset.filter(action_group=filters.group)
    if filters.action:
        queryset = queryset.filter(action=filters.action)
    if filters.outcome:
        queryset = queryset.filter(outcome=filters.outcome)
    if filters.status is not None:
        queryset = queryset.filter(http_status=filters.status)
    if filters.q:
        queryset = queryset.filter(message__icontains=filters.q)
    if filters.level == "actions":
        queryset = queryset.filter(http_method="")
    elif filters.level == "requests":
        queryset = queryset.exclude(http_method="")
    return queryset


def after_cursor(queryset: QuerySet, cursor: tuple[datetime, int] | None) -> QuerySet:
    """Rows older than the cursor. `created_at <= t` is what the index range scan uses; the
    OR only settles ties on the same instant."""
    if cursor is None:
        return queryset
    created_at, pk = cursor
    return queryset.filter(created_at__lte=created_at).filter(Q(created_at__lt=created_at) | Q(id__lt=pk))


def page(filters: LogFilters, *, select_related: bool = True) -> tuple[list[IntegrationLog], str]:
    """One page, newest first, and the cursor of the next page ("" at the end)."""
    if filters.q and db_connection.vendor == "postgresql":
        rows = _search_page(filters)
    else:
        rows = list(after_cursor(filtered(filters), filters.cursor)[: filters.page_size + 1])
    if select_related and rows:
        # Two small queries, not a join per row: tenants and accounts of this page.
        tenants = {t.pk: t for t in Tenant.objects.filter(pk__in={r.tenant_id for r in rows if r.tenant_id})}
        accounts = {a.pk: a for a in Account.objects.filter(pk__in={r.account_id for r in rows})}
        for row in rows:
            row.tenant = tenants.get(row.tenant_id)
            row.account = accounts[row.account_id]
    more = len(rows) > filters.page_size
    rows = rows[: filters.page_size]
    return rows, (encode_cursor(rows[-1]) if more and rows else "")


# The free-text search on PostgreSQL, so that no plan reads a whole large account:
# 1. the newest SEARCH_WINDOW rows of the filtered view (the same index range scan as without a
#    search) are checked for the words: a common word fills the page here;
# 2. otherwise every match is found through the trigram index: the query has no ORDER BY and no
#    LIMIT, so the planner has no reason to walk the account's rows in date order hoping to
#    meet a page of matches soon (with a LIMIT it does exactly that, or scans the table, for
#    words frequent in other accounts but rare in this one: ~300 ms on 200,000 rows). The
#    matches (date and id only) are sorted here. It runs under SEARCH_TIMEOUT_MS;
# 3. past that, the newest SEARCH_FALLBACK rows of the view are scanned and the page says the
#    search went no further back (narrow the time range to go further).
SEARCH_WINDOW = 500
SEARCH_TIMEOUT_MS = 400
SEARCH_FALLBACK = 10_000


@contextlib.contextmanager
def _statement_timeout(ms: int):
    """PostgreSQL cancels the statements of this block that run longer than `ms` (an
    OperationalError); the previous limit is back afterwards, even inside a longer transaction."""
    with transaction.atomic():
        if db_connection.vendor != "postgresql":
            yield
            return
        with db_connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            previous = cursor.fetchone()[0]
            cursor.execute("SET LOCAL statement_timeout = %s", [f"{ms}ms"])
        yield
        with db_connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = %s", [previous])


def _search_page(filters: LogFilters) -> list[IntegrationLog]:
    size = filters.page_size + 1
    unsearched = dataclasses.replace(filters, q="", warnings=[])
    view = after_cursor(filtered(unsearched), filters.cursor)
    newest = list(view.values_list("id", flat=True)[:SEARCH_WINDOW])
    found = list(base_queryset(filters.account).filter(id__in=newest, message__icontains=filters.q)[:size])
    if len(found) >= size or len(newest) < SEARCH_WINDOW:
        return found  # a full page, or the window held every row of the view
    matches = after_cursor(filtered(filters), filters.cursor).order_by().values_list("created_at", "id")
    try:
        with _statement_timeout(SEARCH_TIMEOUT_MS):
            chosen = [pk for _, pk in sorted(matches, reverse=True)[:size]]
        return list(base_queryset(filters.account).filter(id__in=chosen))
    except OperationalError:  # the statement timeout: a search too broad for the index
        logger.info("Log search for %r took over %s ms; scanning the newest %s rows instead.", filters.q,
                    SEARCH_TIMEOUT_MS, SEARCH_FALLBACK)
    bounded = view.values("id")[:SEARCH_FALLBACK]
    found = list(base_queryset(filters.account).filter(id__in=bounded, message__icontains=filters.q)[:size])
    if len(found) < size:
        filters.warnings.append(f"The search looked through the newest {SEARCH_FALLBACK:,} entries of this view only. "
                                "Narrow the time range or add filters to search further back.")
    return found


def encode_cursor(entry: IntegrationLog) -> str:
    raw = f"{entry.created_at.isoformat()}|{entry.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, int] | None:
    try:
        raw = base64.urlsafe_b64decode(value[:200] + "=" * (-len(value[:200]) % 4)).decode()
        when, _, pk = raw.partition("|")
        created_at = parse_datetime(when)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if created_at is None or timezone.is_naive(created_at) or not pk.isdigit():
        return None
    return created_at, int(pk)


def entry_for(user, account: Account | None, pk) -> IntegrationLog:
    """One entry, scoped: the current account's, or any account's for vendor staff."""
    if not str(pk).isdigit():
        raise Http404("No such log entry.")
    queryset = IntegrationLog.objects.all() if getattr(user, "is_staff", False) else IntegrationLog.objects.for_account(account)
    entry = queryset.select_related("tenant", "account", "connection").filter(pk=int(pk)).first()
    if entry is None:
        raise Http404("No such log entry.")
    return entry


def related(entry: IntegrationLog, limit: int = 200) -> list[IntegrationLog]:
    """Every row of the same action (same correlation id, same account), oldest first."""
    if not entry.correlation_id:
        return [entry]
    return list(
        IntegrationLog.objects.for_account(entry.account_id)
        .filter(correlation_id=entry.correlation_id)
        .select_related("tenant")
        .order_by("created_at", "id")[:limit]
    )


def requests_of(entry: IntegrationLog, rows: list[IntegrationLog] | None = None) -> list[IntegrationLog]:
    return [row for row in (rows if rows is not None else related(entry)) if row.is_request]


# --- describing an entry -------------------------------------------------------------------------


def subject_parts(subject: str) -> tuple[str, str]:
    kind, _, ident = (subject or "").partition(":")
    return kind, ident


def subject_url(subject: str) -> str:
    """The page of the thing an entry is about, or "" when that page does not exist (yet)."""
    kind, ident = subject_parts(subject)
    if kind not in SUBJECT_PAGES or not ident.isdigit():
        return ""
    for name in SUBJECT_PAGES[kind][1]:
        try:
            return reverse(name, args=[int(ident)])
        except NoReverseMatch:
            continue
    return ""


def subject_label(subject: str) -> str:
    kind, ident = subject_parts(subject)
    if kind in SUBJECT_PAGES:
        return f"{SUBJECT_PAGES[kind][0]} #{ident}"
    return subject


def describe(entry: IntegrationLog) -> str:
    """What the hub was doing, e.g. "Creating a ticket for incident #123"."""
    what = ACTION_LABELS.get(entry.action) or GROUP_VERBS.get(entry.action_group) or entry.action
    if entry.subject:
        label = subject_label(entry.subject)
        what += f" for {label[:1].lower()}{label[1:]}"
    if entry.tenant_id and entry.tenant:
        what += f" (tenant “{entry.tenant.name}”)"
    return what + "."


def links(entry: IntegrationLog) -> list[dict]:
    """Links to what the entry concerns: the incident or billing run, and the tenant."""
    found = []
    if entry.subject:
        found.append({"label": subject_label(entry.subject), "url": subject_url(entry.subject)})
    if entry.tenant_id and entry.tenant:
        try:
            url = reverse("tenant_edit", args=[entry.tenant_id])
        except NoReverseMatch:
            url = ""
        found.append({"label": f"Tenant “{entry.tenant.name}” ({entry.tenant.external_id})", "url": url})
    return found


# --- sharing ------------------------------------------------------------------------------------


def support_text(entries: list[IntegrationLog], *, account: Account | None = None) -> str:
    """A plain-text block of entries for a support ticket. Excerpts were redacted when they
    were written; no credential is ever read here."""
    out = io.StringIO()
    accounts = {e.account_id: e.account for e in entries}
    for acc in ([account] if account else []) or list(accounts.values()):
        connection = getattr(acc, "connection", None) if acc else None
        line = f"Account: {acc.name} (#{acc.pk})"
        if connection is not None:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(connection.config.items())
                              if k in ("company_id", "site", "api_host", "zone_url", "tenant", "resource_server", "region"))
            line += f" · PSA: {connection.get_vendor_display()}" + (f" ({shown})" if shown else "")
        out.write(line + "\n")
    out.write(f"Copied from the PSA hub integration log at {timezone.now().isoformat(timespec='seconds')}; "
              f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}. Secrets were redacted when the entries were written.\n")
    for entry in entries:
        out.write("\n" + "-" * 72 + "\n")
        out.write(f"#{entry.pk}  {entry.created_at.isoformat(timespec='seconds')}  {entry.action}  {entry.get_outcome_display().upper()}\n")
        if len(accounts) > 1:
            out.write(f"Account: {entry.account.name} (#{entry.account_id})\n")
        out.write(f"Doing: {describe(entry)}\n")
        out.write(f"Message: {entry.message}\n")
        if entry.error_kind:
            out.write(f"Error kind: {entry.error_kind}\n")
        if entry.tenant_id:
            out.write(f"Tenant: {entry.tenant.name} ({entry.tenant.external_id})\n")
        if entry.subject:
            out.write(f"About: {subject_label(entry.subject)}\n")
        if entry.correlation_id:
            out.write(f"Correlation id: {entry.correlation_id}\n")
        if entry.is_request:
            out.write(f"Request: {entry.http_method} {entry.http_path} -> {entry.http_status or 'no answer'}"
                      f" in {entry.duration_ms if entry.duration_ms is not None else '?'} ms\n")
            if entry.request_excerpt:
                out.write(f"Request body: {entry.request_excerpt}\n")
            if entry.response_excerpt:
                out.write(f"Response body: {entry.response_excerpt}\n")
        else:
            requests = requests_of(entry)
            if requests:
                out.write("PSA requests of this action:\n")
                for row in requests:
                    out.write(f"  {row.created_at.isoformat(timespec='seconds')}  {row.http_method} {row.http_path} -> "
                              f"{row.http_status or 'no answer'} ({row.duration_ms if row.duration_ms is not None else '?'} ms)\n")
                    if row.outcome == IntegrationLog.Outcome.ERROR and row.response_excerpt:
                        out.write(f"    Response: {row.response_excerpt[:500]}\n")
    return out.getvalue()


CSV_COLUMNS = ["id", "created_at", "account", "tenant", "action", "outcome", "error_kind", "message", "http_method",
               "http_path", "http_status", "duration_ms", "correlation_id", "subject"]


def _cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(filters: LogFilters, *, cap: int | None = None, chunk: int = 2000) -> Iterator[str]:
    """The filtered view as CSV lines, read in keyset chunks (no long cursor, no OFFSET)."""
    cap = cap if cap is not None else settings.HUB_LOG_EXPORT_MAX_ROWS
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    sent, cursor = 0, filters.cursor
    while sent < cap:
        want = min(chunk, cap - sent)
        rows = list(after_cursor(filtered(filters), cursor).select_related("tenant", "account")[:want])
        for row in rows:
            writer.writerow([_cell(v) for v in (
                row.pk, row.created_at.isoformat(), row.account.name, row.tenant.external_id if row.tenant_id else "",
                row.action, row.outcome, row.error_kind, row.message, row.http_method, row.http_path, row.http_status,
                row.duration_ms, row.correlation_id, row.subject,
            )])
        sent += len(rows)
        if rows:
            yield flush()
        if len(rows) < want:
            return  # every matching row was sent
        cursor = (rows[-1].created_at, rows[-1].pk)
    if after_cursor(filtered(filters), cursor).exists():
        writer.writerow([f"# Stopped at {cap} rows: narrow the filters (time range, tenant, action) to export the rest."])
        yield flush()


# --- retention ------------------------------------------------------------------------------------


def purge_old_entries(*, days: int | None = None, batch: int = 5000, max_batches: int = 500, pause: float = 0.0) -> int:
    """Delete entries older than `days` (HUB_LOG_RETENTION_DAYS) in batches of `batch` ids."""
    days = settings.HUB_LOG_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    # Nothing refers to log rows, so each batch is one DELETE (no cascade collection).
    deleted = delete_in_batches(IntegrationLog.objects.filter(created_at__lt=cutoff), order_by="created_at",
                                batch=batch, max_batches=max_batches, pause=pause)
    if deleted:
        logger.info("Deleted %s integration log entries older than %s days.", deleted, days)
    return deleted

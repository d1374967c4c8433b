"""Connection health: states, what to do about failures, and the notices sent to admins.

States, decided from the action-level outcomes in the integration log (not the PSA request
rows, where a 404 lookup is normal) of tickets, billing, imports, webhooks, verification and
PSA lists:

- Credentials rejected: among the failures since the last success there is an authentication
  failure (AuthFailedError, or stored credentials that cannot be decrypted) newer than the
  last credential update.
- Broken: only failures for HUB_BROKEN_AFTER_HOURS (default 24 h): the first failure since
  the last success is that old.
- Degraded: failures in that window, with successes between (or a streak not yet that old).
- Healthy: no failure in that window; or, straight away, the first success after Broken or
  Credentials rejected (the fix worked; failures before a recovery are not counted again).

When it is evaluated: right after an outcome is recorded (`outcome_recorded`, called by
services.log_action, runs on commit; a success on a Healthy connection costs one primary-key
read), so "Credentials rejected" is known at once; and by a beat task every five minutes,
because Broken and the return to Healthy are reached by time passing, with nothing logged.

Notices: moving into Broken or Credentials rejected e-mails the account's admins once; moving
back to Healthy after such a notice says so. `Connection.health_notified` is what the admins
were last told, claimed with a conditional UPDATE before sending, so two workers evaluating at
once send one e-mail; a failed send gives the claim back and the next evaluation retries.
Credentials that expire (the PSA's date, else the age of the keys) are warned about
HUB_EXPIRY_WARNING_DAYS ahead, once per expiry date.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from integrations.models import Connection, IntegrationLog

logger = logging.getLogger(__name__)

Health = Connection.Health
OK, ERROR = IntegrationLog.Outcome.OK, IntegrationLog.Outcome.ERROR
AUTH_KINDS = ("auth_failed", "credentials_unreadable")
# Outcomes that say whether the link works. Not: pauses, mappings, permission reports (a
# report, not an operation), health notices themselves.
RELEVANT_GROUPS = ("ticket", "billing", "import", "webhook")
RELEVANT_ACTIONS = ("connection.verify", "connection.picklist")
# How far back evaluation looks; bounds every query (Broken needs at least the window).
MIN_HORIZON = timedelta(days=7)
AUTH_SAMPLE = 200  # failures since the last success inspected for an authentication failure
NOTICE_STATES = (Health.BROKEN, Health.CREDENTIALS_REJECTED)


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    query: Q
    log_params: dict


KINDS = (
    Kind("tickets", "Tickets", Q(action_group="ticket"), {"group": "ticket"}),
    Kind("billing", "Billing", Q(action_group="billing"), {"group": "billing"}),
    Kind("verification", "Verification", Q(action_group="connection", action="connection.verify"),
         {"action": "connection.verify"}),
)


def relevant() -> Q:
    return Q(action_group__in=RELEVANT_GROUPS) | Q(action__in=RELEVANT_ACTIONS)


def is_relevant(entry: IntegrationLog) -> bool:
    return entry.action_group in RELEVANT_GROUPS or entry.action in RELEVANT_ACTIONS


def outcomes(connection: Connection):
    """Action-level OK/error rows of this connection (the account filter picks the index)."""
    return IntegrationLog.objects.filter(
        account_id=connection.account_id, connection_id=connection.pk, http_method="", outcome__in=(OK, ERROR)
    )


def broken_after() -> timedelta:
    return timedelta(hours=settings.HUB_BROKEN_AFTER_HOURS)


# --- what to do about a failure --------------------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    title: str
    text: str
    url: str = ""
    link_label: str = ""


def _url(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except Exception:  # a page another app has not built yet: no link
        return ""


def _credentials_fix(connection: Connection | None) -> Fix:
    vendor = connection.vendor if connection else ""
    what = {
        "connectwise": "the Company ID, Site URL, Public and Private keys (regenerate the keys on the API Member if needed)",
        "autotask": "the Username, Secret and Tracking Identifier of the API user (Security Level “API User (system)”)",
        "halo": "the Tenant, Resource Server (without /api), Client ID and Client Secret (regenerate the secret if needed)",
    }.get(vendor, "the credentials")
    return Fix("Update credentials", f"The PSA refused the hub's credentials. Re-enter {what} under Update credentials.",
               _url("integration_link", vendor) if vendor else _url("integrations"), "Update credentials")


_RULES = [
    # (pattern on the message, title, text, url name, link label)
    (re.compile(r"default team", re.I), "Set the board's Default Team",
     "In ConnectWise open System → Setup Tables → Service Board, open the board the hub uses and set an active "
     "Default Team (setup guide step 3.5), then retry.", "", ""),
    (re.compile(r"permission|forbidden|\b403\b|not allowed|access denied|security level", re.I), "Check permissions",
     "The PSA's API user lacks a permission. Press Check permissions on the Integrations page to see which one and "
     "how to grant it.", "integrations", "Check permissions"),
    (re.compile(r"not mapped|no (psa )?company|map (it|this tenant|the tenant|each tenant)|no default company", re.I),
     "Map tenants", "A tenant has no PSA company. Map each tenant to its company.", "company_mapping",
     "Map tenants to companies"),
    (re.compile(r"ticketing is not set up|choose the board", re.I), "Set up ticketing",
     "Choose the board or queue for new tickets on the Ticketing page.", "ticketing", "Ticketing settings"),
    (re.compile(r"multiple agreements contain", re.I), "Remove the duplicate product",
     "Only one agreement per company may hold the mapped product. Remove or swap the product on the extra agreement "
     "in ConnectWise, then retry.", "", ""),
    (re.compile(r"duplicate service", re.I), "Remove the duplicate service",
     "Delete the duplicate service line in Autotask (or set its units to 0 with a past removal date), then retry.",
     "", ""),
    (re.compile(r"start date .* in the future|ended on|expired contract", re.I), "Fix the contract dates",
     "Update the contract's start or end date in the PSA, or map the tenant to an active contract.", "", ""),
    (re.compile(r"timed out|timeout|could not reach|unavailable|\b50[234]\b|try again later", re.I),
     "Wait, then check the site URL", "The PSA did not answer. Wait 1–2 minutes and retry; if it persists, check the "
     "site URL or region under Update credentials.", "", ""),
    (re.compile(r"paused", re.I), "Resume the integration", "The integration is paused; resume it on the Integrations "
     "page.", "integrations", "Integrations"),
]
_AUTH_TEXT = re.compile(r"authenticat|credentials|unauthori[sz]ed|\b401\b|invalid_client|company id not found", re.I)


def suggest_fix(message: str, error_kind: str = "", connection: Connection | None = None) -> Fix:
    """The likely fix for a failure, from its kind and words (seeds 000–002 troubleshooting)."""
    if error_kind in AUTH_KINDS or (error_kind in ("", "unexpected") and _AUTH_TEXT.search(message or "")):
        return _credentials_fix(connection)
    rules = [_RULES[1]] if error_kind == "permission_missing" else _RULES
    for pattern, title, text, url_name, label in rules:
        if error_kind == "permission_missing" or pattern.search(message or ""):
            url = _url(url_name) if url_name else ""
            if url and url_name == "integrations" and title == "Check permissions":
                url += "#permissions"  # the Permissions card of the Integrations page
            return Fix(title, text, url, label)
    return Fix("Read the failed entries", "Open the failed entries in the logs: they carry the PSA's own message.",
               _url("logs"), "Logs")


# --- evaluating the state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    state: str
    error: str = ""
    error_kind: str = ""
    failing_since: datetime | None = None


def judge(connection: Connection, now: datetime | None = None) -> Verdict:
    """The state the log says the connection is in (reads only)."""
    now = now or timezone.now()
    window = broken_after()
    horizon = now - max(window * 2, MIN_HORIZON)
    rows = outcomes(connection).filter(relevant(), created_at__gte=horizon)
    last_ok = rows.filter(outcome=OK).order_by("-created_at", "-id").values_list("created_at", flat=True).first()
    errors = rows.filter(outcome=ERROR)
    streak = errors.filter(created_at__gt=last_ok) if last_ok else errors
    latest = list(streak.order_by("-created_at", "-id").values("created_at", "message", "error_kind")[:AUTH_SAMPLE])
    if latest:
        changed = connection.credentials_updated_at
        auth = next((row for row in latest if row["error_kind"] in AUTH_KINDS
                     and (changed is None or row["created_at"] >= changed)), None)
        first = streak.order_by("created_at", "id").values_list("created_at", flat=True).first()
        if auth is not None:
            return Verdict(Health.CREDENTIALS_REJECTED, auth["message"], auth["error_kind"], first)
        top = latest[0]
        if first is not None and first <= now - window:
            return Verdict(Health.BROKEN, top["message"], top["error_kind"], first)
        return Verdict(Health.DEGRADED, top["message"], top["error_kind"], first)
    # No failure since the last success.
    if connection.health_state in NOTICE_STATES:
        return Verdict(Health.HEALTHY)  # the streak that broke it is over: recovered
    floor = now - window
    if connection.health_state == Health.HEALTHY and connection.health_since and connection.health_since > floor:
        floor = connection.health_since  # failures before a recovery were judged already
    recent = errors.filter(created_at__gte=floor).order_by("-created_at", "-id").values("message", "error_kind").first()
    if recent is not None:
        return Verdict(Health.DEGRADED, recent["message"], recent["error_kind"])
    return Verdict(Health.HEALTHY)


def evaluate(connection_or_id, now: datetime | None = None) -> str | None:
    """Judge the connection, store a changed state, and send any notice now due."""
    connection = connection_or_id
    if not isinstance(connection, Connection):
        connection = Connection.objects.select_related("account").filter(pk=connection_or_id).first()
        if connection is None:
            return None
    now = now or timezone.now()
    verdict = judge(connection, now)
    old = connection.health_state
    fields = {"health_checked_at": now, "health_error": verdict.error}
    if verdict.state != old:
        fields.update(health_state=verdict.state, health_since=now)
        moved = Connection.objects.filter(pk=connection.pk, health_state=old).update(**fields)
        if not moved:  # another worker moved it meanwhile: take its word
            connection.refresh_from_db()
            return connection.health_state
        # Healthy <-> Degraded is shown on the page, not logged: only the moves that notify are.
        if {old, verdict.state} & set(NOTICE_STATES):
            _log(connection, f"Connection health: {Health(old).label} → {Health(verdict.state).label}."
                 + (f" Last error: {verdict.error}" if verdict.error else ""),
                 outcome=ERROR if verdict.state in NOTICE_STATES else OK)
    elif (verdict.error != connection.health_error or connection.health_checked_at is None
          or now - connection.health_checked_at > timedelta(minutes=1)):
        # At most one write a minute while nothing changes: failures can arrive by the hundred.
        Connection.objects.filter(pk=connection.pk).update(**fields)
    else:
        fields = {}
    for name, value in fields.items():
        setattr(connection, name, value)
    _notify_if_due(connection, verdict)
    return connection.health_state


def outcome_recorded(entry: IntegrationLog) -> None:
    """Called by services.log_action for every entry: re-evaluate after a relevant outcome,
    once the row is committed. Never lets a health problem break the work being logged."""
    if entry.connection_id is None or entry.is_request or entry.outcome not in (OK, ERROR) or not is_relevant(entry):
        return
    connection_id, outcome = entry.connection_id, entry.outcome

    def run() -> None:
        try:
            if outcome == OK:
                state, notified = (Connection.objects.filter(pk=connection_id)
                                   .values_list("health_state", "health_notified").first() or (None, ""))
                if state in (None, Health.HEALTHY) and notified not in NOTICE_STATES:
                    return
            evaluate(connection_id)
        except Exception:
            logger.exception("Could not evaluate the health of connection %s", connection_id)

    transaction.on_commit(run)


def evaluate_due(now: datetime | None = None) -> int:
    """Beat: connections that are not Healthy, owe a notice, or failed within the window."""
    now = now or timezone.now()
    failing = (IntegrationLog.objects.filter(created_at__gte=now - broken_after() - timedelta(minutes=10),
                                             outcome=ERROR, http_method="", connection__isnull=False)
               .values_list("connection_id", flat=True).distinct())
    due = Connection.objects.filter(
        ~Q(health_state=Health.HEALTHY) | Q(health_notified__in=NOTICE_STATES) | Q(pk__in=failing)
    ).select_related("account")
    count = 0
    for connection in due:
        try:
            evaluate(connection, now)
            count += 1
        except Exception:
            logger.exception("Could not evaluate the health of connection %s", connection.pk)
    return count


# --- notices ------------------------------------------------------------------------------------------


def admin_emails(account) -> list[str]:
    from hub.models import Membership
    from hub.tenancy import ADMIN

    emails = (Membership.objects.filter(account=account, role=ADMIN, user__is_active=True)
              .exclude(user__email="").values_list("user__email", flat=True))
    return sorted(set(emails))


def _absolute(path: str) -> str:
    return f"{settings.HUB_BASE_URL}{path}" if path.startswith("/") else path


def _send(connection: Connection, subject: str, body: str) -> int:
    recipients = admin_emails(connection.account)
    messages = [(subject, body, settings.DEFAULT_FROM_EMAIL, [email]) for email in recipients]
    return send_mass_mail(messages, fail_silently=False) if messages else 0


def _log(connection: Connection, message: str, *, outcome: str = OK) -> None:
    from integrations.services import log_action

    log_action(connection.account, "connection.health", message, outcome=outcome, connection=connection,
               error_kind="" if outcome == OK else "health")


def _notify_if_due(connection: Connection, verdict: Verdict) -> None:
    state, told = connection.health_state, connection.health_notified
    if state in NOTICE_STATES and told != state:
        target = state
    elif state == Health.HEALTHY and told in NOTICE_STATES:
        target = Health.HEALTHY
    else:
        return
    if not Connection.objects.filter(pk=connection.pk, health_notified=told).update(health_notified=target):
        return  # another worker is sending it
    subject, body = _notice(connection, verdict, target, previous=told)
    try:
        sent = _send(connection, subject, body)
    except Exception as exc:
        Connection.objects.filter(pk=connection.pk, health_notified=target).update(health_notified=told)
        logger.warning("Could not e-mail the health notice of connection %s (%s); will retry.", connection.pk,
                       type(exc).__name__)
        return
    connection.health_notified = target
    _log(connection, f"E-mailed {sent} admin{'s' if sent != 1 else ''}: {subject}" if sent
         else f"No admin with an e-mail address to tell: {subject}")


def _notice(connection: Connection, verdict: Verdict, target: str, *, previous: str) -> tuple[str, str]:
    vendor = connection.get_vendor_display()
    account = connection.account.name
    page = _absolute(_url("integrations"))
    logs = _absolute(_url("logs") + "?outcome=error&level=actions&range=24h")
    if target == Health.HEALTHY:
        subject = f"[PSA hub] {vendor} connection of {account} works again"
        body = (f"The {vendor} connection of {account} works again: the latest actions succeeded.\n\n"
                f"It had been {Health(previous).label.lower()}. Nothing more to do.\n\nIntegrations: {page}\n")
        return subject, body
    fix = suggest_fix(verdict.error, verdict.error_kind, connection)
    label = Health(target).label
    since = verdict.failing_since.strftime("%Y-%m-%d %H:%M UTC") if verdict.failing_since else "recently"
    subject = f"[PSA hub] {vendor} connection of {account}: {label}"
    what = ("The PSA refused the hub's credentials" if target == Health.CREDENTIALS_REJECTED
            else f"Every action has failed since {since}")
    body = (
        f"{what}. Tickets and billing for {account} are not reaching {vendor} until this is fixed.\n\n"
        f"Last error: {verdict.error or '(none recorded)'}\n\n"
        f"Likely fix — {fix.title}: {fix.text}\n"
        + (f"{_absolute(fix.url)}\n" if fix.url else "")
        + f"\nIntegrations: {page}\nFailed entries: {logs}\n\n"
        "You get this e-mail once; another follows when the connection works again.\n"
    )
    return subject, body


# --- credential expiry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expiry:
    at: datetime
    source: str  # "psa": the PSA said so; "age": the keys reach HUB_CREDENTIAL_MAX_AGE_DAYS
    days_left: int
    warn: bool
    message: str


def expiry(connection: Connection, now: datetime | None = None) -> Expiry | None:
    now = now or timezone.now()
    vendor = connection.get_vendor_display()
    if connection.credential_expires_at:
        at, source = connection.credential_expires_at, "psa"
    elif settings.HUB_CREDENTIAL_MAX_AGE_DAYS > 0 and connection.credentials_updated_at:
        at, source = connection.credentials_updated_at + timedelta(days=settings.HUB_CREDENTIAL_MAX_AGE_DAYS), "age"
    else:
        return None
    days_left = (at - now).days
    when = at.strftime("%Y-%m-%d")
    if source == "psa":
        secret = "client secret" if connection.vendor == "halo" else "credential"
        message = (f"The {vendor} {secret} expired on {when}." if at <= now else
                   f"The {vendor} {secret} expires on {when} (in {days_left} day{'s' if days_left != 1 else ''}).")
        message += f" Create a new one in {vendor} and enter it under Update credentials before then."
    else:
        age = (now - connection.credentials_updated_at).days
        message = (f"The {vendor} keys were saved {age} days ago; keys older than {settings.HUB_CREDENTIAL_MAX_AGE_DAYS} "
                   f"days should be replaced (by {when}). Generate new keys in {vendor} and enter them under Update "
                   "credentials.")
    return Expiry(at, source, days_left, at - now <= timedelta(days=settings.HUB_EXPIRY_WARNING_DAYS), message)


def warn_expiring(now: datetime | None = None) -> int:
    """Beat: e-mail the admins of connections whose credentials expire soon, once per date."""
    now = now or timezone.now()
    ahead = timedelta(days=settings.HUB_EXPIRY_WARNING_DAYS)
    candidates = Connection.objects.select_related("account").filter(credential_expires_at__lte=now + ahead)
    if settings.HUB_CREDENTIAL_MAX_AGE_DAYS > 0:
        old_keys = now + ahead - timedelta(days=settings.HUB_CREDENTIAL_MAX_AGE_DAYS)
        candidates = Connection.objects.select_related("account").filter(
            Q(credential_expires_at__lte=now + ahead)
            | Q(credential_expires_at__isnull=True, credentials_updated_at__lte=old_keys)
        )
    sent = 0
    for connection in candidates:
        found = expiry(connection, now)
        if found is None or not found.warn or connection.expiry_warned_for == found.at:
            continue
        claimed = Connection.objects.filter(pk=connection.pk, expiry_warned_for=connection.expiry_warned_for)
        if not claimed.update(expiry_warned_for=found.at):
            continue
        subject = f"[PSA hub] {connection.get_vendor_display()} credentials of {connection.account.name} expire soon"
        body = f"{found.message}\n\nUpdate credentials: {_absolute(_url('integration_link', connection.vendor))}\n"
        try:
            count = _send(connection, subject, body)
        except Exception as exc:
            Connection.objects.filter(pk=connection.pk).update(expiry_warned_for=connection.expiry_warned_for)
            logger.warning("Could not e-mail the expiry warning of connection %s (%s).", connection.pk, type(exc).__name__)
            continue
        _log(connection, f"E-mailed {count} admin{'s' if count != 1 else ''}: {found.message}")
        sent += 1
    return sent


# --- health at a glance ---------------------------------------------------------------------------------


def _entry(row: IntegrationLog | None) -> dict | None:
    if row is None:
        return None
    return {"id": row.pk, "at": row.created_at, "message": row.message, "error_kind": row.error_kind,
            "url": _url("log_entry", row.pk)}


def overview(connection: Connection, now: datetime | None = None) -> dict:
    """What the Integrations page and GET /api/v1/connection/health show."""
    now = now or timezone.now()
    day_ago = now - timedelta(hours=24)
    base = outcomes(connection)
    kinds, streaks = [], []
    logs_url = _url("logs")
    for kind in KINDS:
        rows = base.filter(kind.query)
        last_ok = rows.filter(outcome=OK).order_by("-created_at", "-id").first()
        last_error = rows.filter(outcome=ERROR).order_by("-created_at", "-id").first()
        failures = rows.filter(outcome=ERROR, created_at__gte=day_ago).count()
        params = {**kind.log_params, "outcome": "error", "level": "actions", "range": "24h"}
        if connection.account_id:
            params["account"] = str(connection.account_id)
        kinds.append({
            "key": kind.key, "label": kind.label, "last_success": _entry(last_ok), "last_failure": _entry(last_error),
            "failures_24h": failures, "failures_url": f"{logs_url}?{urlencode(params)}" if logs_url else "",
        })
        recent = list(rows.order_by("-created_at", "-id").values("outcome", "message", "error_kind")[: settings.HUB_FAILURE_STREAK])
        if len(recent) == settings.HUB_FAILURE_STREAK and all(r["outcome"] == ERROR for r in recent):
            fix = suggest_fix(recent[0]["message"], recent[0]["error_kind"], connection)
            streaks.append({"key": kind.key, "label": kind.label, "count": len(recent), "message": recent[0]["message"],
                            "fix": fix})
    state = connection.health_state
    state_fix = suggest_fix(connection.health_error, "auth_failed" if state == Health.CREDENTIALS_REJECTED else "",
                            connection) if state != Health.HEALTHY and connection.health_error else None
    found = expiry(connection, now)
    return {
        "state": state,
        "state_label": Health(state).label,
        "since": connection.health_since,
        "error": connection.health_error,
        "checked_at": connection.health_checked_at,
        "state_fix": state_fix,
        "kinds": kinds,
        "streaks": streaks,
        "expiry": found,
        "expiry_warnings": [found] if found and found.warn else [],
    }

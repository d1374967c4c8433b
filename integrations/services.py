"""Linking a PSA and talking to it: every write about connections goes through here.

Pages and the API call these functions; Celery tasks call the ones that reach the PSA. The
credential bundle is decrypted in exactly one place, `load_credentials`, and the plaintext
lives only for the call that needs it (DESIGN.md rule 6).
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
import traceback
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import asdict

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from hub import vault
from hub.models import Account, Tenant
from integrations import health, registry, signals
from integrations.base import netguard
from integrations.base.client import RequestRecord, Transport
from integrations.base.errors import PsaError
from integrations.base.provider import PermissionReport, Provider
from integrations.limits import CacheLimiter
from integrations.models import CompanyMapping, Connection, IntegrationLog, Picklist, PsaCompany

logger = logging.getLogger(__name__)

PICKLIST_MAX_AGE = timezone.timedelta(hours=24)


class LinkRefused(Exception):
    """A user-facing refusal by the service layer (e.g. a second PSA)."""


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


# --- the integration log ------------------------------------------------------------------


def log_action(
    account: Account,
    action: str,
    message: str,
    *,
    outcome: str = IntegrationLog.Outcome.OK,
    connection: Connection | None = None,
    tenant: Tenant | None = None,
    correlation_id: str = "",
    subject: str = "",
    error_kind: str = "",
) -> IntegrationLog:
    if outcome == IntegrationLog.Outcome.ERROR and not error_kind:
        # Failures are mostly logged while their typed error is being handled: keep its kind,
        # which decides the connection's health (integrations.health) and the suggested fix.
        handled = sys.exc_info()[1]
        error_kind = handled.kind if isinstance(handled, PsaError) else ""
    entry = _create_log(
        account=account,
        connection=connection,
        tenant=tenant,
        action=action,
        outcome=outcome,
        message=message,
        correlation_id=correlation_id,
        subject=subject,
        error_kind=error_kind,
    )
    health.outcome_recorded(entry)
    return entry


def _create_log(**fields) -> IntegrationLog:
    """One log row; kept account-wide when its connection was removed while the work ran (the
    foreign key would refuse the row, and the support log would miss a request the PSA saw)."""
    try:
        with transaction.atomic():
            return IntegrationLog.objects.create(**fields)
    except IntegrityError:
        if fields.get("connection") is None:
            raise
        return IntegrationLog.objects.create(**{**fields, "connection": None})


def request_logger(connection: Connection, action: str, correlation_id: str, tenant: Tenant | None = None, subject: str = ""):
    """The on_request hook: one IntegrationLog row per PSA request, already redacted."""

    def record(entry: RequestRecord) -> None:
        failed = entry.status is None or entry.status >= 400
        _create_log(
            account_id=connection.account_id,
            connection=connection,
            tenant=tenant,
            action=action,
            outcome=IntegrationLog.Outcome.ERROR if failed else IntegrationLog.Outcome.OK,
            message=f"{entry.method} {entry.path} → {entry.status or entry.error}"
            + (f" (attempt {entry.attempt})" if entry.attempt > 1 else ""),
            http_method=entry.method,
            http_path=entry.path,
            http_status=entry.status,
            duration_ms=entry.duration_ms,
            request_excerpt=entry.request_excerpt,
            response_excerpt=entry.response_excerpt,
            correlation_id=correlation_id,
            subject=subject,
        )

    return record


# --- credentials and providers ----------------------------------------------------------------


def load_credentials(connection: Connection) -> dict:
    """The only place credentials are decrypted. Raises vault.VaultError (fail closed)."""
    return vault.decrypt_bundle(connection.credentials, account_id=connection.account_id, connection_id=connection.pk)


def stored_secret_names(connection: Connection | None) -> set[str]:
    """The secret fields a link form may leave blank: those stored and still readable. When the
    bundle cannot be decrypted (its key retired, a copied row) every secret must be re-entered."""
    if connection is None or not connection.credentials:
        return set()
    try:
        load_credentials(connection)
    except vault.VaultError:
        return set()
    return set(connection.secrets_set)


def _store_credentials(connection: Connection, secrets: dict) -> None:
    ring = vault.key_ring()
    connection.credentials = vault.encrypt_bundle(
        secrets, account_id=connection.account_id, connection_id=connection.pk, ring=ring
    )
    connection.credentials_key_id = ring.newest_id
    connection.credentials_updated_at = timezone.now()


def vendor_config(connection: Connection) -> dict:
    """The shown config plus the hub's own settings the PSA's adapters need (hub_settings)."""
    hub_values = {key: getattr(settings, name) for key, name in registry.provider(connection.vendor).hub_settings.items()}
    return {**connection.config, **hub_values}


class CacheTokenStore:
    """Token cache for Halo's client-credentials tokens, shared by all workers."""

    def __init__(self, connection: Connection):
        # The update time as a number: str(datetime) has a space, which cache backends warn about
        # (CacheKeyWarning) and memcached refuses.
        updated = connection.credentials_updated_at.timestamp() if connection.credentials_updated_at else ""
        self.prefix = f"psa-token:{connection.pk}:{connection.credentials_key_id}:{updated}"

    def get(self, key: str):
        return cache.get(f"{self.prefix}:{key}")

    def set(self, key: str, value, ttl: float) -> None:
        cache.set(f"{self.prefix}:{key}", value, timeout=max(1, int(ttl)))


def build_provider(
    connection: Connection,
    *,
    action: str,
    correlation_id: str,
    tenant: Tenant | None = None,
    subject: str = "",
    config_overrides: dict | None = None,
) -> Provider:
    """A provider for one piece of work; `config_overrides` adds feature settings the adapter
    reads from its config (e.g. the Halo note outcome chosen on the Ticketing page)."""
    provider_class = registry.get(connection.vendor).provider
    transport = Transport(
        allow_private=settings.PSA_ALLOW_PRIVATE_HOSTS,
        read_timeout=settings.PSA_HTTP_TIMEOUT,
        # A concurrency slot is held for one request, so it outlives the request's timeouts and
        # little more: one left by a killed worker frees itself in about a minute, where the
        # default lease (5 minutes) held the connection at reduced concurrency, or stopped it.
        limiter=CacheLimiter(str(connection.pk), provider_class.budget,
                             lease_seconds=int(settings.PSA_HTTP_TIMEOUT + Transport.connect_timeout) + 20),
        on_request=request_logger(connection, action, correlation_id, tenant, subject),
    )
    config = {**vendor_config(connection), **(config_overrides or {})}
    return provider_class(config, load_credentials(connection), transport, token_store=CacheTokenStore(connection))


FAILED = object()


def call_psa(connection: Connection, action: str, correlation_id: str, work, *, prefix: str = "", picklist=None):
    """Run work(provider). A permanent failure is recorded for people and FAILED returned;
    a transient PSA error goes up to the task, which retries it."""
    try:
        return work(build_provider(connection, action=action, correlation_id=correlation_id))
    except Exception as exc:
        if isinstance(exc, PsaError) and not exc.permanent:
            raise
        record_failure(connection.pk, action, prefix + failure_message(exc), correlation_id, picklist=picklist,
                       error_kind=error_kind_of(exc))
        return FAILED


def error_kind_of(exc: Exception) -> str:
    if isinstance(exc, PsaError):
        return exc.kind
    if isinstance(exc, vault.VaultError):
        return "credentials_unreadable"
    return "unexpected"


def failure_message(exc: Exception) -> str:
    """What a person reads: the typed error's message, or a generic text with a reference."""
    if isinstance(exc, PsaError):
        return exc.message
    if isinstance(exc, vault.VaultError):
        return f"{exc} (Update credentials to re-enter them.)"
    reference = new_correlation_id()
    # Where it happened, not the exception's text: an unknown library may put a secret in it.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("Unexpected %s in the hub (reference %s). Traceback:\n%s", type(exc).__name__, reference, frames)
    return f"Something went wrong in the hub (reference {reference}). Support can look it up in the log."


# --- linking ---------------------------------------------------------------------------------


def refused_hosts(vendor: str, config: dict) -> dict[str, str]:
    """{config field: why} for typed hosts that may not be used, checked before saving."""
    refused = {}
    for name in registry.provider(vendor).typed_host_fields:
        try:
            netguard.check_typed_host(str(config.get(name) or ""), allow_private=settings.PSA_ALLOW_PRIVATE_HOSTS)
        except PsaError as exc:
            refused[name] = exc.message
    return refused


def save_connection(account: Account, vendor: str, config: dict, secrets: dict, *, correlation_id: str = "") -> Connection:
    """Create or update the account's link; secrets not given keep their stored values.
    Verification is queued after commit."""
    correlation_id = correlation_id or new_correlation_id()
    with transaction.atomic():
        connection = Connection.objects.select_for_update().filter(account=account).first()
        if connection is not None and connection.vendor != vendor:
            raise LinkRefused(
                f"This account is linked to {connection.get_vendor_display()}. Remove that integration first; "
                "one PSA can be linked per account."
            )
        created = connection is None
        if created:
            connection = Connection(account=account, vendor=vendor)
            stored = {}
        else:
            # Unreadable credentials are replaced: the form asked for every secret (stored_secret_names).
            stored = load_credentials(connection) if stored_secret_names(connection) else {}
        connection.config = {**connection.config, **config}
        merged = {**stored, **{k: v for k, v in secrets.items() if v}}
        _store_credentials(connection, merged)
        connection.secrets_set = sorted(merged)
        connection.status = Connection.Status.VERIFYING
        connection.last_error = ""
        connection.save()
        log_action(
            account,
            "connection.link" if created else "connection.update",
            f"{connection.get_vendor_display()} {'linked' if created else 'credentials updated'}; verifying.",
            connection=connection,
            correlation_id=correlation_id,
        )
        queue_verification(connection, correlation_id)
    return connection


def queue_verification(connection: Connection, correlation_id: str) -> None:
    from integrations import tasks

    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.VERIFYING, last_error="")
    transaction.on_commit(lambda: tasks.verify_connection.delay(str(connection.pk), correlation_id))


def queue_permission_check(connection: Connection) -> str:
    """Queue a permission check; returns its correlation id, which its final log row carries."""
    from integrations import tasks

    correlation_id = new_correlation_id()
    transaction.on_commit(lambda: tasks.check_permissions.delay(str(connection.pk), correlation_id))
    return correlation_id


def queue_company_import(connection: Connection) -> str:
    """Queue an import of the PSA's companies; returns its correlation id (see work_finished)."""
    from integrations import tasks

    correlation_id = new_correlation_id()
    transaction.on_commit(lambda: tasks.import_companies.delay(str(connection.pk), correlation_id))
    return correlation_id


def verify_connection(connection_id: str, correlation_id: str) -> Connection | None:
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None:
        return None
    result = call_psa(connection, "connection.verify", correlation_id, lambda provider: provider.verify())
    if result is FAILED:
        return None
    Connection.objects.filter(pk=connection.pk).update(
        config={**connection.config, **result.config_updates},
        status=Connection.Status.CONNECTED,
        last_error="",
        verified_at=timezone.now(),
        credential_expires_at=result.credential_expires_at,
    )
    log_action(
        connection.account,
        "connection.verify",
        f"Connected to {connection.get_vendor_display()} ({result.display_name}).",
        connection=connection,
        correlation_id=correlation_id,
    )
    queue_picklist_refresh(connection, correlation_id=correlation_id)
    verified = Connection.objects.get(pk=connection.pk)
    signals.connection_verified.send(sender=Connection, connection=verified)
    return verified


def note_retry(connection_id, action: str, message: str) -> None:
    """A transient failure the task will retry. Verification can keep trying for minutes, so
    its page shows why the last attempt failed ("Could not reach …") while it still says
    Verifying…, instead of nothing until the last retry."""
    if action == "connection.verify":
        Connection.objects.filter(pk=connection_id, status=Connection.Status.VERIFYING).update(last_error=message)


def record_failure(
    connection_id, action: str, message: str, correlation_id: str, *, picklist: tuple | None = None, error_kind: str = ""
) -> None:
    """Record what could not be done, where the person who can fix it will see it."""
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None:
        return
    if action == "connection.verify":
        Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.FAILED, last_error=message)
    elif action == "connection.permissions":
        Connection.objects.filter(pk=connection.pk).update(last_error=message)
    if picklist is not None:
        Picklist.objects.filter(connection=connection, kind=picklist[0], parent_id=picklist[1]).update(error=message)
    log_action(connection.account, action, message, outcome=IntegrationLog.Outcome.ERROR, connection=connection,
               correlation_id=correlation_id, error_kind=error_kind)


def check_permissions(connection_id: str, correlation_id: str) -> PermissionReport | None:
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None:
        return None
    report = call_psa(connection, "connection.permissions", correlation_id, lambda provider: provider.check_permissions())
    if report is FAILED:
        return None
    Connection.objects.filter(pk=connection.pk).update(
        permission_report=[asdict(check) for check in report.checks], permissions_checked_at=timezone.now()
    )
    if report.ok:
        message, outcome = "Every permission the hub needs is granted.", IntegrationLog.Outcome.OK
    else:
        message = "Missing permissions: " + "; ".join(check.message or check.label for check in report.missing)
        outcome = IntegrationLog.Outcome.ERROR
    log_action(connection.account, "connection.permissions", message, outcome=outcome, connection=connection, correlation_id=correlation_id)
    return report


# --- managing the link ---------------------------------------------------------------------------


def set_paused(connection: Connection, *, paused: bool, billing_only: bool = False) -> Connection:
    field = "billing_paused" if billing_only else "paused"
    setattr(connection, field, paused)
    connection.save(update_fields=[field, "updated_at"])
    what = "Billing sync" if billing_only else "The integration"
    log_action(connection.account, "connection.pause" if paused else "connection.resume",
               f"{what} {'paused' if paused else 'resumed'}.", connection=connection)
    if not paused and not billing_only:
        signals.integration_resumed.send(sender=Connection, connection=connection)
    return connection


def remove_connection(connection: Connection) -> None:
    """Delete credentials, mappings and cached PSA data; the log keeps a record of it."""
    account = connection.account
    vendor = connection.get_vendor_display()
    with transaction.atomic():
        CompanyMapping.objects.for_account(account).delete()
        signals.connection_removing.send(sender=Connection, connection=connection)
        connection.delete()  # picklists and imported companies go with it
        log_action(account, "connection.remove",
                   f"{vendor} integration removed: credentials, tenant mappings and cached PSA data deleted.")


# --- picklists -----------------------------------------------------------------------------------


def picklist(connection: Connection, kind: str, parent_id: str = "") -> Picklist | None:
    """The cached list, queuing a refresh when it is missing or stale. Never calls the PSA."""
    entry = Picklist.objects.filter(connection=connection, kind=kind, parent_id=parent_id).first()
    stale = entry is None or entry.fetched_at is None or timezone.now() - entry.fetched_at > PICKLIST_MAX_AGE
    if stale and connection.status == Connection.Status.CONNECTED:
        queue_picklist_refresh(connection, kinds=[(kind, parent_id)])
    return entry


def queue_picklist_refresh(connection: Connection, kinds: Iterable[tuple[str, str]] | None = None, correlation_id: str = "") -> None:
    """Queue a refresh of `kinds` (default: every list without a parent), at most once a minute each."""
    from integrations import tasks

    provider_class = registry.get(connection.vendor).provider
    wanted = list(kinds) if kinds is not None else [(k, "") for k, needs in provider_class.picklist_kinds.items() if needs is None]
    now = timezone.now()
    for kind, parent_id in wanted:
        entry, _ = Picklist.objects.get_or_create(connection=connection, kind=kind, parent_id=parent_id)
        recent = entry.refresh_requested_at and now - entry.refresh_requested_at < timezone.timedelta(minutes=1)
        if recent and (entry.fetched_at is None or entry.fetched_at < entry.refresh_requested_at):
            continue  # one is already on its way
        Picklist.objects.filter(pk=entry.pk).update(refresh_requested_at=now)
        transaction.on_commit(
            lambda k=kind, p=parent_id: tasks.refresh_picklist.delay(str(connection.pk), k, p, correlation_id or new_correlation_id())
        )


def refresh_picklist(connection_id: str, kind: str, parent_id: str, correlation_id: str) -> Picklist | None:
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None:
        return None
    entry, _ = Picklist.objects.get_or_create(connection=connection, kind=kind, parent_id=parent_id)
    items = call_psa(connection, "connection.picklist", correlation_id, lambda provider: provider.picklist(kind, parent_id),
                     prefix=f"Could not refresh {kind}: ", picklist=(kind, parent_id))
    if items is FAILED:
        return Picklist.objects.get(pk=entry.pk)  # with the error just recorded
    Picklist.objects.filter(pk=entry.pk).update(items=[asdict(item) for item in items], fetched_at=timezone.now(), error="")
    return Picklist.objects.get(pk=entry.pk)


# --- companies and tenant mapping -----------------------------------------------------------------


def import_companies(connection_id: str, correlation_id: str) -> int:
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None:
        return 0
    if connection.paused:
        log_action(connection.account, "import.companies", "Import skipped: the integration is paused.",
                   outcome=IntegrationLog.Outcome.SKIPPED, connection=connection, correlation_id=correlation_id)
        return 0
    now = timezone.now()

    def store_all(provider) -> list[str]:
        seen: list[str] = []
        batch: list[PsaCompany] = []
        for company in provider.companies():
            seen.append(company.id)
            batch.append(PsaCompany(connection=connection, company_id=company.id, name=company.name[:255],
                                    identifier=company.identifier[:255], active=company.active, imported_at=now))
            if len(batch) >= 500:
                _upsert_companies(batch)
                batch = []
        _upsert_companies(batch)
        return seen

    seen = call_psa(connection, "import.companies", correlation_id, store_all, prefix="Import failed: ")
    if seen is FAILED:
        return 0
    # Companies the PSA no longer lists stay (mappings may point at them) but show as inactive.
    # Every company seen was stamped `now`, so no list of thousands of ids goes into the query
    # (SQLite refuses more than 32,766 parameters).
    PsaCompany.objects.filter(connection=connection, imported_at__lt=now).update(active=False)
    Connection.objects.filter(pk=connection.pk).update(companies_imported_at=now)
    log_action(connection.account, "import.companies", f"Imported {len(seen)} companies from {connection.get_vendor_display()}.",
               connection=connection, correlation_id=correlation_id)
    return len(seen)


def _upsert_companies(batch: list[PsaCompany]) -> None:
    if batch:
        PsaCompany.objects.bulk_create(
            batch, update_conflicts=True, unique_fields=["connection", "company_id"],
            update_fields=["name", "identifier", "active", "imported_at"],
        )


_SUFFIXES = re.compile(r"\b(inc|incorporated|llc|ltd|limited|gmbh|bv|b v|corp|corporation|co|company|plc|pty|sa|ag)\b")


def normalise_name(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()
    text = re.sub(r"[.']", "", text)  # "L.L.C." is "llc", "O'Neil" is "oneil"
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(_SUFFIXES.sub(" ", text).split())


def suggest_company(tenant_name: str, companies: list[PsaCompany]) -> tuple[PsaCompany | None, str]:
    """The best PSA company for a tenant name: exact, then ignoring case and punctuation,
    then a close match. Returns (company, how) with how in exact | normalised | close | ''."""
    for company in companies:
        if company.name == tenant_name:
            return company, "exact"
    key = normalise_name(tenant_name)
    if not key:  # a name that is all suffix or punctuation ("LLC") matches nothing
        return None, ""
    by_normal = {normal: c for c in companies if (normal := normalise_name(c.name))}
    if key in by_normal:
        return by_normal[key], "normalised"
    close = difflib.get_close_matches(key, list(by_normal), n=1, cutoff=0.85)
    return (by_normal[close[0]], "close") if close else (None, "")


def mapping_rows(account: Account, connection: Connection, tenants) -> list[dict]:
    """Each tenant with its mapping, or a suggestion when unmapped."""
    companies = list(PsaCompany.objects.filter(connection=connection, active=True))
    mappings = {m.tenant_id: m for m in CompanyMapping.objects.for_account(account).filter(tenant__in=tenants)}
    rows = []
    for tenant in tenants:
        mapping = mappings.get(tenant.pk)
        suggestion, how = (None, "") if mapping else suggest_company(tenant.name, companies)
        rows.append({"tenant": tenant, "mapping": mapping, "suggestion": suggestion, "how": how})
    return rows


def map_tenant(account: Account, tenant: Tenant, company_id: str, company_name: str = "") -> CompanyMapping | None:
    """Map (or, with an empty company_id, unmap) a tenant to a PSA company."""
    if not company_id:
        CompanyMapping.objects.for_account(account).filter(tenant=tenant).delete()
        log_action(account, "mapping.company", f"Tenant “{tenant.name}” unmapped.", tenant=tenant)
        return None
    if not company_name:
        company = PsaCompany.objects.filter(connection__account=account, company_id=company_id).first()
        company_name = company.name if company else ""
    mapping, _ = CompanyMapping.objects.update_or_create(
        tenant=tenant, defaults={"account": account, "company_id": company_id, "company_name": company_name}
    )
    log_action(account, "mapping.company", f"Tenant “{tenant.name}” mapped to {company_name or company_id}.", tenant=tenant)
    signals.tenant_mapped.send(sender=CompanyMapping, account=account, tenant=tenant)
    return mapping

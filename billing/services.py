"""Usage in, PSA units out: every billing write goes through here.

A run is planned tenant by tenant (read the PSA line through the vendor adapter, compare it
with the latest usage, decide create / update / none / held / blocked / unmapped) and then
applied: only approved items are written (by a person, or by the automatic mode within the
guardrails), each line re-read right before the write and written only when it differs, so
applying a plan twice writes nothing the second time (DESIGN.md rule 5). One tenant's failure
never stops the others; a transient PSA error marks that tenant for a later retry and the run
completes. Runs of one account never interleave: each claims the account's BillingSettings
row with a conditional UPDATE (leased, renewed while it works) before it calls the PSA.
"""

from __future__ import annotations

import logging
import zoneinfo
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.models import (
    MAX_UNITS,
    BillingItem,
    BillingMapping,
    BillingRun,
    BillingSettings,
    Mode,
    ProductMapping,
    Usage,
)
from billing import selectors
from hub.models import Account, Tenant
from integrations import services as integration_services
from integrations.base.billing import BillingAdapter, BillingLine, BillingTarget
from integrations.base.errors import AuthFailedError, BlockedError, InvalidError, NotFoundError, PsaError
from integrations.models import CompanyMapping, Connection, IntegrationLog

logger = logging.getLogger(__name__)

# A claim older than this is taken over: its worker is gone. Renewed while a run works.
CLAIM_LEASE = timedelta(minutes=10)
RENEW_EVERY = 25  # items between claim renewals
# A transient PSA error is retried this many times in all (backoff on the task).
MAX_ATTEMPTS = 4
# Runs that show no progress for this long are queued again by the dispatcher.
STALE_AFTER = timedelta(minutes=15)
AUTOMATIC = "automatic"  # approved_by of items the automatic mode approved

VENDOR_WORDS = {
    "connectwise": {"name": "ConnectWise", "product": "catalog item", "agreement": "agreement", "needs_agreement": True},
    "autotask": {"name": "Autotask", "product": "service", "agreement": "contract", "needs_agreement": True},
    "halo": {"name": "Halo", "product": "item", "agreement": "licence", "needs_agreement": False},
}


def _words(vendor: str) -> dict:
    return VENDOR_WORDS.get(vendor, {"name": "the PSA", "product": "product", "agreement": "agreement", "needs_agreement": False})


class BillingRefused(Exception):
    """A user-facing refusal: billing paused, no PSA, nothing to approve... (API: 409)."""

    def __init__(self, message: str, code: str = "conflict"):
        super().__init__(message)
        self.message = message
        self.code = code


class AccountBusy(Exception):
    """Another run of the account holds its claim; the task waits and tries again."""

    def __init__(self, run_id: int | None):
        super().__init__(f"Billing run #{run_id} of this account is running." if run_id else "Another billing run is running.")
        self.run_id = run_id


class _ClaimLost(Exception):
    """The lease ran out and another run took the account: stop before writing anything."""


class _RunAborted(Exception):
    """A failure that concerns every tenant (refused credentials): stop asking the PSA."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- settings ----------------------------------------------------------------------------------------


def get_settings(account: Account) -> BillingSettings:
    settings_row = BillingSettings.objects.for_account(account).first()
    if settings_row is None:
        settings_row, created = BillingSettings.objects.get_or_create(account=account)
        if created or settings_row.next_run_at is None:
            settings_row.next_run_at = next_run_after(settings_row, timezone.now())
            BillingSettings.objects.filter(pk=settings_row.pk).update(next_run_at=settings_row.next_run_at)
    return settings_row


def account_zone(account: Account) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(account.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def next_run_after(settings_row: BillingSettings, after: datetime) -> datetime | None:
    """The first scheduled time strictly after `after`: time_of_day in the account's time zone,
    every day or on day_of_month. Wall-clock times that a DST change skips run an hour later."""
    if settings_row.schedule == BillingSettings.Schedule.OFF:
        return None
    zone = account_zone(settings_row.account)
    local = after.astimezone(zone)
    at = settings_row.time_of_day
    day = local.date()
    for _ in range(800):
        if settings_row.schedule == BillingSettings.Schedule.DAILY or day.day == settings_row.day_of_month:
            candidate = datetime(day.year, day.month, day.day, at.hour, at.minute, tzinfo=zone)
            # Round-trip through UTC: a nonexistent local time (spring forward) normalises.
            candidate = candidate.astimezone(UTC)
            if candidate > after:
                return candidate
        day += timedelta(days=1)
    return None


SETTINGS_FIELDS = (
    "mode", "max_change_percent", "max_change_units", "schedule", "time_of_day", "day_of_month", "auto_sync",
    "auto_sync_delay_minutes",
)  # fmt: skip


def update_settings(account: Account, changes: dict, *, by: str = "") -> BillingSettings:
    """Change mode, guardrails, schedule or auto sync; `paused` goes to the connection."""
    paused = changes.pop("paused", None)
    with transaction.atomic():
        settings_row = BillingSettings.objects.select_for_update().get(pk=get_settings(account).pk)
        changed = [name for name in SETTINGS_FIELDS if name in changes and getattr(settings_row, name) != changes[name]]
        for name in changed:
            setattr(settings_row, name, changes[name])
        if "auto_sync" in changed and settings_row.auto_sync:
            # Usage reported before auto sync was on is for the scheduled runs.
            settings_row.auto_sync_checkpoint = timezone.now()
            settings_row.auto_sync_due_at = None
        if {"schedule", "time_of_day", "day_of_month"} & set(changes):
            settings_row.next_run_at = next_run_after(settings_row, timezone.now())
        settings_row.save()
        if changed:
            described = ", ".join(f"{name} → {getattr(settings_row, name)}" for name in changed)
            integration_services.log_action(
                account, "billing.settings", f"Billing settings changed{f' by {by}' if by else ''}: {described}."
            )
    if paused is not None:
        connection = Connection.objects.for_account(account).first()
        if connection is None:
            raise BillingRefused("No PSA is linked to this account, so there is no billing to pause.", "no_connection")
        if connection.billing_paused != paused:
            integration_services.set_paused(connection, paused=paused, billing_only=True)
    return settings_row


def paused_reason(connection: Connection | None) -> str:
    """Why billing cannot run now, in words for the page; '' when it can."""
    if connection is None:
        return "No PSA is linked: link one under Integrations to sync billing."
    if connection.paused:
        return "The integration is paused, so billing sync is halted. Resume the integration under Integrations."
    if connection.billing_paused:
        return "Billing is paused. Resume billing sync under Integrations (or in the billing settings) to sync again."
    if connection.status != Connection.Status.CONNECTED:
        return f"The {connection.get_vendor_display()} connection is not working ({connection.get_status_display()}): fix it under Integrations."
    return ""


# --- products and tenant mappings ---------------------------------------------------------------


def save_product(account: Account, key: str, fields: dict, *, product: ProductMapping | None = None) -> ProductMapping:
    """Create or change a product mapping. Choosing a PSA product ties it to the linked vendor."""
    connection = Connection.objects.for_account(account).first()
    product = product or ProductMapping(account=account, key=key)
    for name, value in fields.items():
        setattr(product, name, value)
    if "psa_product_id" in fields:
        product.vendor = connection.vendor if (connection and product.psa_product_id) else ""
    product.save()
    get_settings(account)
    integration_services.log_action(
        account, "billing.product",
        f"Product “{product.key}” mapped to {product.psa_product_name or product.psa_product_id or 'no PSA product yet'}.",
    )
    return product


def delete_product(product: ProductMapping) -> None:
    """Its tenant mappings go with it; usage history and past runs stay."""
    account, key = product.account, product.key
    product.delete()
    integration_services.log_action(account, "billing.product", f"Product “{key}” removed with its tenant mappings.")


MAPPING_FIELDS = (
    "company_id", "company_name", "agreement_id", "agreement_name", "line_id", "line_name", "psa_product_id", "mode",
)  # fmt: skip


def set_billing_mapping(account: Account, tenant: Tenant, product: ProductMapping, fields: dict) -> BillingMapping:
    values = {name: (fields.get(name) or "") for name in MAPPING_FIELDS if name in fields}
    mapping, _ = BillingMapping.objects.update_or_create(tenant=tenant, product=product, defaults={"account": account, **values})
    where = mapping.agreement_name or mapping.agreement_id or mapping.line_name or mapping.line_id or "its company"
    integration_services.log_action(account, "billing.mapping", f"Tenant “{tenant.name}”: {product.key} billed to {where}.", tenant=tenant)
    get_settings(account)
    return mapping


def remove_billing_mapping(account: Account, tenant: Tenant, product: ProductMapping) -> bool:
    deleted, _ = BillingMapping.objects.for_account(account).filter(tenant=tenant, product=product).delete()
    if deleted:
        integration_services.log_action(account, "billing.mapping", f"Tenant “{tenant.name}”: {product.key} unmapped.", tenant=tenant)
    return bool(deleted)


def replace_tenant_mappings(account: Account, tenant: Tenant, rows: list[tuple[ProductMapping, dict]]) -> list[BillingMapping]:
    """PUT semantics: the tenant's mappings become exactly `rows`."""
    with transaction.atomic():
        keep = {product.pk for product, _ in rows}
        for mapping in BillingMapping.objects.for_account(account).filter(tenant=tenant).exclude(product_id__in=keep).select_related("product"):
            remove_billing_mapping(account, tenant, mapping.product)
        return [set_billing_mapping(account, tenant, product, fields) for product, fields in rows]


# --- usage -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageReport:
    tenant: Tenant
    product_key: str
    units: int
    as_of: datetime | None = None


@dataclass(frozen=True)
class UsageResult:
    usage: Usage
    changed: bool  # the tenant's latest count for the product is different now


def record_usage(account: Account, reports: list[UsageReport]) -> list[UsageResult]:
    """Store counts (history kept; a repeat of the latest count only refreshes it). Committed
    before anything is queued; with auto sync on, a debounced sync of the changed tenants follows."""
    now = timezone.now()
    for report in reports:  # the API validated them; services refuse bad values all the same
        if not isinstance(report.units, int) or isinstance(report.units, bool) or not 0 <= report.units <= MAX_UNITS:
            raise ValueError(f"units must be a whole number from 0 to {MAX_UNITS}")
    results: list[UsageResult | None] = []
    with transaction.atomic():
        latest = selectors.latest_usage(account, tenant_ids={r.tenant.pk for r in reports})
        repeated: list[int] = []
        new_rows: list[tuple[int, Usage, bool]] = []  # (index in results, row, becomes the latest)
        for report in reports:
            key = (report.tenant.pk, report.product_key)
            as_of = report.as_of or now
            current = latest.get(key)
            if current is not None and current.units == report.units and as_of >= current.as_of:
                if current.pk is not None:  # (None: a row of this same batch, stored below)
                    repeated.append(current.pk)
                results.append(UsageResult(current, False))
                continue
            usage = Usage(
                account=account, tenant=report.tenant, product_key=report.product_key, units=report.units,
                as_of=as_of, received_at=now, last_reported_at=now,
            )  # fmt: skip
            newest = current is None or as_of >= current.as_of
            if newest:
                latest[key] = usage  # a later report of the same batch compares with this one
            new_rows.append((len(results), usage, newest))
            results.append(None)
        Usage.objects.bulk_create([usage for _, usage, _ in new_rows], batch_size=1000)
        for index, usage, newest in new_rows:
            # Changed: the row is the tenant's latest count once the whole batch is stored.
            results[index] = UsageResult(usage, newest and latest[(usage.tenant_id, usage.product_key)] is usage)
        if repeated:
            Usage.objects.filter(pk__in=repeated).update(last_reported_at=now)
        if any(result.changed for result in results):
            _note_usage_change(account, now)
    return results


def _note_usage_change(account: Account, now: datetime) -> None:
    """Auto sync (seed 004): the first change in a quiet period schedules one sync, after the
    delay, of every tenant whose count changed by then."""
    settings_row = BillingSettings.objects.for_account(account).first()
    if settings_row is None or not settings_row.auto_sync:
        return
    due = now + timedelta(minutes=settings_row.auto_sync_delay_minutes)
    if BillingSettings.objects.filter(pk=settings_row.pk, auto_sync_due_at__isnull=True).update(auto_sync_due_at=due):
        from billing import tasks

        delay = settings_row.auto_sync_delay_minutes * 60
        transaction.on_commit(lambda: _send(tasks.auto_sync, account.pk, countdown=delay))


def _send(task, *args, countdown: float | None = None) -> None:
    # Rows are committed; if the broker is down the dispatcher catches up later, so a failed
    # publish must not fail the request that stored them.
    try:
        if countdown:
            task.apply_async(args, countdown=countdown)
        else:
            task.delay(*args)
    except Exception:
        logger.warning("Could not queue %s%s; the billing dispatcher will catch up", task.name, args, exc_info=True)


# --- starting, approving and reverting runs --------------------------------------------------------


def start_run(
    account: Account,
    *,
    trigger: str,
    apply: bool,
    tenants: list[Tenant] | None = None,
    requested_by=None,
    label: str = "",
    reverts: BillingRun | None = None,
) -> BillingRun:
    """Create a run and queue it. Refused (BillingRefused) while billing cannot run."""
    connection = Connection.objects.for_account(account).first()
    reason = paused_reason(connection)
    if reason:
        raise BillingRefused(reason, "paused" if connection is not None and (connection.paused or connection.billing_paused) else "not_connected")
    settings_row = get_settings(account)
    with transaction.atomic():
        run = BillingRun.objects.create(
            account=account, trigger=trigger, apply=apply, requested_by=requested_by if getattr(requested_by, "pk", None) else None,
            requested_by_label=label or trigger, mode=settings_row.mode, vendor=connection.vendor,
            tenant_ids=sorted(t.pk for t in tenants) if tenants is not None else None, reverts=reverts,
            correlation_id=integration_services.new_correlation_id(),
        )  # fmt: skip
        what = "Revert" if reverts else ("Sync" if apply else "Preview")
        scope = f"{len(tenants)} tenant(s)" if tenants is not None else "all tenants"
        _log(run, connection, f"Billing run #{run.pk} queued: {what} of {scope} ({run.get_trigger_display().lower()}, by {run.requested_by_label}).")
        _queue(run)
    return run


def _queue(run: BillingRun, *, retry: bool = False, countdown: float | None = None) -> None:
    from billing import tasks

    run_id = run.pk
    transaction.on_commit(lambda: _send(tasks.execute_run, run_id, retry, countdown=countdown))


def approve_run(run: BillingRun, *, by: str, tenants: list[Tenant] | None = None) -> int:
    """Approve the run's planned lines (all, or those of `tenants`) and queue their writing."""
    connection = Connection.objects.for_account(run.account).first()
    reason = paused_reason(connection)
    if reason:
        raise BillingRefused(reason, "paused")
    if run.planned_at is None or run.state in (BillingRun.State.QUEUED, BillingRun.State.PLANNING):
        raise BillingRefused(f"Billing run #{run.pk} is still being planned; approve it when its plan is ready.", "not_ready")
    now = timezone.now()
    with transaction.atomic():
        items = BillingItem.objects.filter(run=run, state=BillingItem.State.PLANNED, action__in=BillingItem.WRITES)
        if tenants is not None:
            items = items.filter(tenant__in=tenants)
        count = items.update(state=BillingItem.State.APPROVED, approved_by=by, approved_at=now, updated_at=now)
        if not count:
            raise BillingRefused(f"Billing run #{run.pk} has no lines waiting for approval{' for those tenants' if tenants else ''}.", "nothing_to_approve")
        BillingRun.objects.filter(pk=run.pk).update(state=BillingRun.State.APPLYING, message="", updated_at=now)
        _log(run, connection, f"Billing run #{run.pk}: {count} line(s) approved by {by}.")
        _queue(run)
    return count


def revert_run(run: BillingRun, *, by: str, requested_by=None) -> BillingRun:
    """A new run (trigger revert) whose plan writes back each changed line's before quantity."""
    if run.is_active:
        raise BillingRefused(f"Billing run #{run.pk} is still running; revert it when it has finished.", "not_ready")
    if not BillingItem.objects.filter(run=run, state=BillingItem.State.APPLIED).exclude(before_quantity=F("after_quantity")).exists():
        raise BillingRefused(f"Billing run #{run.pk} changed no quantity in the PSA, so there is nothing to revert.", "nothing_to_revert")
    return start_run(run.account, trigger=BillingRun.Trigger.REVERT, apply=True, requested_by=requested_by, label=by, reverts=run)


# --- the claim --------------------------------------------------------------------------------------


def _claim(settings_row: BillingSettings, claim_id: str, run: BillingRun) -> bool:
    now = timezone.now()
    claimable = Q(run_claim="") | Q(run_claim=claim_id) | Q(run_claimed_at__lt=now - CLAIM_LEASE)
    return bool(
        BillingSettings.objects.filter(claimable, pk=settings_row.pk).update(
            run_claim=claim_id, run_claimed_at=now, running_run=run
        )
    )


def _renew(settings_row: BillingSettings, claim_id: str) -> None:
    if not BillingSettings.objects.filter(pk=settings_row.pk, run_claim=claim_id).update(run_claimed_at=timezone.now()):
        raise _ClaimLost()


def _release(settings_row: BillingSettings, claim_id: str) -> None:
    BillingSettings.objects.filter(pk=settings_row.pk, run_claim=claim_id).update(run_claim="", run_claimed_at=None, running_run=None)


# --- executing a run (the worker) ----------------------------------------------------------------


def execute_run(run_id: int, claim_id: str, *, retry: bool = False) -> str | None:
    """Bring a run forward: plan it if it has no plan yet, retry its tenants that met a
    transient error (retry=True), write its approved lines. Returns the run's state, or
    raises AccountBusy while another run of the account holds the claim."""
    run = BillingRun.objects.select_related("account").filter(pk=run_id).first()
    if run is None or run.state in (BillingRun.State.SKIPPED, BillingRun.State.FAILED):
        return None
    account = run.account
    settings_row = get_settings(account)
    if not _claim(settings_row, claim_id, run):
        holder = BillingSettings.objects.filter(pk=settings_row.pk).values_list("running_run_id", flat=True).first()
        if run.is_active:
            BillingRun.objects.filter(pk=run.pk).update(
                state=BillingRun.State.WAITING, updated_at=timezone.now(),
                message=f"Waiting for billing run #{holder} of this account to finish." if holder else "Waiting for another billing run to finish.",
            )  # fmt: skip
        raise AccountBusy(holder)
    try:
        return _execute(run, settings_row, claim_id, retry=retry)
    except _ClaimLost:
        _set_run(run, state=BillingRun.State.WAITING, message="Lost the account's claim (the run took too long); it continues when it is free again.")
        raise AccountBusy(None) from None
    except Exception as exc:  # a bug or the database: the run must not stay "planning" forever
        message = integration_services.failure_message(exc)
        _set_run(run, state=BillingRun.State.FAILED, message=message, finished_at=timezone.now())
        _log(run, None, f"Billing run #{run.pk} failed: {message}", IntegrationLog.Outcome.ERROR)
        return BillingRun.State.FAILED
    finally:
        _release(settings_row, claim_id)


def give_up_waiting(run_id: int, holder: int | None) -> None:
    """The task waited long enough for the account: the run is skipped and says so."""
    run = BillingRun.objects.select_related("account").filter(pk=run_id).first()
    if run is None or not run.is_active:
        return
    message = (
        f"Skipped: billing run #{holder} of this account was still running; two syncs of one account never run at once."
        if holder else "Skipped: another billing run of this account was still running."
    )
    _set_run(run, state=BillingRun.State.SKIPPED, message=message, finished_at=timezone.now())
    _log(run, None, f"Billing run #{run.pk}: {message}", IntegrationLog.Outcome.SKIPPED)


def _execute(run: BillingRun, settings_row: BillingSettings, claim_id: str, *, retry: bool) -> str:
    connection = Connection.objects.for_account(run.account).first()
    reason = paused_reason(connection)
    if reason:
        return _halt(run, connection, reason)
    pending = BillingItem.objects.filter(run=run, state__in=[BillingItem.State.APPROVED, BillingItem.State.APPLYING])
    stopped = ""
    if run.planned_at is None:
        stopped = _plan(run, settings_row, connection, claim_id)
    elif retry and BillingItem.objects.filter(run=run, retryable=True).exists():
        stopped = _retry_items(run, settings_row, connection, claim_id)
    elif not pending.exists():
        return run.state  # a second delivery of a task whose work is done
    if not stopped and pending.exists():
        stopped = _apply(run, settings_row, connection, claim_id)
    return _finish(run, connection, stopped=stopped)


def _halt(run: BillingRun, connection: Connection | None, reason: str) -> str:
    """Billing cannot run (paused, no PSA): a run not planned yet is skipped; approved lines of
    a planned run go back to waiting for approval, and tenants waiting for a retry are not retried."""
    now = timezone.now()
    if run.planned_at is None:
        _set_run(run, state=BillingRun.State.SKIPPED, message=f"Skipped: {reason}", finished_at=now)
        _log(run, connection, f"Billing run #{run.pk} skipped: {reason}", IntegrationLog.Outcome.SKIPPED)
        return BillingRun.State.SKIPPED
    returned = BillingItem.objects.filter(run=run, state__in=[BillingItem.State.APPROVED, BillingItem.State.APPLYING]).update(
        state=BillingItem.State.PLANNED, approved_by="", approved_at=None, writing_at=None, updated_at=now
    )
    for item in BillingItem.objects.filter(run=run, retryable=True):
        BillingItem.objects.filter(pk=item.pk).update(
            retryable=False, next_attempt_at=None, error=f"{item.error} Not retried: {reason}", updated_at=now
        )
    if returned:
        _set_run(run, state=BillingRun.State.PLANNED, message=f"Not written: {reason} Approve again once billing runs.")
    elif run.is_active:
        _set_run(run, state=BillingRun.State.DONE, finished_at=now)
    _log(run, connection, f"Billing run #{run.pk} not applied: {reason}", IntegrationLog.Outcome.SKIPPED)
    return run.state


def _set_run(run: BillingRun, **fields) -> None:
    fields.setdefault("updated_at", timezone.now())
    BillingRun.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


def _progress(run: BillingRun, count: int = 1) -> None:
    BillingRun.objects.filter(pk=run.pk).update(processed_items=F("processed_items") + count, updated_at=timezone.now())


def _log(run, connection, message, outcome=IntegrationLog.Outcome.OK, *, tenant=None, action="billing.run") -> None:
    integration_services.log_action(
        run.account, action, message, outcome=outcome, connection=connection, tenant=tenant,
        correlation_id=run.correlation_id, subject=f"billing_run:{run.pk}",
    )  # fmt: skip


# --- planning ------------------------------------------------------------------------------------------


@dataclass
class Spec:
    """One tenant and product to plan: its target when mapped, or why it is not."""

    tenant: Tenant
    product: ProductMapping | None
    product_key: str
    mode: str
    mapping: BillingMapping | None = None
    target: BillingTarget | None = None
    names: dict | None = None
    usage: Usage | None = None
    units: int | None = None
    unmapped: str = ""  # why the tenant is not mapped (action unmapped)
    no_usage: str = ""  # mapped, but nothing to write yet (action none)
    revert_of: BillingItem | None = None

    @property
    def readable(self) -> bool:
        return self.target is not None and not self.unmapped and not self.no_usage


def _plan(run: BillingRun, settings_row: BillingSettings, connection: Connection, claim_id: str) -> str:
    """Plan every tenant; returns the message of a failure that stopped the run ('' if none)."""
    now = timezone.now()
    BillingItem.objects.filter(run=run).delete()  # a redelivered plan starts over (nothing was written yet)
    specs = _revert_specs(run, settings_row) if run.reverts_id else _collect_specs(run, settings_row, connection)
    _set_run(run, state=BillingRun.State.PLANNING, started_at=run.started_at or now, total_items=len(specs),
             processed_items=0, mode=settings_row.mode, message="")  # fmt: skip
    _log(run, connection, f"Billing run #{run.pk}: planning {len(specs)} line(s).")
    readable = [spec for spec in specs if spec.readable]
    adapter, aborted = None, ""
    if readable:
        try:
            adapter = _adapter(run, connection, "billing.plan", [spec.target for spec in readable])
        except AuthFailedError as exc:
            aborted = exc.message
    for index, spec in enumerate(specs):
        if index and index % RENEW_EVERY == 0:
            _renew(settings_row, claim_id)
        item = _new_item(run, spec)
        if not spec.readable:
            item.save()
        elif aborted:
            _fail_item(item, aborted, action=BillingItem.Action.ERROR)
        else:
            try:
                _read_and_decide(run, item, adapter, settings_row, connection)
            except _RunAborted as exc:
                aborted = exc.message
        _progress(run)
    _set_run(run, planned_at=timezone.now())
    if aborted:
        integration_services.record_failure(connection.pk, "billing.run", aborted, run.correlation_id, error_kind="auth_failed")
    return aborted


def _adapter(run: BillingRun, connection: Connection, action: str, targets: list[BillingTarget]) -> BillingAdapter:
    provider = integration_services.build_provider(
        connection, action=action, correlation_id=run.correlation_id, subject=f"billing_run:{run.pk}"
    )
    adapter = provider.billing()
    try:
        adapter.prefetch(targets)
    except AuthFailedError:
        raise
    except Exception as exc:  # only an optimisation: each read asks again and reports its own error
        logger.info("Billing run %s: prefetch failed (%s); reading tenant by tenant", run.pk, type(exc).__name__)
    return adapter


def _collect_specs(run: BillingRun, settings_row: BillingSettings, connection: Connection) -> list[Spec]:
    account = run.account
    words = _words(connection.vendor)
    tenants = Tenant.objects.for_account(account).filter(is_active=True).order_by("name", "external_id")
    if run.tenant_ids is not None:
        tenants = tenants.filter(pk__in=run.tenant_ids)
    tenants = list(tenants)
    ids = {t.pk for t in tenants}
    products = {p.key: p for p in ProductMapping.objects.for_account(account)}
    mappings = {
        (m.tenant_id, m.product_id): m
        for m in BillingMapping.objects.for_account(account).filter(tenant_id__in=ids).select_related("product")
    }
    companies = {m.tenant_id: m for m in CompanyMapping.objects.for_account(account).filter(tenant_id__in=ids)}
    latest = selectors.latest_usage(account, tenant_ids=ids)
    specs: list[Spec] = []
    keys_of: dict[int, set[str]] = {}
    for tenant_id, key in latest:
        if key in products:
            keys_of.setdefault(tenant_id, set()).add(key)
    for (tenant_id, _), mapping in mappings.items():
        keys_of.setdefault(tenant_id, set()).add(mapping.product.key)
    for tenant in tenants:
        keys = sorted(keys_of.get(tenant.pk, ()))
        if not keys:
            specs.append(Spec(tenant, None, "", settings_row.mode,
                              unmapped="No billing mapping and no usage reported for this tenant."))  # fmt: skip
            continue
        for key in keys:
            product = products[key]
            mapping = mappings.get((tenant.pk, product.pk))
            usage = latest.get((tenant.pk, key))
            mode = mapping.mode if mapping is not None and mapping.mode else settings_row.mode
            spec = Spec(tenant, product, key, mode, mapping=mapping, usage=usage, units=usage.units if usage else None)
            spec.unmapped = _unmapped_reason(product, mapping, companies.get(tenant.pk), connection.vendor, words)
            if not spec.unmapped:
                spec.target, spec.names = _target(product, mapping, companies.get(tenant.pk))
                if usage is None:
                    spec.no_usage = f"No usage reported yet for {product.label}: nothing to write."
            specs.append(spec)
    return specs


def _unmapped_reason(product, mapping, company, vendor: str, words: dict) -> str:
    if product.psa_product_id and product.vendor and product.vendor != vendor:
        return (f"Product “{product.label}” is mapped to a {_words(product.vendor)['name']} {_words(product.vendor)['product']}; "
                f"map it to a {words['name']} {words['product']}.")  # fmt: skip
    if not (product.psa_product_id or (mapping and mapping.psa_product_id)):
        return f"Product “{product.label}” is not mapped to a {words['name']} {words['product']} yet."
    if mapping is None:
        what = f"the {words['name']} {words['agreement']}" if words["needs_agreement"] else "where to bill it"
        return f"Usage is reported for {product.label}, but this tenant is not mapped for billing: choose {what}."
    if not (mapping.company_id or company):
        return "The tenant is not mapped to a PSA company: map it under Integrations › Map tenants."
    if words["needs_agreement"] and not mapping.agreement_id:
        return f"Choose the {words['name']} {words['agreement']} for this tenant's {product.label}."
    return ""


def _target(product: ProductMapping, mapping: BillingMapping, company: CompanyMapping | None) -> tuple[BillingTarget, dict]:
    target = BillingTarget(
        company_id=mapping.company_id or (company.company_id if company else ""),
        product_id=mapping.psa_product_id or product.psa_product_id,
        agreement_id=mapping.agreement_id,
        line_id=mapping.line_id,
        name=mapping.line_name,
        description=product.invoice_description,
        unit_price="" if product.unit_price is None else str(product.unit_price),
        unit_cost="" if product.unit_cost is None else str(product.unit_cost),
    )
    names = {
        "company_name": mapping.company_name or (company.company_name if company else ""),
        "agreement_name": mapping.agreement_name,
        "line_name": mapping.line_name,
        "product_name": product.psa_product_name,
    }
    return target, names


def _revert_specs(run: BillingRun, settings_row: BillingSettings) -> list[Spec]:
    original = (
        BillingItem.objects.filter(run_id=run.reverts_id, state=BillingItem.State.APPLIED)
        .exclude(before_quantity=F("after_quantity"))
        .select_related("tenant", "product", "mapping")
        .order_by("tenant__name", "product_key")
    )
    specs = []
    for item in original:
        snapshot = item.mapping_snapshot or {}
        mode = (item.mapping.mode if item.mapping and item.mapping.mode else settings_row.mode)
        specs.append(Spec(
            item.tenant, item.product, item.product_key, mode, mapping=item.mapping,
            target=BillingTarget(**snapshot["target"]), names=snapshot.get("names") or {},
            units=item.before_quantity, revert_of=item,
        ))  # fmt: skip
    return specs


def _new_item(run: BillingRun, spec: Spec) -> BillingItem:
    item = BillingItem(
        account=run.account, run=run, tenant=spec.tenant, product=spec.product, product_key=spec.product_key,
        mapping=spec.mapping, usage=spec.usage, usage_units=spec.usage.units if spec.usage else None,
        usage_as_of=spec.usage.as_of if spec.usage else None, new_quantity=spec.units, mode=spec.mode,
        mapping_snapshot={"target": asdict(spec.target), "names": spec.names or {}} if spec.target else {},
    )  # fmt: skip
    if spec.revert_of is not None:
        item.mapping_snapshot["reverts_item"] = spec.revert_of.pk
    if spec.unmapped:
        item.action, item.state, item.reason = BillingItem.Action.UNMAPPED, BillingItem.State.SKIPPED, spec.unmapped
    elif spec.no_usage:
        item.action, item.state, item.reason = BillingItem.Action.NONE, BillingItem.State.SKIPPED, spec.no_usage
    else:
        item.action = BillingItem.Action.NONE  # decided once the line is read
    return item


def guardrail_reason(current: int, new: int, settings_row: BillingSettings) -> str:
    """Why a change must wait for a person even in automatic mode; '' when it may go."""
    if new == 0 and current > 0:
        return f"a drop to zero (from {current})"
    change = abs(new - current)
    if change > settings_row.max_change_units:
        return f"a change of {change} units ({current} → {new}) is more than the {settings_row.max_change_units}-unit limit"
    if current > 0 and change * 100 > settings_row.max_change_percent * current:
        percent = round(change * 100 / current)
        return f"a change of {percent}% ({current} → {new}) is more than the {settings_row.max_change_percent}% limit"
    return ""


def _decide(run: BillingRun, item: BillingItem, line: BillingLine, settings_row: BillingSettings) -> None:
    """Set the item's action, state and reason from the line just read."""
    current, new = line.quantity, item.new_quantity
    item.line_id, item.line_label, item.current_quantity = line.line_id or "", line.label[:500], current
    item.error, item.retryable = "", False
    if current == new:
        item.action, item.state = BillingItem.Action.NONE, BillingItem.State.SKIPPED
        item.reason = f"Unchanged: already {new} in the PSA."
        return
    action = BillingItem.Action.CREATE if line.line_id is None else BillingItem.Action.UPDATE
    change = f"{'create with' if action == BillingItem.Action.CREATE else 'update'} {current} → {new}"
    reverting = bool(item.mapping_snapshot.get("reverts_item"))
    if item.mode == Mode.MONITOR:
        item.action, item.state = action, BillingItem.State.SKIPPED
        item.reason = f"Monitor only: would {change}; nothing is written."
        return
    if reverting:
        # Asking for the revert was the approval.
        item.action, item.state = action, BillingItem.State.APPROVED
        item.approved_by, item.approved_at = run.requested_by_label, timezone.now()
        item.reason = f"Revert run #{run.reverts_id}: {change}."
        return
    guard = guardrail_reason(current, new, settings_row)
    if item.mode == Mode.AUTOMATIC and guard:
        item.action, item.state = BillingItem.Action.HELD, BillingItem.State.PLANNED
        item.reason = f"Held for approval: {guard}."
        return
    item.action = action
    if item.mode == Mode.AUTOMATIC and run.apply:
        item.state, item.approved_by, item.approved_at = BillingItem.State.APPROVED, AUTOMATIC, timezone.now()
        item.reason = f"{change[0].upper()}{change[1:]}."
        return
    item.state = BillingItem.State.PLANNED
    waiting = "preview" if not run.apply else "waiting for approval"
    item.reason = f"{change[0].upper()}{change[1:]} ({waiting})." + (f" Note: {guard}." if guard else "")


def _read_and_decide(run, item, adapter, settings_row, connection) -> None:
    target = BillingTarget(**item.mapping_snapshot["target"])
    try:
        line = adapter.read_line(target)
    except Exception as exc:
        _item_error(run, item, exc, connection, reading=True)
        return
    _decide(run, item, line, settings_row)
    item.save()


def _item_error(run: BillingRun, item: BillingItem, exc: Exception, connection: Connection, *, reading: bool) -> None:
    """Record one tenant's failure; the run goes on (unless the credentials were refused)."""
    message = integration_services.failure_message(exc)
    if isinstance(exc, AuthFailedError):
        _fail_item(item, message, action=BillingItem.Action.ERROR if reading else None)
        _log(run, connection, f"{item.tenant.name} ({item.product_key}): {message}", IntegrationLog.Outcome.ERROR,
             tenant=item.tenant, action="billing.sync")  # fmt: skip
        raise _RunAborted(message)
    if isinstance(exc, PsaError) and not exc.permanent:
        item.attempts += 1
        if item.attempts < MAX_ATTEMPTS:
            delay = _retry_delay(item.attempts)
            item.retryable, item.next_attempt_at = True, timezone.now() + delay
            message = f"{message} The hub tries this tenant again in {int(delay.total_seconds() // 60) or 1} minute(s)."
        else:
            item.retryable, item.next_attempt_at = False, None
            message = f"{message} (gave up after {item.attempts} attempts)"
        _fail_item(item, message, action=BillingItem.Action.ERROR if reading else None, retryable=item.retryable)
    else:
        _fail_item(item, message, action=BillingItem.Action.BLOCKED if reading else None)
        if isinstance(exc, (BlockedError, NotFoundError, InvalidError)):
            # A business rule about this tenant's mapping, not a sign that the link is unwell:
            # logged for the account, not against the connection's health.
            connection = None
    _log(run, connection, f"{item.tenant.name} ({item.product_key}): {message}", IntegrationLog.Outcome.ERROR,
         tenant=item.tenant, action="billing.sync")  # fmt: skip


def _retry_delay(attempt: int) -> timedelta:
    return timedelta(seconds=min(1800, 60 * 2 ** (attempt - 1)))


def _fail_item(item: BillingItem, message: str, *, action: str | None = None, retryable: bool = False) -> None:
    if action is not None:
        item.action = action
        if action in (BillingItem.Action.BLOCKED, BillingItem.Action.ERROR):
            item.reason = message
    item.state, item.error, item.retryable, item.writing_at = BillingItem.State.FAILED, message, retryable, None
    if not retryable:
        item.next_attempt_at = None
    item.save()


def _retry_items(run: BillingRun, settings_row: BillingSettings, connection: Connection, claim_id: str) -> str:
    """Tenants that met a transient error: read again (and, when they were approved, write)."""
    items = list(BillingItem.objects.filter(run=run, retryable=True).select_related("tenant"))
    to_read = [item for item in items if not item.approved_by]
    for item in items:
        if item.approved_by:
            BillingItem.objects.filter(pk=item.pk).update(state=BillingItem.State.APPROVED, retryable=False, updated_at=timezone.now())
    if not to_read:
        return ""
    _set_run(run, state=BillingRun.State.PLANNING, total_items=len(to_read), processed_items=0)
    try:
        adapter = _adapter(run, connection, "billing.plan", [BillingTarget(**i.mapping_snapshot["target"]) for i in to_read])
        for index, item in enumerate(to_read):
            if index and index % RENEW_EVERY == 0:
                _renew(settings_row, claim_id)
            _read_and_decide(run, item, adapter, settings_row, connection)
            _progress(run)
    except (_RunAborted, AuthFailedError) as exc:
        _stop_items(to_read, exc.message)
        integration_services.record_failure(connection.pk, "billing.run", exc.message, run.correlation_id, error_kind="auth_failed")
        return exc.message
    return ""


def _stop_items(items: list[BillingItem], message: str) -> None:
    """After refused credentials: the lines not handled yet fail with that message, not retried."""
    BillingItem.objects.filter(pk__in=[i.pk for i in items if i.pk], retryable=True).update(
        state=BillingItem.State.FAILED, retryable=False, next_attempt_at=None, error=f"Not done: {message}",
        updated_at=timezone.now(),
    )  # fmt: skip
    BillingItem.objects.filter(pk__in=[i.pk for i in items if i.pk], state__in=[BillingItem.State.APPROVED, BillingItem.State.APPLYING]).update(
        state=BillingItem.State.FAILED, error=f"Not written: {message}", writing_at=None, updated_at=timezone.now(),
    )  # fmt: skip


# --- applying -------------------------------------------------------------------------------------


def _apply(run: BillingRun, settings_row: BillingSettings, connection: Connection, claim_id: str) -> str:
    items = list(
        BillingItem.objects.filter(run=run, state__in=[BillingItem.State.APPROVED, BillingItem.State.APPLYING])
        .select_related("tenant", "usage")
        .order_by("tenant__name", "product_key", "id")
    )
    _set_run(run, state=BillingRun.State.APPLYING, total_items=len(items), processed_items=0)
    try:
        # A fresh adapter: what the plan read may be out of date; each line is read again below.
        adapter = _adapter(run, connection, "billing.apply", [BillingTarget(**i.mapping_snapshot["target"]) for i in items])
        batch = max(1, int(getattr(adapter, "write_batch", 1) or 1))
        if batch == 1:
            for index, item in enumerate(items):
                if index and index % RENEW_EVERY == 0:
                    _renew(settings_row, claim_id)
                _apply_one(run, item, adapter, settings_row, connection)
                _progress(run)
        else:
            # The PSA takes many lines per write request (Halo): read each line again, then write
            # the ones that differ together; each line's outcome is still recorded on its own.
            for start in range(0, len(items), batch):
                if start:
                    _renew(settings_row, claim_id)
                chunk = items[start : start + batch]
                _apply_many(run, chunk, adapter, settings_row, connection)
                _progress(run, len(chunk))
    except (_RunAborted, AuthFailedError) as exc:
        _stop_items(items, exc.message)
        integration_services.record_failure(connection.pk, "billing.run", exc.message, run.correlation_id, error_kind="auth_failed")
        return exc.message
    return ""


def _apply_one(run: BillingRun, item: BillingItem, adapter: BillingAdapter, settings_row, connection) -> None:
    prepared = _prepare_write(run, item, adapter, settings_row, connection)
    if prepared is None:
        return
    target, fresh = prepared
    try:
        written = adapter.write_quantity(target, fresh, item.new_quantity)
    except Exception as exc:
        _item_error(run, item, exc, connection, reading=False)
        return
    _record_write(run, item, fresh, written, connection)


def _apply_many(run: BillingRun, items: list[BillingItem], adapter: BillingAdapter, settings_row, connection) -> None:
    """_apply_one for several lines, written with one adapter.write_quantities call. Every
    line's outcome is recorded before a refusal of the credentials stops the run."""
    writes: list[tuple[BillingItem, BillingTarget, BillingLine]] = []
    for item in items:
        prepared = _prepare_write(run, item, adapter, settings_row, connection)
        if prepared is not None:
            writes.append((item, *prepared))
    if not writes:
        return
    try:
        results = adapter.write_quantities([(target, fresh, item.new_quantity) for item, target, fresh in writes])
    except Exception as exc:  # the adapter could not even say which line went how
        results = [exc] * len(writes)
    aborted: _RunAborted | None = None
    for (item, _target, fresh), result in zip(writes, results, strict=True):
        try:
            if isinstance(result, Exception):
                _item_error(run, item, result, connection, reading=False)
            else:
                _record_write(run, item, fresh, result, connection)
        except _RunAborted as exc:
            aborted = aborted or exc
    if aborted is not None:
        raise aborted


def _prepare_write(run: BillingRun, item: BillingItem, adapter: BillingAdapter, settings_row, connection):
    """Read the line again right before writing; (target, line read) when it must be written,
    None when the item is settled (already equal, held by the guardrails, or failed)."""
    target = BillingTarget(**item.mapping_snapshot["target"])
    try:
        fresh = adapter.read_line(target)  # right before writing: write only what differs
    except Exception as exc:
        _item_error(run, item, exc, connection, reading=False)
        return None
    item.line_id, item.line_label = fresh.line_id or item.line_id, (fresh.label or item.line_label)[:500]
    if fresh.quantity == item.new_quantity:
        item.state, item.before_quantity, item.after_quantity = BillingItem.State.APPLIED, fresh.quantity, fresh.quantity
        item.applied_at, item.writing_at, item.error, item.retryable = timezone.now(), None, "", False
        item.reason = f"Already {fresh.quantity} in the PSA: nothing written."
        item.save()
        return None
    if item.approved_by == AUTOMATIC:
        guard = guardrail_reason(fresh.quantity, item.new_quantity, settings_row)
        if guard:  # the PSA changed since the plan: the automatic approval no longer holds
            item.action, item.state, item.current_quantity = BillingItem.Action.HELD, BillingItem.State.PLANNED, fresh.quantity
            item.approved_by, item.approved_at, item.reason = "", None, f"Held for approval: {guard}."
            item.save()
            return None
    item.action = BillingItem.Action.CREATE if fresh.line_id is None else BillingItem.Action.UPDATE
    item.state, item.writing_at, item.before_quantity = BillingItem.State.APPLYING, timezone.now(), fresh.quantity
    item.current_quantity = fresh.quantity
    item.save(update_fields=["action", "state", "writing_at", "before_quantity", "current_quantity", "line_id", "line_label", "updated_at"])
    return target, fresh


def _record_write(run: BillingRun, item: BillingItem, fresh: BillingLine, written: BillingLine, connection) -> None:
    now = timezone.now()
    item.state, item.after_quantity, item.applied_at, item.writing_at = BillingItem.State.APPLIED, written.quantity, now, None
    item.line_id, item.line_label = written.line_id or item.line_id, (written.label or item.line_label)[:500]
    item.error, item.retryable, item.next_attempt_at = "", False, None
    item.save()
    _log(run, connection, _write_message(run, item, fresh), tenant=item.tenant, action="billing.write")


def _write_message(run: BillingRun, item: BillingItem, before: BillingLine) -> str:
    where = item.line_label or item.line_id or "the PSA line"
    verb = "Created" if before.line_id is None else "Updated"
    source = (
        f"revert of run #{run.reverts_id}" if run.reverts_id
        else f"usage {item.usage_units} as of {item.usage_as_of:%Y-%m-%d %H:%M} UTC" if item.usage_as_of else "usage"
    )  # fmt: skip
    approved = f", approved by {item.approved_by}" if item.approved_by and item.approved_by != AUTOMATIC else ""
    return (
        f"{verb} {item.product_key} for “{item.tenant.name}”: {item.before_quantity} → {item.after_quantity} on {where} "
        f"(run #{run.pk}, {run.get_trigger_display().lower()} by {run.requested_by_label}{approved}; {source})."
    )


# --- finishing ---------------------------------------------------------------------------------------


def _finish(run: BillingRun, connection: Connection | None, *, stopped: str = "") -> str:
    counts = selectors.item_counts(run)
    now = timezone.now()
    awaiting = counts.get("awaiting_approval", 0)
    state = BillingRun.State.PLANNED if awaiting else BillingRun.State.DONE
    if stopped:
        state = BillingRun.State.FAILED
        BillingItem.objects.filter(run=run, retryable=True).update(retryable=False, next_attempt_at=None, updated_at=now)
        counts = selectors.item_counts(run)
    parts = [f"{n} {label}" for _, label, n in selectors.summary_counts(counts)]
    summary = ", ".join(parts) or "nothing to do"
    if not run.apply and not run.reverts_id and awaiting:
        message = f"Preview: {summary}. Approve the plan to write it."
    elif awaiting:
        message = f"{summary}. {awaiting} line(s) wait for approval."
    else:
        message = f"{summary}."
    if stopped:
        message = f"Stopped: {stopped} ({summary})"
    _set_run(run, state=state, counts=counts, message=message[:2000],
             finished_at=None if state == BillingRun.State.PLANNED else now)  # fmt: skip
    settings_row = BillingSettings.objects.filter(account=run.account).first()
    if settings_row is not None:
        BillingSettings.objects.filter(pk=settings_row.pk).update(last_run_at=now, last_run=run)
    # Each tenant's failure has its own log row; the summary is an error only when the run stopped.
    _log(run, connection, f"Billing run #{run.pk}: {message}", IntegrationLog.Outcome.ERROR if stopped else IntegrationLog.Outcome.OK)
    retrying = BillingItem.objects.filter(run=run, retryable=True).order_by("next_attempt_at").first()
    if retrying is not None:
        wait = max(1.0, (retrying.next_attempt_at - now).total_seconds()) if retrying.next_attempt_at else 60.0
        _queue(run, retry=True, countdown=wait)
    return state


# --- the dispatcher (beat) --------------------------------------------------------------------------


def dispatch_due(now: datetime | None = None) -> int:
    """Queue each account's scheduled run when due, auto syncs whose delay has passed, and runs
    that stopped moving (broker or worker lost). Returns how many runs were queued."""
    now = now or timezone.now()
    queued = 0
    for settings_row in (
        BillingSettings.objects.exclude(schedule=BillingSettings.Schedule.OFF)
        .filter(Q(next_run_at__lte=now) | Q(next_run_at__isnull=True))
        .select_related("account")
    ):
        upcoming = next_run_after(settings_row, now)
        taken = BillingSettings.objects.filter(pk=settings_row.pk, next_run_at=settings_row.next_run_at) if settings_row.next_run_at else BillingSettings.objects.filter(pk=settings_row.pk, next_run_at__isnull=True)
        if not taken.update(next_run_at=upcoming):
            continue  # another dispatcher got it
        if settings_row.next_run_at is None:
            continue  # only just scheduled
        queued += bool(_scheduled_run(settings_row.account))
    for settings_row in BillingSettings.objects.filter(auto_sync=True, auto_sync_due_at__lte=now).select_related("account"):
        queued += bool(dispatch_auto_sync(settings_row.account_id, now=now))
    for run in BillingRun.objects.filter(state__in=BillingRun.ACTIVE_STATES, updated_at__lt=now - STALE_AFTER):
        BillingRun.objects.filter(pk=run.pk).update(updated_at=now)
        _queue(run)
        queued += 1
    return queued


def _scheduled_run(account: Account) -> BillingRun | None:
    connection = Connection.objects.for_account(account).first()
    if not BillingMapping.objects.for_account(account).exists():
        return None  # nothing set up for billing: no run, no noise
    try:
        return start_run(account, trigger=BillingRun.Trigger.SCHEDULE, apply=True, label="schedule")
    except BillingRefused as exc:
        integration_services.log_action(
            account, "billing.run", f"Scheduled billing sync skipped: {exc.message}", outcome=IntegrationLog.Outcome.SKIPPED,
            connection=connection,
        )  # fmt: skip
        return None


def dispatch_auto_sync(account_id: int, now: datetime | None = None) -> BillingRun | None:
    """Once the delay has passed: one sync of every tenant whose usage changed meanwhile."""
    now = now or timezone.now()
    settings_row = BillingSettings.objects.select_related("account").filter(account_id=account_id).first()
    if settings_row is None or not settings_row.auto_sync or settings_row.auto_sync_due_at is None:
        return None
    if settings_row.auto_sync_due_at > now:
        return None
    changed = Usage.objects.filter(account_id=account_id, received_at__lte=now)
    if settings_row.auto_sync_checkpoint is not None:
        changed = changed.filter(received_at__gt=settings_row.auto_sync_checkpoint)
    tenant_ids = set(changed.values_list("tenant_id", flat=True).distinct())
    if not BillingSettings.objects.filter(pk=settings_row.pk, auto_sync_due_at=settings_row.auto_sync_due_at).update(
        auto_sync_due_at=None, auto_sync_checkpoint=now
    ):
        return None  # another dispatcher took it
    account = settings_row.account
    tenants = list(Tenant.objects.for_account(account).filter(pk__in=tenant_ids, is_active=True))
    if not tenants:
        return None
    try:
        return start_run(account, trigger=BillingRun.Trigger.AUTO, apply=True, tenants=tenants, label="auto sync")
    except BillingRefused as exc:
        integration_services.log_action(
            account, "billing.run", f"Auto sync skipped: {exc.message}", outcome=IntegrationLog.Outcome.SKIPPED,
            connection=Connection.objects.for_account(account).first(),
        )  # fmt: skip
        return None

"""Two-way sync, inbound: a ticket changed in the PSA changes its incident in the hub.

Every way a change arrives (a Halo webhook, a ConnectWise callback, a poll) ends in
`apply_ticket_status`, with the status and last-update time read from the PSA's API: a webhook
body is only a hint that something changed (fact sheets: Halo section 8, ConnectWise 7.9).

The rules (DESIGN.md rule 9, issue 7):
- a ticket the hub did not make is ignored (and logged);
- a report older than the last one applied (Ticket.psa_changed_at) never overwrites it, and a
  replay is a no-op;
- a report of the status the ticket already has in the hub (Ticket.status_id) is the hub's own
  change coming back, or a replay: nothing happens;
- a PSA status that the ticket's status map does not name is logged, not applied;
- otherwise the incident changes with source="psa" (so it is not sent back to the PSA) and the
  host product is told (ticketing/host.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from hub.models import Account
from integrations import services as integration_services
from integrations.base.errors import NotFoundError, PsaError
from integrations.models import Connection, IntegrationLog
from ticketing import services
from ticketing.sync import host
from ticketing.models import CLOSING_STATUSES, STATUSES, Ticket, TicketingConfig, WebhookReceipt

logger = logging.getLogger(__name__)

ACTION = "ticket.inbound"

# Outcomes of apply_ticket_status (also stored on WebhookReceipt.outcome).
APPLIED = "applied"
NO_CHANGE = "no_change"  # the PSA status maps to the incident's current status
ECHO = "echo"  # the ticket is already in that status as far as the hub knows
STALE = "stale"  # older than the change applied last
UNKNOWN_TICKET = "unknown"
UNMAPPED = "unmapped"
GONE = "gone"  # the ticket no longer exists in the PSA
SKIPPED = "skipped"  # no connected, unpaused PSA


def parse_psa_time(text: str) -> datetime | None:
    """A PSA timestamp as an aware UTC datetime. Halo's have no offset and are UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def status_map_of(ticket: Ticket, config: TicketingConfig | None) -> dict:
    """The ticket's own board's map (as ticketing.services follows it)."""
    if config is None or ticket.board_id != config.board_id:
        return ticket.status_map
    return config.status_map


def reverse_status(status_map: dict, psa_status_id: str, current: str = "") -> str | None:
    """The incident status for a PSA status: when several map to it, the incident's current one
    if it is among them, else the first of Open, Pending, Snoozed, Done, Canceled, Dismissed.
    Autotask's "status for new tickets" counts as Open. None when nothing maps to it."""
    psa_status_id = str(psa_status_id)
    matches = [status for status in STATUSES if str(status_map.get(status) or "") == psa_status_id]
    if not matches and str(status_map.get("new") or "") == psa_status_id:
        matches = ["Open"]
    if not matches:
        return None
    return current if current in matches else matches[0]


def _log(account, message, *, outcome=IntegrationLog.Outcome.OK, incident=None, connection=None, correlation_id="",
         action=ACTION) -> None:
    integration_services.log_action(
        account, action, message, outcome=outcome, connection=connection,
        tenant=incident.tenant if incident is not None else None, correlation_id=correlation_id,
        subject=f"incident:{incident.pk}" if incident is not None else "",
    )


def apply_ticket_status(
    account: Account,
    vendor: str,
    ticket_id: str,
    psa_status_id: str,
    changed_at: datetime | None,
    source_detail: str,
    *,
    correlation_id: str = "",
) -> str:
    """Apply one status the PSA reports for one of its tickets; returns the outcome."""
    connection = Connection.objects.for_account(account).first()
    psa_status_id = str(psa_status_id or "").strip()
    notify = None
    with transaction.atomic():
        ticket = (
            Ticket.objects.for_account(account).select_for_update()
            .filter(vendor=vendor, ticket_id=str(ticket_id)).first()
        )
        if ticket is None:
            _log(account, f"{source_detail}: ticket {ticket_id} is not one the hub made; ignored.",
                 outcome=IntegrationLog.Outcome.SKIPPED, connection=connection, correlation_id=correlation_id)
            return UNKNOWN_TICKET
        incident = ticket.incidents.select_related("tenant").order_by("-created_at", "-id").first()
        name = ticket.number or ticket.ticket_id
        if changed_at is not None and ticket.psa_changed_at is not None and changed_at < ticket.psa_changed_at:
            _log(account, f"{source_detail}: ticket {name} reported as of {changed_at:%Y-%m-%d %H:%M:%S} UTC, older "
                 f"than the change already applied ({ticket.psa_changed_at:%Y-%m-%d %H:%M:%S} UTC); ignored.",
                 outcome=IntegrationLog.Outcome.SKIPPED, incident=incident, connection=connection,
                 correlation_id=correlation_id)
            return STALE
        newer = changed_at if changed_at is not None and (ticket.psa_changed_at is None or changed_at > ticket.psa_changed_at) else None
        if not psa_status_id:
            _log(account, f"{source_detail}: ticket {name} came without a status; not applied.",
                 outcome=IntegrationLog.Outcome.ERROR, incident=incident, connection=connection,
                 correlation_id=correlation_id, action=ACTION)
            return UNMAPPED
        if psa_status_id == str(ticket.status_id):
            if newer is not None:
                Ticket.objects.filter(pk=ticket.pk).update(psa_changed_at=newer)
            _log(account, f"{source_detail}: ticket {name} is already in that status (the hub's own change, or a "
                 "repeat); nothing to do.", outcome=IntegrationLog.Outcome.SKIPPED, incident=incident,
                 connection=connection, correlation_id=correlation_id)
            return ECHO
        config = TicketingConfig.objects.for_account(account).first()
        current = incident.status if incident is not None else ""
        status = reverse_status(status_map_of(ticket, config), psa_status_id, current)
        if status is None:
            _log(account, f"{source_detail}: ticket {name} is in PSA status {psa_status_id}, which the status mapping "
                 "does not name; not applied. Map it on the Ticketing page to follow it.",
                 outcome=IntegrationLog.Outcome.ERROR, incident=incident, connection=connection,
                 correlation_id=correlation_id)
            return UNMAPPED
        if incident is not None and status != current:
            incident = services.change_incident(incident, {"status": status}, source="psa")
            notify = (incident, current, ticket)
        closing = status in CLOSING_STATUSES
        # After change_incident (which records the mapped status): the PSA's own status id, so an
        # ambiguous or "new" mapping is not written back by a later delivery.
        Ticket.objects.filter(pk=ticket.pk).update(
            status_id=psa_status_id,
            closed_at=(ticket.closed_at or timezone.now()) if closing else None,
            **({"psa_changed_at": newer} if newer is not None else {}),
        )
        if notify is None:
            _log(account, f"{source_detail}: ticket {name} moved to PSA status {psa_status_id}, still {status} in the "
                 "hub.", incident=incident, connection=connection, correlation_id=correlation_id)
            return NO_CHANGE
        _log(account, f"{source_detail}: ticket {name} changed in the PSA: incident #{incident.pk} {current} → "
             f"{status}.", incident=incident, connection=connection, correlation_id=correlation_id)
    incident, previous, ticket = notify
    host.notify(incident, previous, ticket, changed_at or timezone.now())
    return APPLIED


# --- a hint from the PSA: read the ticket, then apply ------------------------------------------------


def refresh_from_psa(connection_id: str, ticket_id: str, receipt_id: int | None, correlation_id: str, source_detail: str) -> str:
    """Read one ticket's status through the API and apply it (the task behind each webhook or
    callback). Transient PSA errors go up to the task, which retries."""
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None or connection.status != Connection.Status.CONNECTED or connection.paused:
        _receipt(receipt_id, SKIPPED)
        return SKIPPED
    account = connection.account
    if not Ticket.objects.for_account(account).filter(vendor=connection.vendor, ticket_id=str(ticket_id)).exists():
        # No API call for a ticket the hub does not know.
        outcome = apply_ticket_status(account, connection.vendor, ticket_id, "", None, source_detail, correlation_id=correlation_id)
        _receipt(receipt_id, outcome)
        return outcome
    provider = integration_services.build_provider(connection, action=ACTION, correlation_id=correlation_id)
    try:
        change = provider.ticketing().read_change(str(ticket_id))
    except NotFoundError:
        _log(account, f"{source_detail}: ticket {ticket_id} no longer exists in the PSA; nothing applied.",
             outcome=IntegrationLog.Outcome.SKIPPED, connection=connection, correlation_id=correlation_id)
        _receipt(receipt_id, GONE)
        return GONE
    except PsaError as exc:
        if not exc.permanent:
            raise
        _log(account, f"{source_detail}: could not read ticket {ticket_id}: {exc.message}",
             outcome=IntegrationLog.Outcome.ERROR, connection=connection, correlation_id=correlation_id)
        _receipt(receipt_id, "failed")
        return "failed"
    outcome = apply_ticket_status(account, connection.vendor, change.ticket_id or str(ticket_id), change.status_id,
                                  parse_psa_time(change.changed_at_iso), source_detail, correlation_id=correlation_id)
    _receipt(receipt_id, outcome)
    return outcome


def _receipt(receipt_id: int | None, outcome: str) -> None:
    if receipt_id:
        WebhookReceipt.objects.filter(pk=receipt_id).update(outcome=outcome)

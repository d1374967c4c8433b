"""Two-way sync by polling: where the PSA has no ticket webhooks, and where its webhook or
callback could not be registered.

A beat task (`ticketing.poll_status_due`, every minute) queues one `ticketing.poll_status` per
due StatusSync; each poll is a handful of requests on the PSA's rate limiter (the shared
limiter of integrations.limits). The PSA's status-sync capability asks for the changes of the
hub's own tickets (PollScope: the hub's reference prefix, their boards, the open or recently
closed ones) since the watermark minus an overlap; those changed after it are applied.
The watermark moves to the newest change seen, never back, so a later poll asks for less.

Where a webhook or callback is registered, the same poll still runs every RECONCILE_MINUTES: a
change the PSA never delivered (an outage on either side, a webhook without the right events)
is caught up then. Re-reading a change already applied is a no-op.
"""

from __future__ import annotations

from datetime import UTC

from django.db.models import Q
from django.utils import timezone

from integrations import services as integration_services
from integrations.base.errors import PsaError
from integrations.base.status_sync import PollScope
from integrations.models import Connection, IntegrationLog
from ticketing.sync import inbound
from ticketing.models import Incident, StatusSync, Ticket, TicketingConfig
from ticketing.sync.registration import POLL_OVERLAP, capability, poll_minutes

# Tickets a poll may ask about by id: those open, or closed within this long (they may be reopened).
RECENT = timezone.timedelta(days=14)
RECONCILE_MINUTES = 30
POLLED_MODES = (StatusSync.Mode.POLL, StatusSync.Mode.WEBHOOK, StatusSync.Mode.CALLBACK)


def interval(sync: StatusSync) -> timezone.timedelta:
    minutes = poll_minutes(sync.vendor) if sync.mode == StatusSync.Mode.POLL else RECONCILE_MINUTES
    return timezone.timedelta(minutes=minutes)


def due_syncs():
    now = timezone.now()
    slack = timezone.timedelta(seconds=5)  # beat runs every minute: do not miss a slot by a hair
    for sync in StatusSync.objects.filter(mode__in=POLLED_MODES, removing=False):
        if sync.last_polled_at is None or now - sync.last_polled_at >= interval(sync) - slack:
            yield sync


def _iso(value) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def poll(sync_id: int, correlation_id: str) -> int:
    """One poll of one connection; returns the number of changes applied or skipped."""
    sync = StatusSync.objects.filter(pk=sync_id, mode__in=POLLED_MODES, removing=False).select_related("account").first()
    if sync is None:
        return 0
    connection = Connection.objects.filter(pk=sync.connection_id).first()
    if connection is None or connection.status != Connection.Status.CONNECTED or connection.paused:
        return 0
    account = sync.account
    started = timezone.now()
    since = (sync.poll_watermark or started - POLL_OVERLAP) - POLL_OVERLAP
    known = Ticket.objects.for_account(account).filter(vendor=connection.vendor)
    if not known.exists():
        StatusSync.objects.filter(pk=sync.pk).update(last_polled_at=started)
        return 0
    config = TicketingConfig.objects.for_account(account).first()
    boards = set(known.exclude(board_id="").values_list("board_id", flat=True))
    if config is not None and config.vendor == connection.vendor and config.board_id:
        boards.add(config.board_id)
    recent = known.filter(Q(closed_at__isnull=True) | Q(closed_at__gte=started - RECENT))
    scope = PollScope(reference_prefix=Incident.reference_prefix(account.pk), board_ids=tuple(sorted(boards)),
                      ticket_ids=tuple(recent.values_list("ticket_id", flat=True)))
    provider = integration_services.build_provider(connection, action="ticket.poll", correlation_id=correlation_id)
    adapter = provider.ticketing()
    try:
        # The PSA may answer with a little more than asked (an id list, the overlap): keep what changed after `since`.
        changes = [change for change in capability(connection.vendor).changes(adapter, _iso(since), scope)
                   if (inbound.parse_psa_time(change.changed_at_iso) or started) > since]
    except PsaError as exc:
        if not exc.permanent:
            raise
        integration_services.log_action(account, "ticket.poll", f"Could not poll ticket changes: {exc.message}",
                                        outcome=IntegrationLog.Outcome.ERROR, connection=connection,
                                        correlation_id=correlation_id)
        StatusSync.objects.filter(pk=sync.pk).update(last_polled_at=started, last_error=exc.message)
        return 0
    known_ids = set(known.filter(ticket_id__in=[c.ticket_id for c in changes]).values_list("ticket_id", flat=True))
    newest = sync.poll_watermark
    applied = 0
    for change in changes:
        changed_at = inbound.parse_psa_time(change.changed_at_iso)
        if changed_at is not None and (newest is None or changed_at > newest):
            newest = changed_at
        if change.ticket_id not in known_ids:
            continue  # another ticket on the board: not the hub's, and not worth a log row each poll
        inbound.apply_ticket_status(account, connection.vendor, change.ticket_id, change.status_id, changed_at,
                                    f"{connection.get_vendor_display()} poll", correlation_id=correlation_id)
        applied += 1
    StatusSync.objects.filter(pk=sync.pk).update(
        last_polled_at=started, last_error="", **({"poll_watermark": newest} if newest is not None else {}),
    )
    StatusSync.objects.filter(pk=sync.pk, poll_watermark__isnull=True).update(poll_watermark=started)
    return applied

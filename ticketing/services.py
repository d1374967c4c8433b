"""Incidents in, PSA tickets out: every ticketing write goes through here.

An accepted incident is committed before anything is queued (transaction.on_commit), so it
is never lost: if the broker or the worker is down, the sweeper queues it later. Delivery is
claimed with a conditional UPDATE, looks for the incident's reference in the PSA before
creating a ticket, and changes only what differs (DESIGN.md rule 5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from hub.models import Account, Tenant
from integrations import services as integration_services
from integrations.base.errors import PsaError
from integrations.base.ticketing import TicketDraft
from integrations.models import CompanyMapping, Connection, IntegrationLog
from ticketing.models import CLOSING_STATUSES, Incident, IncidentNote, Ticket, TicketingConfig

logger = logging.getLogger(__name__)

# A claim older than this is taken over: its worker is gone (the message timed out).
CLAIM_LEASE = timezone.timedelta(minutes=10)
# Incidents waiting longer than this are queued again by the sweeper.
SWEEP_AFTER = timezone.timedelta(minutes=5)
# ...unless the broker still holds a backlog: their message is most likely still in it, and a
# copy for each would double a long queue (the embedded broker then never catches up).
SWEEP_AFTER_BACKLOG = timezone.timedelta(minutes=30)
# A delivery goes round again when the incident changed while it ran; after this many rounds
# it hands over to a new task instead of holding the worker.
MAX_ROUNDS = 5


class NotReady(Exception):
    """The incident cannot be sent yet; `state` says why (needs mapping, held)."""

    def __init__(self, state: str, message: str):
        super().__init__(message)
        self.state = state
        self.message = message


# --- accepting incidents ------------------------------------------------------------------


def _queue(incident: Incident) -> None:
    from ticketing import tasks

    incident_id, correlation_id = incident.pk, integration_services.new_correlation_id()
    transaction.on_commit(lambda: _send_to_broker(tasks.deliver_incident, incident_id, correlation_id))


def _send_to_broker(task, *args) -> None:
    # The incident is committed; if the broker is down it stays pending and the sweeper
    # queues it later, so a failed publish must not fail the request that accepted it.
    try:
        task.delay(*args)
    except Exception:
        logger.warning("Could not queue %s%s; the sweeper will retry", task.name, args, exc_info=True)


def _mark_pending(incident: Incident) -> None:
    # The claim is kept: a delivery running now must finish before another may start (two at
    # once could both create the ticket). It sees the incident pending again and goes round.
    incident.sync_state = Incident.Sync.PENDING
    incident.sync_error = ""
    incident.sync_requested_at = timezone.now()


def _pending_again(incident_id: int) -> None:
    Incident.objects.filter(pk=incident_id).update(
        sync_state=Incident.Sync.PENDING, sync_error="", sync_requested_at=timezone.now()
    )


def accept_incident(account: Account, tenant: Tenant, data: dict) -> tuple[Incident, bool]:
    """Store an incident (or count a repeat of an open one) and queue its delivery.
    Returns (incident, created)."""
    now = timezone.now()
    with transaction.atomic():
        repeat = _open_repeat(account, data.get("dedupe_key", ""), tenant)
        if repeat is not None:
            incident, reopen = repeat
            incident.occurrences = F("occurrences") + 1
            incident.last_seen_at = now
            if reopen:
                incident.status, incident.status_source, incident.status_changed_at = "Open", "api", now
            _mark_pending(incident)
            incident.save()
            incident.refresh_from_db()
            text = f"Seen again at {now:%Y-%m-%d %H:%M} UTC, count {incident.occurrences}."
            if reopen:
                text += " The ticket was closed recently, so it is reopened."
            IncidentNote.objects.create(incident=incident, text=text)
            _queue(incident)
            return incident, False
        incident = Incident.objects.create(account=account, tenant=tenant, **data)
        _queue(incident)
        return incident, True


def _open_repeat(account: Account, dedupe_key: str, tenant: Tenant) -> tuple[Incident, bool] | None:
    """The incident a repeat belongs to: one whose ticket is open, or (recurrence rule) was
    closed less than `reopen_within_hours` ago. (incident, reopen?) or None."""
    if not dedupe_key:
        return None
    latest = (
        Incident.objects.for_account(account)
        .filter(dedupe_key=dedupe_key, tenant=tenant)
        # Lock the incident only: PostgreSQL refuses FOR UPDATE on the nullable side of the
        # ticket's outer join.
        .select_for_update(of=("self",))
        .select_related("ticket")
        .order_by("-created_at", "-id")
        .first()
    )
    if latest is None:
        return None
    closed_at = latest.ticket.closed_at if latest.ticket else None
    if latest.status not in CLOSING_STATUSES and closed_at is None:
        return latest, False
    config = TicketingConfig.objects.for_account(account).first()
    window = timezone.timedelta(hours=config.reopen_within_hours if config else 24)
    closed_at = closed_at or latest.status_changed_at
    if latest.ticket is not None and timezone.now() - closed_at < window:
        return latest, True
    return None


def change_incident(incident: Incident, changes: dict, *, source: str = "api") -> Incident:
    """Apply status/severity/details changes; queue a sync when the ticket must follow."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        changed = [field for field, value in changes.items() if getattr(incident, field) != value]
        for field in changed:
            setattr(incident, field, changes[field])
        if "status" in changed:
            incident.status_source = source
            incident.status_changed_at = timezone.now()
        if changed:
            if source != "psa":  # a change that came from the PSA is not echoed back to it
                _mark_pending(incident)
            incident.save()
            if "details" in changed and incident.ticket_id:
                # The ticket's description is the history of the first report: new details
                # reach the technician as a note (delivered once, like every note).
                IncidentNote.objects.create(incident=incident, text=f"Details updated:\n\n{incident.details}")
            if source == "psa":
                _ticket_already_follows(incident)
            else:
                _queue(incident)
    return incident


def _ticket_already_follows(incident: Incident) -> None:
    """The PSA made this change itself: record the ticket as already in that state, so the
    next delivery (a note, a later change) does not write it back (DESIGN.md rule 9)."""
    ticket = incident.ticket
    if ticket is None:
        return
    config = TicketingConfig.objects.for_account(incident.account_id).first()
    status_map = _status_map_for(ticket, config)
    fields = {}
    if status_map.get(incident.status):
        fields["status_id"] = status_map[incident.status]
        fields["closed_at"] = (ticket.closed_at or timezone.now()) if incident.status in CLOSING_STATUSES else None
    priority_id = config and (config.priority_map.get(incident.severity) or config.default_priority_id)
    if priority_id:
        fields["priority_id"] = priority_id
    if fields:
        Ticket.objects.filter(pk=ticket.pk).update(**fields)


def add_note(incident: Incident, text: str) -> IncidentNote:
    with transaction.atomic():
        note = IncidentNote.objects.create(incident=incident, text=text)
        _pending_again(incident.pk)
        _queue(incident)
    return note


def retry_incident(incident: Incident) -> None:
    with transaction.atomic():
        _pending_again(incident.pk)
        _queue(incident)


def sweep() -> int:
    """Beat: queue again incidents that waited too long (broker down, worker killed)."""
    now = timezone.now()
    waited = SWEEP_AFTER if not broker_backlog() else max(SWEEP_AFTER, SWEEP_AFTER_BACKLOG)
    due = Incident.objects.filter(
        Q(sync_state=Incident.Sync.PENDING, sync_requested_at__lt=now - waited)
        # A claim past its lease: the worker that held it is gone (its message may not come back).
        # Queued again at most once per SWEEP_AFTER, as the sweep stamps sync_requested_at.
        | Q(sync_state=Incident.Sync.SYNCING, sync_claimed_at__lt=now - CLAIM_LEASE, sync_requested_at__lt=now - SWEEP_AFTER)
    ).order_by("created_at", "id")
    count = 0
    for incident in due[:1000]:
        Incident.objects.filter(pk=incident.pk).update(sync_requested_at=now)
        _queue(incident)
        count += 1
    return count


def broker_backlog(queue: str = "psa") -> int:
    """Messages waiting in the broker's queue for PSA work; 0 when the broker cannot say."""
    from hub.celery import app

    try:
        with app.connection_for_read() as conn:
            # Declared, not looked up: Redis has no key for an empty queue. Celery declares it anyway.
            return conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False).message_count or 0
    except Exception:
        logger.warning("Could not read the length of the %s queue", queue, exc_info=True)
        return 0


def release_held(account: Account) -> int:
    """On resume: incidents held while paused are sent, oldest first."""
    held = list(Incident.objects.for_account(account).filter(sync_state=Incident.Sync.HELD).order_by("created_at", "id"))
    with transaction.atomic():
        for incident in held:
            Incident.objects.filter(pk=incident.pk).update(sync_state=Incident.Sync.PENDING, sync_requested_at=timezone.now())
            _queue(incident)
    return len(held)


def release_needing_mapping(account: Account, tenant: Tenant | None = None) -> int:
    """After a mapping or a default company is set: send what waited for it."""
    waiting = Incident.objects.for_account(account).filter(sync_state=Incident.Sync.NEEDS_MAPPING)
    if tenant is not None:
        waiting = waiting.filter(tenant=tenant)
    waiting = list(waiting.order_by("created_at", "id"))
    with transaction.atomic():
        for incident in waiting:
            Incident.objects.filter(pk=incident.pk).update(sync_state=Incident.Sync.PENDING, sync_requested_at=timezone.now())
            _queue(incident)
    return len(waiting)


# --- routing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    company_id: str
    company_name: str
    company_source: str  # "mapping" | "default"
    board_id: str
    board_name: str
    status_id: str
    priority_id: str
    type_id: str


def route(config: TicketingConfig, tenant: Tenant, severity: str, status: str, *, new: bool) -> Route:
    """Where a ticket for this tenant and severity lands. Raises NotReady with the fix."""
    mapping = CompanyMapping.objects.filter(tenant=tenant).first()
    if mapping is not None:
        company_id, company_name, source = mapping.company_id, mapping.company_name, "mapping"
    elif config.default_company_id:
        company_id, company_name, source = config.default_company_id, config.default_company_name, "default"
    else:
        raise NotReady(
            Incident.Sync.NEEDS_MAPPING,
            f"Tenant “{tenant.name}” is not mapped to a PSA company and no default company is set. Map it under "
            "Integrations › Map tenants, or choose a default company on the Ticketing page.",
        )
    if not config.board_id:
        raise NotReady(Incident.Sync.FAILED, "No board or queue is chosen on the Ticketing page.")
    missing = config.missing_statuses()
    if missing:
        raise NotReady(
            Incident.Sync.FAILED,
            f"The status mapping for {config.board_name or 'the board'} is incomplete: choose a status for "
            f"{', '.join(missing)} on the Ticketing page (each board has its own statuses).",
        )
    # Autotask's "Status for new tickets" (seed 001), for a ticket made for an open incident.
    status_id = config.status_map["new"] if new and status == "Open" and config.status_map.get("new") else config.status_map[status]
    priority_id = config.priority_map.get(severity) or config.default_priority_id
    # With no priority mapped at all the PSA's own default applies (seed 000 calls the priority
    # optional; a Halo ticket type without an SLA has no priorities); a partial map is a mistake.
    if not priority_id and any(config.priority_map.values()):
        raise NotReady(Incident.Sync.FAILED, f"No PSA priority is mapped for severity {severity} on the Ticketing page.")
    return Route(company_id, company_name, source, config.board_id, config.board_name, status_id, priority_id, config.type_id)


def draft_for(incident: Incident, config: TicketingConfig, route_: Route) -> TicketDraft:
    lines = [incident.details.strip()] if incident.details.strip() else []
    if incident.source_url:
        lines.append(f"Source: {incident.source_url}")
    lines.append(f"Severity: {incident.severity}. Hub reference: {incident.reference}")
    return TicketDraft(
        reference=incident.reference,
        company_id=route_.company_id,
        summary=incident.title,
        description="\n\n".join(lines),
        board_id=route_.board_id,
        status_id=route_.status_id,
        priority_id=route_.priority_id,
        type_id=config.type_id,
        subtype_id=config.subtype_id,
        item_id=config.item_id,
        source_id=config.source_id,
        team_id=config.team_id,
        contact_email=incident.contact_email,
        extra=dict(config.extra),
    )


# --- delivery (the worker) ---------------------------------------------------------------------


def claim(incident_id: int, claim_id: str) -> bool:
    """Take the incident for one delivery (a conditional UPDATE). Free when pending and
    unclaimed; the same claim id (a redelivered or retried task) takes it back at once;
    anyone may take over a claim older than the lease (its worker is gone)."""
    now = timezone.now()
    active = Q(sync_state__in=[Incident.Sync.PENDING, Incident.Sync.SYNCING])
    claimable = Q(sync_state=Incident.Sync.PENDING, sync_claim="") | Q(
        Q(sync_claim=claim_id) | Q(sync_claimed_at__lt=now - CLAIM_LEASE), active
    )
    return bool(
        Incident.objects.filter(claimable, pk=incident_id).update(
            sync_state=Incident.Sync.SYNCING,
            sync_claim=claim_id,
            sync_claimed_at=now,
            sync_attempts=F("sync_attempts") + 1,
        )
    )


def _finish(incident_id: int, claim_id: str, state: str, error: str = "") -> bool:
    """Record the outcome and release the claim, unless the incident changed meanwhile (it
    is pending again: the caller goes round once more)."""
    fields = {"sync_state": state, "sync_error": error, "sync_claim": ""}
    if state == Incident.Sync.SYNCED:
        fields["synced_at"] = timezone.now()
    return bool(
        Incident.objects.filter(pk=incident_id, sync_claim=claim_id, sync_state=Incident.Sync.SYNCING).update(**fields)
    )


def deliver(incident_id: int, claim_id: str, correlation_id: str) -> str | None:
    """Bring the PSA ticket in step with the incident. Returns the state reached, or None
    when someone else holds the claim. Transient PSA errors are raised for the task to retry
    (the claim is kept: the retry has the same id and takes it back)."""
    if not claim(incident_id, claim_id):
        return None
    for _ in range(MAX_ROUNDS):
        state = _deliver_round(incident_id, claim_id, correlation_id)
        if state is not None:
            return state
        # The incident changed while this round ran (a new status, a note): go round again.
        if not claim(incident_id, claim_id):
            return None
    # Still changing after several rounds: hand over to a fresh task rather than hold this one.
    if Incident.objects.filter(pk=incident_id, sync_claim=claim_id).update(sync_state=Incident.Sync.PENDING, sync_claim=""):
        _queue(Incident.objects.get(pk=incident_id))
    return Incident.Sync.PENDING


def _deliver_round(incident_id: int, claim_id: str, correlation_id: str) -> str | None:
    incident = Incident.objects.select_related("tenant", "account", "ticket").get(pk=incident_id)
    account = incident.account
    connection = Connection.objects.for_account(account).first()
    config = TicketingConfig.objects.for_account(account).first()
    try:
        if connection is None or connection.status != Connection.Status.CONNECTED:
            raise NotReady(Incident.Sync.FAILED, "No connected PSA: link one under Integrations.")
        if connection.paused:
            raise NotReady(Incident.Sync.HELD, "The integration is paused; the incident is held and sent on resume.")
        if config is None or config.vendor != connection.vendor:
            raise NotReady(Incident.Sync.FAILED, "Ticketing is not set up: choose the board or queue on the Ticketing page.")
        # Only a delivery that is not the first can have sent a create whose answer was lost:
        # the first one creates straight away, every later one looks for the reference first.
        _sync_ticket(incident, connection, config, correlation_id, search_first=incident.sync_attempts > 1)
    except NotReady as exc:
        if not _finish(incident.pk, claim_id, exc.state, exc.message):
            return None
        _log(incident, connection, "ticket.sync", exc.message, correlation_id,
             IntegrationLog.Outcome.SKIPPED if exc.state == Incident.Sync.HELD else IntegrationLog.Outcome.ERROR)
        return exc.state
    except PsaError as exc:
        if not exc.permanent:
            raise
        fail(incident.pk, claim_id, exc.message, correlation_id)
        return Incident.Sync.FAILED
    except DatabaseError:
        raise  # the database is the record: nothing can be written now; the sweeper queues it again
    except Exception as exc:
        # A bug or an unreadable credential: say so on the incident instead of leaving it
        # "syncing" until the lease runs out, again and again.
        fail(incident.pk, claim_id, integration_services.failure_message(exc), correlation_id)
        return Incident.Sync.FAILED
    if not _finish(incident.pk, claim_id, Incident.Sync.SYNCED):
        return None
    return Incident.Sync.SYNCED


def fail(incident_id: int, claim_id: str, message: str, correlation_id: str) -> None:
    """Record a failure for people (with the Retry action), if this claim still holds it."""
    incident = Incident.objects.select_related("account", "tenant").get(pk=incident_id)
    failed = Incident.objects.filter(pk=incident_id, sync_claim=claim_id).update(
        sync_state=Incident.Sync.FAILED, sync_error=message, sync_claim=""
    )
    if failed:
        connection = Connection.objects.for_account(incident.account).first()
        _log(incident, connection, "ticket.sync", f"Incident #{incident.pk}: {message}", correlation_id, IntegrationLog.Outcome.ERROR)


def _log(incident, connection, action, message, correlation_id, outcome=IntegrationLog.Outcome.OK) -> None:
    integration_services.log_action(
        incident.account, action, message, outcome=outcome, connection=connection, tenant=incident.tenant,
        correlation_id=correlation_id, subject=f"incident:{incident.pk}",
    )


def _sync_ticket(
    incident: Incident, connection: Connection, config: TicketingConfig, correlation_id: str, *, search_first: bool = True
) -> None:
    provider = integration_services.build_provider(
        connection, action="ticket.sync", correlation_id=correlation_id, tenant=incident.tenant,
        subject=f"incident:{incident.pk}", config_overrides=config.extra,
    )
    adapter = provider.ticketing()
    ticket = incident.ticket
    if ticket is None:
        route_ = route(config, incident.tenant, incident.severity, incident.status, new=True)
        found = adapter.find_by_reference(incident.reference) if search_first else None
        if found is None:
            found = adapter.create(draft_for(incident, config, route_))
            message = f"Created ticket {found.number or found.id} for incident #{incident.pk} on {config.board_name or config.board_id}."
        else:
            message = f"Found ticket {found.number or found.id} already created for incident #{incident.pk}; linked it."
        ticket, _ = Ticket.objects.get_or_create(
            account=incident.account, reference=incident.reference,
            defaults={
                "vendor": connection.vendor, "ticket_id": found.id, "number": found.number,
                "url": found.url or provider.ticket_url(found.id), "board_id": route_.board_id,
                "status_map": dict(config.status_map),
                "company_id": route_.company_id, "status_id": found.status_id or route_.status_id,
                "priority_id": route_.priority_id,
                "closed_at": timezone.now() if found.closed else None,
            },
        )
        Incident.objects.filter(pk=incident.pk).update(ticket=ticket)
        incident.ticket = ticket
        _log(incident, connection, "ticket.create", message, correlation_id)
    _follow_incident(incident, ticket, adapter, config, connection, correlation_id)
    _deliver_notes(incident, ticket, adapter, connection, correlation_id)


def _follow_incident(incident, ticket, adapter, config, connection, correlation_id) -> None:
    """Status and priority of the ticket follow the incident, with the statuses of the
    ticket's own board (it stays there when the configured board changes)."""
    status_map = _status_map_for(ticket, config)
    status_id = status_map.get(incident.status, "")
    if incident.status == "Open" and status_map.get("new") and ticket.status_id == status_map["new"]:
        status_id = ticket.status_id  # a new ticket keeps the "status for new tickets" while Open (seed 001)
    priority_id = config.priority_map.get(incident.severity) or config.default_priority_id
    wanted_status = status_id if status_id and status_id != ticket.status_id else ""
    wanted_priority = priority_id if priority_id and priority_id != ticket.priority_id else ""
    if not (wanted_status or wanted_priority):
        return
    ref = adapter.update(ticket.ticket_id, status_id=wanted_status, priority_id=wanted_priority)
    closing = incident.status in CLOSING_STATUSES
    Ticket.objects.filter(pk=ticket.pk).update(
        status_id=ref.status_id or status_id or ticket.status_id,
        priority_id=priority_id or ticket.priority_id,
        closed_at=(ticket.closed_at or timezone.now()) if closing else None,
    )
    what = []
    if wanted_status:
        what.append(f"status → {incident.status}")
    if wanted_priority:
        what.append(f"priority → {incident.severity}")
    _log(incident, connection, "ticket.update", f"Ticket {ticket.number or ticket.ticket_id}: {', '.join(what)}.", correlation_id)


def _status_map_for(ticket: Ticket, config: TicketingConfig | None) -> dict:
    """The ticket's own board's statuses: the configured map while the board is the same
    (statuses may have been re-mapped), the map from its creation once the board changed."""
    if config is None or ticket.board_id != config.board_id:
        return ticket.status_map
    return config.status_map


def _deliver_notes(incident, ticket, adapter, connection, correlation_id) -> None:
    for note in IncidentNote.objects.filter(incident=incident, delivered_at__isnull=True).order_by("created_at", "id"):
        # The marker goes first: an adapter that shortens a long note keeps its beginning.
        text = f"{note.marker} {note.text}"
        if note.sending_at is None or not adapter.note_exists(ticket.ticket_id, note.marker):
            IncidentNote.objects.filter(pk=note.pk).update(sending_at=timezone.now())
            adapter.add_note(ticket.ticket_id, text)
        IncidentNote.objects.filter(pk=note.pk).update(delivered_at=timezone.now())
        _log(incident, connection, "ticket.note", f"Added a note to ticket {ticket.number or ticket.ticket_id}.", correlation_id)

"""ticketing.services against the in-memory PSA with eager tasks: accepting incidents, the
ticket made once with the mapped values, following status and severity, notes sent once,
dedupe and the recurrence rule, waiting for a mapping or a resume, retries and failures,
claims, lost answers, the sweeper, and changes that came from the PSA."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
from django.utils import timezone

from integrations import services as integration_services
from integrations.base.errors import InvalidError, RateLimitedError, UnavailableError
from integrations.connectwise.ticketing import NO_DEFAULT_TEAM_MESSAGE, translate_create_error
from integrations.models import CompanyMapping, Connection, IntegrationLog
from ticketing import services, tasks
from ticketing.models import Incident, IncidentNote, Ticket, TicketingConfig
from tests.factories import make_tenant
from tests.fakes import memory

pytestmark = pytest.mark.django_db

SECRET = "mem-secret-tickets-51c0ffee"
# The memory PSA's board 1: New 10, Closed 11, and the others a real board would have.
STATUS_MAP = {"Open": "10", "Pending": "12", "Done": "11", "Snoozed": "13", "Canceled": "14", "Dismissed": "15"}
CLOSED_STATUSES = {"11", "14", "15"}
PRIORITY_MAP = {"Critical": "1", "High": "2", "Medium": "3", "Low": "4"}
Sync = Incident.Sync


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    """The limiter uses Django's cache: a private in-memory one per test."""


@pytest.fixture
def psa(memory_psa):
    """The memory PSA with its tickets, both fresh."""
    memory.tickets.reset()
    memory.tickets.closed_statuses = set(CLOSED_STATUSES)
    yield memory_psa
    memory.tickets.reset()


@pytest.fixture
def run(django_capture_on_commit_callbacks, eager_tasks):
    """run(fn, *args) -> fn's result, with the tasks it queued on commit run at once."""

    def call(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return call


@pytest.fixture
def linked(personas, psa, run):
    connection = run(
        integration_services.save_connection, personas.account_a, "connectwise", {"site": "acme.example.com"},
        {"api_key": SECRET},
    )  # fmt: skip
    connection.refresh_from_db()
    assert connection.status == Connection.Status.CONNECTED, connection.last_error
    return connection


@pytest.fixture
def config(personas, linked):
    return TicketingConfig.objects.create(
        account=personas.account_a, vendor="connectwise", board_id="1", board_name="Help Desk",
        status_map=dict(STATUS_MAP), priority_map=dict(PRIORITY_MAP), type_id="201", subtype_id="302",
        source_id="4", team_id="501",
    )  # fmt: skip


@pytest.fixture
def tenant(personas, config):
    """A tenant mapped to the PSA's company 2."""
    tenant = make_tenant(personas.account_a, name="Globex", external_id="globex")
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="2", company_name="Globex, Inc.")
    return tenant


@pytest.fixture
def unmapped(personas, config):
    return make_tenant(personas.account_a, name="Initech", external_id="initech")


@pytest.fixture
def report(personas, run, psa):
    """report(tenant, **fields) -> (incident, created): accepted, its delivery run, reloaded."""

    def call(tenant, **fields):
        data = {"title": "Suspicious sign-in", "details": "Impossible travel.", "severity": "High", **fields}
        incident, created = run(services.accept_incident, personas.account_a, tenant, data)
        incident.refresh_from_db()
        return incident, created

    return call


@contextlib.contextmanager
def worker_busy(sent: list | None = None):
    """Queued deliveries are recorded (or dropped) instead of run: the worker is busy or down."""
    with mock.patch.object(tasks.deliver_incident, "delay", lambda *args: sent.append(args) if sent is not None else None):
        yield sent


def calls(psa, name: str) -> list[tuple]:
    return psa.called(name)


def only_ticket() -> dict:
    assert len(memory.tickets.records) == 1, memory.tickets.records
    return next(iter(memory.tickets.records.values()))


def reload(incident: Incident) -> Incident:
    incident.refresh_from_db()
    return incident


# Accepting ---------------------------------------------------------------------------------------


def test_accept_stores_the_incident_before_anything_is_queued(personas, tenant, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(tasks.deliver_incident, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks() as callbacks:
        incident, created = services.accept_incident(
            personas.account_a, tenant, {"title": "Disk full", "severity": "Low", "dedupe_key": "disk-1"}
        )
        assert sent == []  # nothing leaves before the commit
        assert Incident.objects.get(pk=incident.pk).sync_state == Sync.PENDING
    assert created and len(callbacks) == 1
    callbacks[0]()
    assert len(sent) == 1 and sent[0][0] == incident.pk


def test_a_broker_that_is_down_does_not_fail_the_accept(personas, tenant, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks.deliver_incident, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        incident, created = services.accept_incident(personas.account_a, tenant, {"title": "x", "severity": "Low"})
    assert created
    assert reload(incident).sync_state == Sync.PENDING  # the sweeper queues it later


# Creating the ticket ------------------------------------------------------------------------------


def test_create_makes_the_ticket_with_the_mapped_company_board_status_priority_type_and_reference(report, tenant, psa):
    incident, created = report(
        tenant, title="Suspicious sign-in for jane@globex.example", details="Impossible travel: Sydney then Oslo.",
        severity="Critical", source_url="https://host.example/alerts/7", contact_email="jane@globex.example",
    )  # fmt: skip

    assert created
    ticket = only_ticket()
    assert ticket["reference"] == incident.reference == f"hub-{incident.account_id}-{incident.pk}"
    assert (ticket["company_id"], ticket["board_id"], ticket["status_id"], ticket["priority_id"]) == ("2", "1", "10", "1")
    assert (ticket["type_id"], ticket["subtype_id"], ticket["source_id"], ticket["team_id"]) == ("201", "302", "4", "501")
    assert ticket["summary"] == "Suspicious sign-in for jane@globex.example"
    assert ticket["description"].startswith("Impossible travel: Sydney then Oslo.")
    assert "https://host.example/alerts/7" in ticket["description"] and incident.reference in ticket["description"]
    assert ticket["contact_email"] == "jane@globex.example"

    assert incident.sync_state == Sync.SYNCED and incident.synced_at and incident.sync_error == ""
    assert incident.sync_claim == ""
    link = incident.ticket
    assert (link.ticket_id, link.number, link.reference) == (ticket["id"], ticket["number"], incident.reference)
    assert (link.status_id, link.priority_id, link.company_id, link.board_id) == ("10", "1", "2", "1")
    assert link.status_map == STATUS_MAP and link.closed_at is None
    # The first delivery cannot have sent a create before: it does not search (one call less
    # against the PSA's budget); only a later attempt looks for the reference first.
    assert calls(psa, "find_by_reference") == []
    assert len(calls(psa, "create")) == 1 and calls(psa, "update") == [] and calls(psa, "add_note") == []
    created_log = IntegrationLog.objects.get(action="ticket.create", subject=f"incident:{incident.pk}")
    assert created_log.message == f"Created ticket {ticket['number']} for incident #{incident.pk} on Help Desk."
    assert created_log.tenant == tenant and created_log.correlation_id
    # Each PSA request of the delivery is logged under the same correlation id.
    assert IntegrationLog.objects.filter(correlation_id=created_log.correlation_id, http_method="GET").count() == 1


def test_an_unmapped_tenant_goes_to_the_default_company(report, unmapped, config):
    config.default_company_id, config.default_company_name = "5", "Stark Industries"
    config.save()
    incident, _ = report(unmapped)
    assert only_ticket()["company_id"] == "5"
    assert incident.sync_state == Sync.SYNCED and incident.ticket.company_id == "5"


def test_a_severity_without_its_own_priority_uses_the_default_priority(report, tenant, config):
    config.priority_map, config.default_priority_id = {"Critical": "1"}, "3"
    config.save()
    report(tenant, severity="Low")
    assert only_ticket()["priority_id"] == "3"


def test_the_status_for_new_tickets_is_used_while_the_incident_is_open(personas, report, tenant, config, psa, run):
    """Autotask's "Status for new tickets" (seed 001): the ticket is made with it and keeps it
    until the incident's status changes; then the mapped statuses apply."""
    config.status_map = {**STATUS_MAP, "new": "16"}
    config.save()
    incident, _ = report(tenant)
    assert only_ticket()["status_id"] == "16"

    run(services.add_note, incident, "Still happening.")
    assert only_ticket()["status_id"] == "16" and calls(psa, "update") == []  # not "corrected" to Open's 10

    run(services.change_incident, incident, {"status": "Pending"})
    assert only_ticket()["status_id"] == "12"
    run(services.change_incident, incident, {"status": "Open"})
    assert only_ticket()["status_id"] == "10"


def test_an_incident_reported_already_done_gets_a_closed_ticket(report, tenant, config):
    config.status_map = {**STATUS_MAP, "new": "16"}
    config.save()
    incident, _ = report(tenant, status="Done")
    ticket = only_ticket()
    assert ticket["status_id"] == "11" and ticket["closed"]
    assert incident.ticket.closed_at is not None


# Following the incident -------------------------------------------------------------------------------


def test_a_status_change_updates_only_the_status(report, tenant, psa, run):
    incident, _ = report(tenant)
    run(services.change_incident, incident, {"status": "Pending"})
    assert calls(psa, "update") == [(only_ticket()["id"], "12", "")]
    assert only_ticket()["status_id"] == "12"
    incident = reload(incident)
    assert incident.sync_state == Sync.SYNCED and incident.ticket.status_id == "12"
    assert IntegrationLog.objects.filter(action="ticket.update", message__endswith="status → Pending.").count() == 1


def test_a_severity_change_updates_only_the_priority(report, tenant, psa, run):
    incident, _ = report(tenant, severity="Low")
    run(services.change_incident, incident, {"severity": "Critical"})
    assert calls(psa, "update") == [(only_ticket()["id"], "", "1")]
    assert only_ticket()["priority_id"] == "1" and reload(incident).ticket.priority_id == "1"


def test_a_change_to_the_same_values_writes_nothing(report, tenant, psa, run):
    incident, _ = report(tenant, severity="Low")
    run(services.change_incident, incident, {"status": "Open", "severity": "Low"})
    assert calls(psa, "update") == [] and calls(psa, "add_note") == [] and len(calls(psa, "create")) == 1


def test_new_details_reach_the_ticket_as_one_note(report, tenant, psa, run):
    incident, _ = report(tenant, severity="Low")
    run(services.change_incident, incident, {"details": "The rule also forwards to a second address."})
    run(services.change_incident, incident, {"details": "The rule also forwards to a second address."})  # same again
    assert calls(psa, "update") == [] and len(calls(psa, "create")) == 1
    [text] = memory.tickets.notes[incident.ticket.ticket_id]
    assert text.endswith("Details updated:\n\nThe rule also forwards to a second address.")
    assert reload(incident).details == "The rule also forwards to a second address."


@pytest.mark.parametrize("status", ["Done", "Canceled", "Dismissed"])
def test_closing_statuses_close_the_ticket_through_the_mapped_status(report, tenant, run, status):
    incident, _ = report(tenant)
    run(services.change_incident, incident, {"status": status})
    ticket = only_ticket()
    assert ticket["status_id"] == STATUS_MAP[status] and ticket["closed"]
    assert reload(incident).ticket.closed_at is not None

    run(services.change_incident, incident, {"status": "Open"})
    assert only_ticket()["status_id"] == "10" and not only_ticket()["closed"]
    assert reload(incident).ticket.closed_at is None


def test_an_existing_ticket_keeps_its_board_statuses_after_the_board_changes(report, tenant, config, run):
    """Seed 004: a new board applies to new tickets; existing ones follow their own board."""
    incident, _ = report(tenant)
    config.board_id, config.board_name = "2", "Projects"
    config.status_map = {status: str(200 + n) for n, status in enumerate(STATUS_MAP)}
    config.save()

    run(services.change_incident, incident, {"status": "Done"})
    assert memory.tickets.records[incident.ticket.ticket_id]["status_id"] == "11"  # board 1's Done

    other, _ = report(tenant, title="Another", dedupe_key="other")
    made = memory.tickets.records[other.ticket.ticket_id]
    assert made["board_id"] == "2" and made["status_id"] == "200"


# Notes --------------------------------------------------------------------------------------------


def test_notes_are_delivered_once(report, tenant, psa, run):
    incident, _ = report(tenant)
    note = run(services.add_note, incident, "Jane confirmed it was not her.")
    run(services.change_incident, incident, {"status": "Pending"})
    retried = run(services.retry_incident, incident)
    assert retried is None

    [text] = memory.tickets.notes[incident.ticket.ticket_id]
    assert text == f"[hub note {note.pk}] Jane confirmed it was not her."
    note.refresh_from_db()
    assert note.sending_at and note.delivered_at
    assert len(calls(psa, "add_note")) == 1 and calls(psa, "note_exists") == []


def test_a_long_note_keeps_its_marker_at_the_start(report, tenant, run):
    """Adapters shorten long notes from the end; the marker that finds a note again must survive."""
    incident, _ = report(tenant)
    note = run(services.add_note, incident, "x" * 100_000)
    [text] = memory.tickets.notes[incident.ticket.ticket_id]
    assert text.startswith(note.marker)


def test_a_note_added_before_the_ticket_exists_goes_out_after_the_create(personas, tenant, psa, run):
    with worker_busy():
        incident, _ = run(services.accept_incident, personas.account_a, tenant, {"title": "x", "severity": "Low"})
        run(services.add_note, incident, "First note.")
    run(services.retry_incident, incident)
    assert memory.tickets.notes[reload(incident).ticket.ticket_id] == [
        f"[hub note {incident.notes.get().pk}] First note."
    ]


# Dedupe and recurrence ---------------------------------------------------------------------------------


def test_a_repeat_while_open_adds_a_note_instead_of_a_ticket(report, tenant):
    first, created = report(tenant, dedupe_key="mailbox-rule:jane")
    again, created_again = report(tenant, dedupe_key="mailbox-rule:jane")
    third, _ = report(tenant, dedupe_key="mailbox-rule:jane")

    assert created and not created_again
    assert first.pk == again.pk == third.pk and third.occurrences == 3
    assert Incident.objects.count() == 1 and len(memory.tickets.records) == 1
    notes = memory.tickets.notes[first.ticket.ticket_id]
    assert len(notes) == 2
    assert "Seen again at " in notes[0] and notes[0].endswith("count 2.")
    assert notes[1].endswith("count 3.")


def test_a_repeat_before_the_ticket_exists_is_counted_and_noted_once_it_does(personas, tenant, run):
    data = {"title": "x", "severity": "Low", "dedupe_key": "k"}
    with worker_busy():
        first, _ = run(services.accept_incident, personas.account_a, tenant, data)
        run(services.accept_incident, personas.account_a, tenant, data)
    run(services.retry_incident, first)
    assert len(memory.tickets.records) == 1
    assert len(memory.tickets.notes[reload(first).ticket.ticket_id]) == 1


def test_the_same_dedupe_key_for_another_tenant_is_another_incident(report, tenant, personas):
    other = make_tenant(personas.account_a, name="Other", external_id="other")
    CompanyMapping.objects.create(account=personas.account_a, tenant=other, company_id="3")
    report(tenant, dedupe_key="k")
    _, created = report(other, dedupe_key="k")
    assert created and len(memory.tickets.records) == 2


def test_a_repeat_soon_after_the_close_reopens_the_ticket(report, tenant, run, psa):
    incident, _ = report(tenant, dedupe_key="k")
    run(services.change_incident, incident, {"status": "Done"})
    assert only_ticket()["closed"]

    again, created = report(tenant, dedupe_key="k")

    assert not created and again.pk == incident.pk
    assert again.status == "Open" and again.occurrences == 2
    ticket = only_ticket()
    assert ticket["status_id"] == "10" and not ticket["closed"]
    assert again.ticket.closed_at is None
    [note] = memory.tickets.notes[ticket["id"]]
    assert "count 2" in note and "reopened" in note


def test_a_repeat_after_the_reopen_window_opens_a_new_ticket(report, tenant, config, run):
    config.reopen_within_hours = 2
    config.save()
    incident, _ = report(tenant, dedupe_key="k")
    run(services.change_incident, incident, {"status": "Done"})
    Ticket.objects.filter(pk=incident.ticket_id).update(closed_at=timezone.now() - timezone.timedelta(hours=3))

    again, created = report(tenant, dedupe_key="k")

    assert created and again.pk != incident.pk
    assert len(memory.tickets.records) == 2 and again.ticket_id != incident.ticket_id
    assert memory.tickets.records[reload(incident).ticket.ticket_id]["closed"]


# Waiting: mapping, pause ------------------------------------------------------------------------------


def test_an_unmapped_tenant_without_default_company_waits_for_its_mapping(personas, report, unmapped, run, psa):
    incident, created = report(unmapped)

    assert created and incident.sync_state == Sync.NEEDS_MAPPING
    assert "Initech" in incident.sync_error and "Map tenants" in incident.sync_error
    assert memory.tickets.records == {}
    logged = IntegrationLog.objects.get(action="ticket.sync", subject=f"incident:{incident.pk}")
    assert logged.outcome == IntegrationLog.Outcome.ERROR and "not mapped" in logged.message

    run(integration_services.map_tenant, personas.account_a, unmapped, "3", "Initech LLC")

    incident = reload(incident)
    assert incident.sync_state == Sync.SYNCED and incident.sync_error == ""
    assert only_ticket()["company_id"] == "3"


def test_a_paused_integration_holds_incidents_and_sends_them_in_order_on_resume(report, tenant, linked, run):
    integration_services.set_paused(linked, paused=True)
    held = [report(tenant, title=f"Incident {n}", dedupe_key=f"k{n}")[0] for n in range(3)]

    assert [i.sync_state for i in held] == [Sync.HELD] * 3
    assert memory.tickets.records == {}
    assert IntegrationLog.objects.filter(action="ticket.sync", outcome=IntegrationLog.Outcome.SKIPPED).count() == 3

    run(integration_services.set_paused, linked, paused=False)

    made = sorted(memory.tickets.records.values(), key=lambda t: int(t["id"]))
    assert [t["summary"] for t in made] == ["Incident 0", "Incident 1", "Incident 2"]
    assert [reload(i).sync_state for i in held] == [Sync.SYNCED] * 3


# Failures -------------------------------------------------------------------------------------------------


def test_a_transient_error_is_retried_with_backoff_then_failed_and_retry_works(report, tenant, psa, run, monkeypatch):
    waits = []
    countdown = tasks.retry_countdown
    monkeypatch.setattr(tasks, "retry_countdown", lambda retries, exc: waits.append(countdown(retries, exc)) or 0)
    psa.mode = "unavailable"

    incident, _ = report(tenant)

    attempts = tasks.DELIVERY_RETRIES + 1
    assert incident.sync_state == Sync.FAILED and incident.sync_attempts == attempts
    assert incident.sync_error.startswith("Could not reach Memory PSA at acme.example.com")
    assert incident.sync_error.endswith(f"(gave up after {attempts} attempts)")
    assert waits == [15, 30, 60, 120, 240, 480]
    # The first attempt goes straight to create; every retry looks for the reference first.
    assert len(calls(psa, "create")) == 1 and len(calls(psa, "find_by_reference")) == attempts - 1
    assert memory.tickets.records == {}
    failed_log = IntegrationLog.objects.get(action="ticket.sync", http_method="", subject=f"incident:{incident.pk}")
    assert failed_log.outcome == IntegrationLog.Outcome.ERROR and "gave up" in failed_log.message

    psa.mode = "ok"
    run(services.retry_incident, incident)

    incident = reload(incident)
    assert incident.sync_state == Sync.SYNCED and incident.sync_error == ""
    assert only_ticket()["reference"] == incident.reference


def test_a_transient_error_that_clears_is_retried_into_success(report, tenant, psa):
    psa.mode, psa.failures = "rate_limited", 2
    incident, _ = report(tenant)
    assert incident.sync_state == Sync.SYNCED and len(memory.tickets.records) == 1


def test_retry_countdown():
    assert [tasks.retry_countdown(n, UnavailableError("down")) for n in range(8)] == [15, 30, 60, 120, 240, 480, 600, 600]
    assert tasks.retry_countdown(3, RateLimitedError("slow", retry_after=42)) == 42
    assert tasks.retry_countdown(0, RateLimitedError("slow")) == 15


def test_a_permanent_error_fails_at_once_with_the_translated_message(report, tenant, psa):
    said = "InvalidObject: ticket object is invalid - Cannot find default team for board specified (field: board)"
    memory.tickets.refuse["create"] = translate_create_error(InvalidError("refused", status=400, vendor_message=said))

    incident, _ = report(tenant)

    assert incident.sync_state == Sync.FAILED and incident.sync_attempts == 1
    assert incident.sync_error == NO_DEFAULT_TEAM_MESSAGE.format(said=said)
    assert "set an active Default Team, then retry" in incident.sync_error
    assert len(calls(psa, "create")) == 1
    assert IntegrationLog.objects.filter(action="ticket.sync", outcome="error", message__contains="Default Team").exists()


def test_a_psa_validation_error_shows_the_field_and_the_message(report, tenant):
    said = "InvalidObject: ticket object is invalid - The field summary must be a string (field: summary)"
    memory.tickets.refuse["create"] = translate_create_error(InvalidError("refused", status=400, vendor_message=said))
    incident, _ = report(tenant)
    assert incident.sync_state == Sync.FAILED
    assert incident.sync_error == f"ConnectWise could not create the ticket: {said}"


def test_an_incomplete_status_mapping_fails_naming_the_missing_statuses(report, tenant, config, psa):
    config.status_map = {k: v for k, v in STATUS_MAP.items() if k not in {"Snoozed", "Dismissed"}}
    config.save()
    incident, _ = report(tenant)
    assert incident.sync_state == Sync.FAILED
    assert "status mapping for Help Desk is incomplete" in incident.sync_error
    assert "Snoozed, Dismissed" in incident.sync_error
    assert calls(psa, "create") == []


def test_no_ticketing_setup_or_no_connection_fails_with_the_fix(personas, report, tenant, config, linked):
    config.delete()
    incident, _ = report(tenant)
    assert incident.sync_state == Sync.FAILED and "Ticketing page" in incident.sync_error
    Connection.objects.filter(pk=linked.pk).update(status=Connection.Status.FAILED)
    other, _ = report(tenant, dedupe_key="other")
    assert other.sync_state == Sync.FAILED and "link one under Integrations" in other.sync_error


def test_an_unexpected_error_fails_with_a_reference_and_no_secret(report, tenant, psa):
    psa.mode = "crash"  # a RuntimeError whose text holds the API key
    incident, _ = report(tenant)
    assert incident.sync_state == Sync.FAILED
    assert incident.sync_error.startswith("Something went wrong in the hub (reference ")
    assert SECRET not in incident.sync_error
    assert not IntegrationLog.objects.filter(message__contains=SECRET).exists()


# Claims -------------------------------------------------------------------------------------------------


@pytest.fixture
def waiting(personas, tenant, run):
    """An accepted incident whose task has not run (the worker is busy)."""
    with worker_busy():
        incident, _ = run(services.accept_incident, personas.account_a, tenant, {"title": "x", "severity": "High"})
    return incident


def test_a_second_delivery_with_another_claim_does_nothing(waiting, psa):
    assert services.claim(waiting.pk, "task-a")
    psa.calls.clear()
    assert services.deliver(waiting.pk, "task-b", "cid") is None
    assert psa.calls == [] and memory.tickets.records == {}
    assert reload(waiting).sync_claim == "task-a"


def test_a_redelivered_task_with_the_same_claim_continues(waiting, psa):
    assert services.claim(waiting.pk, "task-a")  # then its worker was killed mid-call
    assert services.deliver(waiting.pk, "task-a", "cid") == Sync.SYNCED
    assert len(memory.tickets.records) == 1
    # A redelivery may follow a create whose answer was lost: it looks for the reference first.
    assert len(calls(psa, "find_by_reference")) == 1
    assert reload(waiting).sync_claim == ""


def test_a_change_while_a_delivery_holds_the_claim_does_not_let_a_second_one_in(waiting, psa, run):
    """The change's own task must not run beside the delivery that is creating the ticket."""
    assert services.claim(waiting.pk, "task-a")
    run(services.change_incident, waiting, {"status": "Pending"})  # its task runs now, eagerly
    run(services.add_note, waiting, "A note")
    assert memory.tickets.records == {}
    incident = reload(waiting)
    assert incident.sync_state == Sync.PENDING and incident.sync_claim == "task-a"

    assert services.deliver(waiting.pk, "task-a", "cid") == Sync.SYNCED
    ticket = only_ticket()
    assert ticket["status_id"] == "12" and len(memory.tickets.notes[ticket["id"]]) == 1


def test_an_expired_claim_is_taken_over(waiting, psa):
    assert services.claim(waiting.pk, "dead-worker")
    Incident.objects.filter(pk=waiting.pk).update(sync_claimed_at=timezone.now() - services.CLAIM_LEASE - timezone.timedelta(seconds=1))
    assert services.deliver(waiting.pk, "task-b", "cid") == Sync.SYNCED
    assert len(memory.tickets.records) == 1


def test_a_change_during_the_delivery_sends_the_delivery_round_again(waiting, psa, run):
    memory.tickets.before["create"] = lambda draft: services.change_incident(waiting, {"status": "Pending", "severity": "Low"})
    assert run(services.deliver, waiting.pk, "task-a", "cid") == Sync.SYNCED
    ticket = only_ticket()
    assert (ticket["status_id"], ticket["priority_id"]) == ("12", "4")
    incident = reload(waiting)
    assert incident.sync_state == Sync.SYNCED and incident.ticket.status_id == "12"


def test_a_delivery_that_keeps_changing_hands_over_to_a_new_task(waiting, psa, run, monkeypatch):
    monkeypatch.setattr(services, "MAX_ROUNDS", 1)
    memory.tickets.before["create"] = lambda draft: services.change_incident(waiting, {"status": "Pending"})
    assert run(services.deliver, waiting.pk, "task-a", "cid") == Sync.PENDING
    # The new task (run on commit) brought the ticket in step.
    assert only_ticket()["status_id"] == "12" and reload(waiting).sync_state == Sync.SYNCED


def test_a_finished_delivery_redelivered_does_nothing(waiting, psa):
    assert services.deliver(waiting.pk, "task-a", "cid") == Sync.SYNCED
    psa.calls.clear()
    assert services.deliver(waiting.pk, "task-a", "cid") is None
    assert psa.calls == []


# Lost answers ---------------------------------------------------------------------------------------


def test_a_create_whose_answer_was_lost_is_found_by_reference_not_made_twice(report, tenant, psa):
    memory.tickets.lose_answer["create"] = 1  # the ticket is made, the answer never comes back

    incident, _ = report(tenant)

    assert len(calls(psa, "create")) == 1 and len(calls(psa, "find_by_reference")) == 1
    ticket = only_ticket()
    assert incident.sync_state == Sync.SYNCED and incident.ticket.ticket_id == ticket["id"]
    assert IntegrationLog.objects.filter(action="ticket.create", message__startswith=f"Found ticket {ticket['number']}").exists()


def test_a_note_whose_answer_was_lost_is_not_sent_twice(report, tenant, psa, run):
    incident, _ = report(tenant)
    memory.tickets.lose_answer["add_note"] = 1
    note = run(services.add_note, incident, "Password reset done.")
    assert len(calls(psa, "add_note")) == 1 and len(calls(psa, "note_exists")) == 1
    assert memory.tickets.notes[incident.ticket.ticket_id] == [f"{note.marker} Password reset done."]
    note.refresh_from_db()
    assert note.delivered_at is not None and reload(incident).sync_state == Sync.SYNCED


def test_a_note_that_never_left_is_sent_on_the_retry(report, tenant, psa, run):
    incident, _ = report(tenant)
    psa.mode, psa.failures = "unavailable", 1  # refused before it went out
    run(services.add_note, incident, "Second try.")
    assert len(memory.tickets.notes[incident.ticket.ticket_id]) == 1
    assert IncidentNote.objects.get().delivered_at is not None


# The sweeper --------------------------------------------------------------------------------------------


@pytest.fixture
def backlog(monkeypatch):
    """The broker's psa queue length as the sweeper sees it (empty unless a test sets it)."""
    length = {"psa": 0}
    monkeypatch.setattr(services, "broker_backlog", lambda queue="psa": length[queue])
    return length


def test_sweep_requeues_stale_pending_and_expired_syncing_incidents(personas, tenant, run, psa, backlog):
    data = {"severity": "Low"}
    with worker_busy():
        stale, _ = run(services.accept_incident, personas.account_a, tenant, {**data, "title": "stale"})
        fresh, _ = run(services.accept_incident, personas.account_a, tenant, {**data, "title": "fresh"})
        stuck, _ = run(services.accept_incident, personas.account_a, tenant, {**data, "title": "stuck"})
        busy, _ = run(services.accept_incident, personas.account_a, tenant, {**data, "title": "busy"})
    old = timezone.now() - timezone.timedelta(minutes=6)
    Incident.objects.filter(pk=stale.pk).update(sync_requested_at=old)
    expired = timezone.now() - services.CLAIM_LEASE - timezone.timedelta(seconds=5)
    Incident.objects.filter(pk=stuck.pk).update(sync_state=Sync.SYNCING, sync_claim="dead", sync_claimed_at=expired, sync_requested_at=old)
    Incident.objects.filter(pk=busy.pk).update(sync_state=Sync.SYNCING, sync_claim="alive", sync_claimed_at=timezone.now(), sync_requested_at=old)
    with worker_busy([]) as sent:
        assert run(services.sweep) == 2
    assert [args[0] for args in sent] == [stale.pk, stuck.pk]
    assert reload(stale).sync_requested_at > old

    Incident.objects.filter(pk__in=[stale.pk, stuck.pk]).update(sync_requested_at=old)
    assert run(tasks.sweep) == 2  # through the beat task, eagerly delivering
    assert {t["summary"] for t in memory.tickets.records.values()} == {"stale", "stuck"}
    assert reload(busy).sync_claim == "alive"


# Changes from the PSA ------------------------------------------------------------------------------------


def test_a_change_from_the_psa_is_not_sent_back(report, tenant, psa, run, django_capture_on_commit_callbacks):
    incident, _ = report(tenant)
    ticket = only_ticket()
    ticket.update(status_id="11", closed=True)  # a technician closed it in the PSA

    with django_capture_on_commit_callbacks() as callbacks:
        services.change_incident(incident, {"status": "Done"}, source="psa")
    assert callbacks == []
    incident = reload(incident)
    assert incident.status == "Done" and incident.status_source == "psa" and incident.sync_state == Sync.SYNCED
    assert incident.ticket.status_id == "11" and incident.ticket.closed_at is not None

    run(services.add_note, incident, "Closed by the technician.")  # a later delivery
    assert calls(psa, "update") == []
    assert len(memory.tickets.notes[ticket["id"]]) == 1


def test_with_a_backlog_in_the_broker_waiting_incidents_are_left_to_it(personas, tenant, run, psa, backlog):
    """Their messages are most likely still queued: a copy each would double a long queue."""
    with worker_busy():
        waiting, _ = run(services.accept_incident, personas.account_a, tenant, {"title": "waiting", "severity": "Low"})
        forgotten, _ = run(services.accept_incident, personas.account_a, tenant, {"title": "forgotten", "severity": "Low"})
        stuck, _ = run(services.accept_incident, personas.account_a, tenant, {"title": "stuck", "severity": "Low"})
    now = timezone.now()
    Incident.objects.filter(pk=waiting.pk).update(sync_requested_at=now - timezone.timedelta(minutes=6))
    Incident.objects.filter(pk=forgotten.pk).update(sync_requested_at=now - timezone.timedelta(minutes=31))
    Incident.objects.filter(pk=stuck.pk).update(
        sync_state=Sync.SYNCING, sync_claim="dead", sync_claimed_at=now - services.CLAIM_LEASE - timezone.timedelta(seconds=1),
        sync_requested_at=now - services.CLAIM_LEASE - timezone.timedelta(seconds=2),
    )
    backlog["psa"] = 500

    with worker_busy([]) as sent:
        assert run(services.sweep) == 2
    assert sorted(args[0] for args in sent) == sorted([forgotten.pk, stuck.pk])

    backlog["psa"] = 0  # the queue drained: what still waits was lost
    with worker_busy([]) as sent:
        assert run(services.sweep) == 1
    # The stuck one was queued a moment ago: not again before SWEEP_AFTER.
    assert [args[0] for args in sent] == [waiting.pk]


def test_broker_backlog_reads_the_queue_length():
    assert services.broker_backlog() >= 0


def test_without_any_priority_mapped_the_psa_default_priority_applies(report, tenant, config):
    """A Halo ticket type without an SLA offers no priorities; ConnectWise's is optional (seed 000)."""
    config.priority_map, config.default_priority_id = {}, ""
    config.save()
    incident, _ = report(tenant, severity="High")
    assert incident.sync_state == Sync.SYNCED
    assert only_ticket()["priority_id"] == ""


def test_a_partial_priority_mapping_names_the_missing_severity(report, tenant, config):
    config.priority_map, config.default_priority_id = {"Critical": "1"}, ""
    config.save()
    incident, _ = report(tenant, severity="Low")
    assert incident.sync_state == Sync.FAILED
    assert incident.sync_error == "No PSA priority is mapped for severity Low on the Ticketing page."

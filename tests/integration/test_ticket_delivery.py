"""Incidents become tickets in each vendor's HTTP fake, through the live web server and a real
Celery worker process: link, configure ticketing from the fake's own lists, post incidents with
an API key, and find the tickets on the mapped board/queue with the mapped status, priority and
company; the ticket follows status changes, notes and repeats. Then exactly once: the worker's
pool processes are killed (kill -9) in the middle of creates, and every incident still has
exactly one ticket; and a worker that died with its claims is taken over after the lease.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from integrations import services as integration_services
from integrations.models import IntegrationLog
from ticketing import services
from ticketing.models import Incident, TicketingConfig
from tests.fakes.tickets import VENDORS, fake_notes, fake_tickets, forget_earlier_tickets
from tests.flows import POLL, link_and_configure, names_to_ids, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _only_this_tests_tickets(psas):
    forget_earlier_tickets(psas)


# --- the flow, for each vendor -----------------------------------------------------------------------


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_incidents_become_tickets_that_follow_the_incident(vendor, hub, psas, personas, transactional_db):
    account = personas.account_a
    connection, config, expected = link_and_configure(vendor, hub, psas, account)
    tenant = f"globex-{vendor}"

    posted = [hub.report(tenant=tenant, title=f"{severity} alert", severity=severity, dedupe_key=f"alert-{severity}",
                         details="Mailbox rule forwarding to an outside address.")
              for severity in ("Critical", "High", "Low")]  # fmt: skip
    assert all(p["sync"]["state"] == "pending" and p["ticket"] is None for p in posted), "the API answers at once"

    for incident in posted:
        body = hub.wait_synced(incident["id"])
        reference = f"hub-{account.pk}-{incident['id']}"
        [ticket] = wait_for(lambda r=reference: fake_tickets(psas, vendor).get(r), f"the ticket {reference}")
        assert body["ticket"]["id"] == ticket.id
        first_status = config.status_map.get("new") or config.status_map["Open"]
        assert (ticket.board, ticket.company, ticket.status) == (expected["board"], expected["company"], first_status)
        assert ticket.priority == config.priority_map[incident["severity"]]
    assert sum(len(v) for v in fake_tickets(psas, vendor).values()) == 3

    # The ticket follows the incident's status, then closes through the mapped status.
    critical = posted[0]
    ticket_id = hub.incident(critical["id"])["ticket"]["id"]
    reference = f"hub-{account.pk}-{critical['id']}"

    def ticket_now():
        return fake_tickets(psas, vendor)[reference][0]

    hub.call("PATCH", f"incidents/{critical['id']}/", {"status": "Pending", "severity": "Medium"})
    wait_for(lambda: ticket_now().status == config.status_map["Pending"], "the ticket's status follows", worker=hub.worker)
    assert ticket_now().priority == config.priority_map["Medium"]
    hub.call("PATCH", f"incidents/{critical['id']}/", {"status": "Done"})
    wait_for(lambda: ticket_now().closed, "the ticket closes", worker=hub.worker)
    assert ticket_now().status == config.status_map["Done"]
    assert hub.wait_synced(critical["id"])["ticket"]["closed"] is True

    # A note, and a repeat of an open incident: notes on its ticket, no new ticket.
    high = posted[1]
    high_ticket = hub.incident(high["id"])["ticket"]["id"]
    hub.call("POST", f"incidents/{high['id']}/notes/", {"text": "Jane confirmed it was not her."}, expect=202)
    again = hub.report(tenant=tenant, title="High alert", severity="High", dedupe_key="alert-High")
    assert again["deduplicated"] is True and again["id"] == high["id"] and again["occurrences"] == 2

    def notes():
        found = [n for n in fake_notes(psas, vendor, high_ticket) if "[hub note " in n]
        return found if len(found) == 2 else None

    texts = wait_for(notes, "two notes on the ticket", worker=hub.worker)
    assert any("Jane confirmed it was not her." in n for n in texts)
    assert any("Seen again at " in n and "count 2" in n for n in texts)
    # What a retry after a lost answer asks before sending a note again, answered by the PSA.
    adapter = integration_services.build_provider(connection, action="test.notes", correlation_id="test").ticketing()
    marker = Incident.objects.get(pk=high["id"]).notes.order_by("id").first().marker
    assert adapter.note_exists(high_ticket, marker) is True
    assert adapter.note_exists(high_ticket, "[hub note 987654321]") is False
    hub.wait_synced(high["id"])
    assert sum(len(v) for v in fake_tickets(psas, vendor).values()) == 3
    assert ticket_id and all(len(v) == 1 for v in fake_tickets(psas, vendor).values())
    assert Incident.objects.filter(account=account).count() == 3


def test_a_board_without_default_team_fails_with_the_seed_000_fix_and_retry_works(hub, psas, personas, transactional_db):
    account = personas.account_a
    connection, config, _ = link_and_configure("connectwise", hub, psas, account)
    statuses = names_to_ids(connection, "statuses", "3")  # "No Default Team": New, Done
    TicketingConfig.objects.filter(pk=config.pk).update(
        board_id="3", board_name="No Default Team",
        status_map={"Open": statuses["New"], "Pending": statuses["New"], "Snoozed": statuses["New"],
                    "Done": statuses["Done"], "Canceled": statuses["Done"], "Dismissed": statuses["Done"]},
    )  # fmt: skip

    posted = hub.report(tenant="globex-connectwise")

    def failed():
        body = hub.incident(posted["id"])
        return body if body["sync"]["state"] == "failed" else None

    body = wait_for(failed, "the incident fails", worker=hub.worker)
    assert "Service Board has no Default Team" in body["sync"]["error"]
    assert "Cannot find default team for board specified" in body["sync"]["error"]
    assert body["sync"]["attempts"] == 1, "a permanent refusal is not retried"

    TicketingConfig.objects.filter(pk=config.pk).update(board_id=config.board_id, board_name=config.board_name,
                                                        status_map=config.status_map)  # fmt: skip
    hub.call("POST", f"incidents/{posted['id']}/retry/", expect=202)
    assert hub.wait_synced(posted["id"])["ticket"]["id"]
    assert len(fake_tickets(psas, "connectwise")) == 1


# --- exactly once ------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] not in "ZX":
                found.append(int(entry.name))
    return found


@pytest.fixture
def create_arrivals(psas):
    """An event set whenever a ticket create reaches the ConnectWise fake (before its latency)."""
    fake = psas.connectwise
    arrived = threading.Event()
    original = fake.handle

    def handle(method, target, headers, raw, host):
        if method == "POST" and target.split("?")[0].rstrip("/").endswith("service/tickets"):
            arrived.set()
        return original(method, target, headers, raw, host)

    fake.handle = handle
    yield arrived
    del fake.handle


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the pool processes through /proc")
def test_pool_processes_killed_mid_create_leave_exactly_one_ticket_per_incident(
    hub, psas, personas, transactional_db, worker_process, create_arrivals
):
    account = personas.account_a
    link_and_configure("connectwise", hub, psas, account)
    psas.connectwise.latency_ms = 1200  # every PSA call is slow: a kill lands in the middle of one
    killed = 0
    posted = [hub.report(tenant="globex-connectwise", title=f"Alert {n}", dedupe_key=f"a{n}") for n in range(8)]

    # Once: killing the replacements again while billiard is still reaping the first ones can
    # leave the embedded broker's pool without a process (the whole-worker kills are in
    # `make bench-tickets`). The package's worker must stay usable for the tests after this one.
    assert create_arrivals.wait(30), f"no create reached the fake\n{worker_process.log_tail()}"
    time.sleep(0.3)  # both pool processes are inside a call now
    for pid in _children(worker_process.process.pid):
        os.kill(pid, signal.SIGKILL)
        killed += 1
    assert killed >= 2

    # Redis gives the killed processes' messages back at once (late ack, reject on worker lost).
    # The embedded filesystem broker sometimes cannot: those incidents keep the dead process's
    # claim until its lease runs out and the sweeper queues them again (simulated: no 10 minutes).
    def all_synced():
        return not Incident.objects.filter(account=account).exclude(sync_state=Incident.Sync.SYNCED).exists()

    deadline = time.monotonic() + 60
    while not all_synced() and time.monotonic() < deadline:
        time.sleep(POLL)
    if not all_synced():
        stuck = Incident.objects.filter(account=account, sync_state=Incident.Sync.SYNCING)
        assert not settings.REDIS_URL, f"Redis did not redeliver: {list(stuck.values('pk', 'sync_claim'))}"
        long_ago = timezone.now() - services.CLAIM_LEASE - services.SWEEP_AFTER
        stuck.update(sync_claimed_at=long_ago, sync_requested_at=long_ago)
        assert services.sweep() >= 1
    for incident in posted:
        hub.wait_synced(incident["id"], timeout=60)
    tickets = fake_tickets(psas, "connectwise")
    references = {f"hub-{account.pk}-{p['id']}" for p in posted}
    assert set(tickets) == references, "a ticket for every incident, and none other"
    assert [r for r, found in tickets.items() if len(found) > 1] == [], "no duplicates"
    # The lost creates were found again by their reference, not sent twice.
    found_again = IntegrationLog.objects.filter(account=account, action="ticket.create", message__startswith="Found ticket")
    assert found_again.exists(), worker_process.log_tail(80)
    assert worker_process.process.poll() is None, "the worker itself stays up and replaces its pool processes"


def test_a_claim_left_by_a_dead_worker_is_taken_over_after_the_lease_without_a_duplicate(
    hub, psas, personas, transactional_db, worker_process
):
    """The whole worker died during a create (its message is not redelivered before the broker's
    visibility timeout): the sweeper queues the incident once the claim's lease ran out, and the
    new delivery finds the ticket the dead one made."""
    account = personas.account_a
    connection, config, expected = link_and_configure("connectwise", hub, psas, account)
    posted = hub.report(tenant="globex-connectwise")
    hub.wait_synced(posted["id"])
    reference = f"hub-{account.pk}-{posted['id']}"
    [made] = fake_tickets(psas, "connectwise")[reference]

    # As the dead worker left it: the ticket made in the PSA, the answer lost, the claim held.
    incident = Incident.objects.get(pk=posted["id"])
    Incident.objects.filter(pk=incident.pk).update(
        ticket=None, sync_state=Incident.Sync.SYNCING, sync_claim="dead-worker-task",
        sync_claimed_at=timezone.now() - services.CLAIM_LEASE - timezone.timedelta(seconds=5),
        sync_requested_at=timezone.now() - services.SWEEP_AFTER - timezone.timedelta(seconds=5),
    )  # fmt: skip
    incident.ticket.delete()

    assert services.sweep() == 1  # what beat runs every minute

    body = hub.wait_synced(posted["id"])
    assert body["ticket"]["id"] == made.id
    assert fake_tickets(psas, "connectwise")[reference] == [made]
    assert IntegrationLog.objects.filter(account=account, action="ticket.create", message__startswith="Found ticket").exists()

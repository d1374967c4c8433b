"""Two-way status sync (issue 7) against the in-memory PSA: the inbound rules of
ticketing.inbound (unknown ticket, stale and replayed reports, echoes, unmapped statuses,
ambiguous mappings), the webhook and callback views (wrong secret, huge and malformed bodies),
the host product's signed webhook with retries, the fallback to polling, and the API/page."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.urls import reverse

from integrations import services as integration_services
from integrations.models import CompanyMapping, Connection, IntegrationLog
from ticketing import services, tasks
from ticketing.sync import host, inbound, polling, registration
from ticketing.models import HostDelivery, HostDeliveryAttempt, Incident, StatusSync, Ticket, TicketingConfig, WebhookReceipt
from tests.factories import make_tenant
from tests.fakes import memory

pytestmark = pytest.mark.django_db

SECRET = "mem-secret-sync-51c0ffee"
STATUS_MAP = {"Open": "10", "Pending": "12", "Done": "11", "Snoozed": "12", "Canceled": "11", "Dismissed": "15"}
PRIORITY_MAP = {"Critical": "1", "High": "2", "Medium": "3", "Low": "4"}
HOST_SECRET = "host-signing-secret-0123456789"
T0 = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    pass


@pytest.fixture(autouse=True)
def _no_registration(monkeypatch):
    """Registration is tested on its own; here linking must not reach for the PSA's webhooks."""
    monkeypatch.setattr(registration, "queue_registration", lambda connection: None)


@pytest.fixture
def run(django_capture_on_commit_callbacks, eager_tasks):
    def call(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return call


@pytest.fixture
def psa(memory_psa):
    memory.tickets.reset()
    memory.tickets.closed_statuses = {"11", "15"}
    yield memory_psa
    memory.tickets.reset()


@pytest.fixture
def world(personas, psa, run):
    """Account A linked to the memory PSA (as "connectwise"), configured, one incident with its ticket."""
    account = personas.account_a
    connection = run(integration_services.save_connection, account, "connectwise", {"site": "acme.example.com"}, {"api_key": SECRET})
    connection.refresh_from_db()
    assert connection.status == Connection.Status.CONNECTED
    TicketingConfig.objects.create(account=account, vendor="connectwise", board_id="1", board_name="Help Desk",
                                   status_map=dict(STATUS_MAP), priority_map=dict(PRIORITY_MAP))
    tenant = make_tenant(account, name="Globex", external_id="globex")
    CompanyMapping.objects.create(account=account, tenant=tenant, company_id="2", company_name="Globex")
    incident, _ = run(services.accept_incident, account, tenant, {"title": "Alert", "severity": "High"})
    incident.refresh_from_db()
    assert incident.sync_state == Incident.Sync.SYNCED and incident.ticket is not None
    return account, connection, incident


def ticket_of(incident) -> Ticket:
    return Ticket.objects.get(pk=Incident.objects.get(pk=incident.pk).ticket_id)


def logs(account, action=None):
    rows = IntegrationLog.objects.filter(account=account, http_method="")
    return [r for r in rows if action is None or r.action.startswith(action)]


def updates(psa) -> list:
    return psa.called("update")


# --- the inbound rules ------------------------------------------------------------------------------


def test_a_psa_status_change_changes_the_incident_and_is_not_sent_back(world, psa, run):
    account, _, incident = world
    ticket = ticket_of(incident)
    before = len(updates(psa))
    outcome = run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "11", T0, "test")
    assert outcome == inbound.APPLIED
    incident.refresh_from_db()
    assert (incident.status, incident.status_source) == ("Done", "psa")
    ticket.refresh_from_db()
    assert ticket.status_id == "11" and ticket.closed_at is not None and ticket.psa_changed_at == T0
    assert len(updates(psa)) == before, "the change is not written back to the PSA"
    # A later delivery of the incident (a note) does not write the status back either.
    run(services.add_note, incident, "checked")
    assert len(updates(psa)) == before
    [row] = [r for r in logs(account, "ticket.inbound") if r.subject == f"incident:{incident.pk}" and "Open → Done" in r.message]
    assert row.outcome == "ok"


def test_an_older_report_never_overwrites_a_newer_one_and_replays_are_no_ops(world, run):
    account, _, incident = world
    ticket = ticket_of(incident)
    assert run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "12", T0 + timedelta(minutes=5), "t") == inbound.APPLIED
    # Out of order: a report from before that change arrives late.
    assert run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "11", T0, "t") == inbound.STALE
    incident.refresh_from_db()
    assert incident.status == "Pending"
    # The same report again (a replayed delivery): nothing changes.
    assert run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "12", T0 + timedelta(minutes=5), "t") == inbound.ECHO
    assert Incident.objects.get(pk=incident.pk).status == "Pending"
    assert any("older than the change already applied" in r.message for r in logs(account, "ticket.inbound"))


def test_unknown_ticket_is_ignored_and_logged(world, run):
    account, _, incident = world
    assert run(inbound.apply_ticket_status, account, "connectwise", "999999", "11", T0, "t") == inbound.UNKNOWN_TICKET
    assert Incident.objects.get(pk=incident.pk).status == "Open"
    assert any("not one the hub made" in r.message and r.outcome == "skipped" for r in logs(account, "ticket.inbound"))


def test_unmapped_status_is_logged_not_applied(world, run):
    account, _, incident = world
    ticket = ticket_of(incident)
    assert run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "77", T0, "t") == inbound.UNMAPPED
    assert Incident.objects.get(pk=incident.pk).status == "Open"
    assert ticket_of(incident).status_id == ticket.status_id
    [row] = [r for r in logs(account, "ticket.inbound") if "77" in r.message]
    assert row.outcome == "error" and row.subject == f"incident:{incident.pk}"


def test_the_hubs_own_change_coming_back_is_a_no_op(world, psa, run):
    account, _, incident = world
    run(services.change_incident, incident, {"status": "Pending"})  # the hub sets it: PSA status 12
    ticket = ticket_of(incident)
    assert ticket.status_id == "12"
    sent = len(updates(psa))
    assert run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "12", T0, "t") == inbound.ECHO
    incident.refresh_from_db()
    assert incident.status_source == "api" and len(updates(psa)) == sent
    assert HostDelivery.objects.count() == 0


@pytest.mark.parametrize(("current", "psa_status", "expected"), [
    ("Snoozed", "12", "Snoozed"),  # the current status maps to it: kept
    ("Open", "12", "Pending"),  # else the first of the order
    ("Done", "11", "Done"),
    ("Open", "11", "Done"),
])  # fmt: skip
def test_ambiguous_mappings(current, psa_status, expected):
    assert inbound.reverse_status(STATUS_MAP, psa_status, current) == expected
    assert inbound.reverse_status({**STATUS_MAP, "new": "9"}, "9", "Pending") == "Open"
    assert inbound.reverse_status(STATUS_MAP, "404", "Open") is None


# --- inbound HTTP -----------------------------------------------------------------------------------


@pytest.fixture
def callback(world):
    account, connection, incident = world
    token = "tok-" + "x" * 40
    StatusSync.objects.update_or_create(connection_id=connection.pk, defaults={
        "account": account, "vendor": "connectwise", "mode": StatusSync.Mode.CALLBACK,
        "secret_hash": registration.secret_hash(token), "remote_id": "5", "remote_object_id": "1"})
    return account, connection, incident, token


def cw_url(connection, token, ticket_id):
    return reverse("hook_with_token", args=["connectwise", connection.pk, token]) + f"?recordId={ticket_id}"


def test_callback_reads_the_ticket_and_applies_it(callback, client, psa, django_capture_on_commit_callbacks, eager_tasks):
    account, connection, incident, token = callback
    ticket = ticket_of(incident)
    memory.tickets.records[ticket.ticket_id].update(status_id="11", changed_at="2025-05-01T10:00:00Z")
    body = {"Action": "updated", "Type": "ticket", "ID": int(ticket.ticket_id), "Entity": json.dumps({"status": {"id": 12}})}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(cw_url(connection, token, ticket.ticket_id), body, content_type="application/json")
    assert response.status_code == 202
    incident.refresh_from_db()
    assert incident.status == "Done", "the API's status counts, not the body's"
    assert WebhookReceipt.objects.get().outcome == inbound.APPLIED
    assert psa.called("read_change")


def test_wrong_token_is_401_logged_and_changes_nothing(callback, client, psa):
    account, connection, incident, _ = callback
    ticket = ticket_of(incident)
    response = client.post(cw_url(connection, "wrong-token", ticket.ticket_id), {"ID": 1}, content_type="application/json")
    assert response.status_code == 401
    assert Incident.objects.get(pk=incident.pk).status == "Open"
    assert [r.outcome for r in logs(account, "webhook.rejected")] == ["error"]
    assert not psa.called("read_change")
    # An unknown connection id: 401 as well, nothing to log against.
    import uuid

    assert client.post(cw_url(type("C", (), {"pk": uuid.uuid4()}), "t", 1), {}, content_type="application/json").status_code == 401


@pytest.fixture
def halo_hook(world):
    account, connection, incident = world
    password = "pw-" + "y" * 40
    Connection.objects.filter(pk=connection.pk).update(vendor="halo")  # the URL names the connection's PSA
    StatusSync.objects.update_or_create(connection_id=connection.pk, defaults={
        "account": account, "vendor": "halo", "mode": StatusSync.Mode.WEBHOOK,
        "secret_hash": registration.secret_hash(password), "remote_id": "guid"})
    auth = "Basic " + base64.b64encode(f"hub:{password}".encode()).decode()
    return account, connection, incident, auth


def test_halo_webhook_checks_basic_auth_size_and_json(halo_hook, client, psa):
    account, connection, incident, auth = halo_hook
    url = reverse("hook", args=["halo", connection.pk])
    bad = "Basic " + base64.b64encode(b"hub:nope").decode()
    assert client.post(url, {"id": 1}, content_type="application/json", HTTP_AUTHORIZATION=bad).status_code == 401
    assert client.post(url, {"id": 1}, content_type="application/json").status_code == 401
    huge = json.dumps({"id": 1, "pad": "x" * 300_000})
    assert client.post(url, huge, content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 413
    assert client.post(url, "{not json", content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 400
    assert Incident.objects.get(pk=incident.pk).status == "Open"
    assert not psa.called("read_change")
    assert len(logs(account, "webhook.rejected")) == 2


def test_halo_webhook_for_an_unknown_ticket_is_ignored_and_logged(halo_hook, client, psa, django_capture_on_commit_callbacks, eager_tasks):
    account, connection, incident, auth = halo_hook
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("hook", args=["halo", connection.pk]), {"ticket": {"id": 424242}},
                               content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert response.status_code == 202
    assert WebhookReceipt.objects.get().outcome == inbound.UNKNOWN_TICKET
    assert not psa.called("read_change"), "no API call for a ticket the hub does not know"
    assert any("424242" in r.message for r in logs(account, "ticket.inbound"))


# --- the host product's webhook -----------------------------------------------------------------------


def test_host_delivery_is_signed_and_retried_on_5xx_not_on_4xx(world, run, settings):
    settings.PSA_ALLOW_PRIVATE_HOSTS = True
    account, _, incident = world
    host.save_webhook(account, url="https://host.example.com/hooks/psa", secret=HOST_SECRET)
    ticket = ticket_of(incident)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://host.example.com/hooks/psa", status=503)
        mock.add(responses.POST, "https://host.example.com/hooks/psa", status=200)
        run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "11", T0, "t")
        [first, second] = mock.calls
    assert first.request.body == second.request.body, "a retry sends the same bytes"
    body = second.request.body
    assert host.verify_signature(HOST_SECRET, body, second.request.headers["X-Hub-Signature"])
    assert second.request.headers["X-Hub-Timestamp"].isdigit()
    payload = json.loads(body)
    assert payload | {"changed_at": None, "event_id": None} == {
        "event": "incident.status_changed", "event_id": None, "incident_id": incident.pk, "tenant": "globex",
        "status": "Done", "previous_status": "Open", "source": "psa", "ticket_number": ticket.number, "changed_at": None}
    delivery = HostDelivery.objects.get()
    assert delivery.state == "delivered" and delivery.attempts == 2
    assert [a.status_code for a in HostDeliveryAttempt.objects.order_by("id")] == [503, 200]
    # A 4xx is final.
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://host.example.com/hooks/psa", status=410)
        run(inbound.apply_ticket_status, account, "connectwise", ticket.ticket_id, "10", T0 + timedelta(minutes=1), "t")
        assert len(mock.calls) == 1
    assert HostDelivery.objects.order_by("-id").first().state == "failed"


def test_host_delivery_to_a_private_address_is_refused_with_the_reason(world, run, settings):
    settings.PSA_ALLOW_PRIVATE_HOSTS = False
    account, _, incident = world
    host.save_webhook(account, url="https://10.0.0.5/hooks/psa", secret=HOST_SECRET)
    with responses.RequestsMock():  # nothing may be sent
        run(inbound.apply_ticket_status, account, "connectwise", ticket_of(incident).ticket_id, "11", T0, "t")
    delivery = HostDelivery.objects.get()
    assert delivery.state == "failed" and "private or local network address" in delivery.last_error


def test_host_backoff_grows_and_honours_retry_after():
    assert 24 <= tasks.host_countdown(0) <= 36
    assert tasks.host_countdown(3) > tasks.host_countdown(1)
    assert tasks.host_countdown(20) <= 3600 * 1.2
    assert tasks.host_countdown(0, 500) == 500


def test_webhook_api_never_shows_the_secret(world, api_for):
    account, _, _ = world
    admin = api_for(account)
    response = admin.put("/api/v1/ticketing/webhook", {"url": "https://host.example.com/h", "secret": HOST_SECRET}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["secret_set"] is True and HOST_SECRET not in response.content.decode()
    assert api_for(account, role="support").put("/api/v1/ticketing/webhook", {"url": ""}, format="json").status_code == 403
    got = admin.get("/api/v1/ticketing/webhook").json()
    assert got["url"] == "https://host.example.com/h" and "secret" not in got
    assert admin.put("/api/v1/ticketing/webhook", {"url": "https://host.example.com/h2"}, format="json").json()["secret_set"] is True


def test_webhook_page_shows_set_not_the_secret(world, personas, page_client):
    account, connection, _ = world
    client = page_client(personas.admin)
    response = client.post(reverse("ticketing_webhook"), {"url": "https://host.example.com/h", "secret": HOST_SECRET, "active": "on"})
    assert response.status_code == 302
    page = client.get(reverse("ticketing_webhook")).content.decode()
    assert "id=\"secret-state\">set<" in page and HOST_SECRET not in page


# --- registration fallback and polling ---------------------------------------------------------------


def test_private_hub_address_falls_back_to_polling_with_a_reason(world, settings):
    account, connection, _ = world
    settings.HUB_BASE_URL = "http://10.1.2.3:8000"
    sync = registration.register(str(connection.pk), "c1")
    assert sync.mode == StatusSync.Mode.POLL
    notice = registration.fallback_notice(sync)
    assert notice.startswith("Status changes are checked every 5 minutes because the hub's address")


def test_permission_missing_falls_back_to_polling(world, settings, monkeypatch):
    from integrations.base.errors import PermissionMissingError

    account, connection, _ = world
    settings.HUB_BASE_URL = "https://hub.example.net"

    def refuse(self, *args, **kwargs):
        raise PermissionMissingError("No access to callbacks.", which="System > Callbacks", fix="grant it")

    monkeypatch.setattr(memory.MemoryProvider, "ensure_callback", refuse, raising=False)
    sync = registration.register(str(connection.pk), "c1")
    assert sync.mode == StatusSync.Mode.POLL and "System > Callbacks" in sync.fallback_reason


def test_a_second_registration_waits_for_the_first_and_the_lease_is_released(world, settings, monkeypatch):
    from integrations.base.errors import UnavailableError

    account, connection, _ = world
    settings.HUB_BASE_URL = "https://hub.example.net"
    made = []
    monkeypatch.setattr(memory.MemoryProvider, "ensure_callback",
                        lambda self, url, **kwargs: made.append(url) or f"cb-{len(made)}", raising=False)
    sync = registration.sync_for(connection)
    StatusSync.objects.filter(pk=sync.pk).update(registering_until=datetime.now(UTC) + timedelta(minutes=1))
    with pytest.raises(UnavailableError, match="Another registration"):
        registration.register(str(connection.pk), "c1")
    assert made == []

    StatusSync.objects.filter(pk=sync.pk).update(registering_until=datetime.now(UTC) - timedelta(seconds=1))  # expired
    assert registration.register(str(connection.pk), "c2").mode == StatusSync.Mode.CALLBACK
    assert registration.register(str(connection.pk), "c3").remote_id == "cb-1"  # already watching: nothing new
    assert len(made) == 1
    assert StatusSync.objects.get(pk=sync.pk).registering_until is None


def test_poll_applies_changes_since_the_watermark(world, monkeypatch, run):
    account, connection, incident = world
    ticket = ticket_of(incident)
    sync = StatusSync.objects.create(account=account, connection_id=connection.pk, vendor="connectwise",
                                     mode=StatusSync.Mode.POLL, poll_watermark=T0)
    from integrations.base.ticketing import TicketChange

    seen = []

    def changes_since(self, since_iso, board_id):
        seen.append((since_iso, board_id))
        return [TicketChange(ticket.ticket_id, "11", "2025-05-01T10:05:00Z"), TicketChange("55555", "11", "2025-05-01T10:06:00Z")]

    monkeypatch.setattr(memory.MemoryTicketing, "changes_since", changes_since, raising=False)
    assert run(polling.poll, sync.pk, "c") == 1
    assert seen == [("2025-05-01T09:58:00Z", "1")], "asks from the watermark minus the overlap, on the board"
    assert Incident.objects.get(pk=incident.pk).status == "Done"
    sync.refresh_from_db()
    assert sync.poll_watermark == T0 + timedelta(minutes=6)
    # The same changes polled again (the overlap) change nothing more.
    logged = len(logs(account, "ticket.inbound"))
    assert run(polling.poll, sync.pk, "c") == 1
    assert Incident.objects.get(pk=incident.pk).status == "Done"
    assert "already in that status" in logs(account, "ticket.inbound")[0].message and len(logs(account, "ticket.inbound")) == logged + 1


def test_webhook_and_callback_syncs_are_still_reconciled_by_a_slow_poll(world, monkeypatch, run, personas, page_client):
    """A change the PSA never delivered is caught up: every 30 minutes for a webhook/callback,
    every few minutes when polling is the only way."""
    account, connection, incident = world
    now = datetime.now(UTC)
    sync = StatusSync.objects.create(account=account, connection_id=connection.pk, vendor="connectwise",
                                     mode=StatusSync.Mode.CALLBACK, secret_hash="x", remote_id="77", remote_object_id="1",
                                     poll_watermark=now - timedelta(hours=1), last_polled_at=now - timedelta(minutes=20))
    assert list(polling.due_syncs()) == []
    StatusSync.objects.filter(pk=sync.pk).update(last_polled_at=now - timedelta(minutes=31))
    assert [s.pk for s in polling.due_syncs()] == [sync.pk]
    StatusSync.objects.filter(pk=sync.pk).update(mode=StatusSync.Mode.POLL, last_polled_at=now - timedelta(minutes=6))
    assert [s.pk for s in polling.due_syncs()] == [sync.pk], "polling alone: every 5 minutes for ConnectWise"
    StatusSync.objects.filter(pk=sync.pk).update(mode=StatusSync.Mode.NONE)
    assert list(polling.due_syncs()) == []

    # The reconcile poll applies a change the callback missed.
    StatusSync.objects.filter(pk=sync.pk).update(mode=StatusSync.Mode.CALLBACK)
    from integrations.base.ticketing import TicketChange

    ticket = ticket_of(incident)
    changed = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setattr(memory.MemoryTicketing, "changes_since",
                        lambda self, since_iso, board_id: [TicketChange(ticket.ticket_id, "11", changed)], raising=False)
    assert run(polling.poll, sync.pk, "c") == 1
    assert Incident.objects.get(pk=incident.pk).status == "Done"
    page = page_client(personas.admin).get(reverse("ticketing_webhook")).content.decode()
    assert "ConnectWise calls the hub back" in page and "also checks the tickets every 30 minutes" in page


@pytest.mark.parametrize("page_name", ["ticketing", "integrations"])
def test_the_ticketing_and_integration_pages_say_when_status_changes_are_polled(world, personas, page_client, settings, page_name):
    account, connection, _ = world
    StatusSync.objects.create(account=account, connection_id=connection.pk, vendor="connectwise",
                              mode=StatusSync.Mode.CALLBACK, secret_hash="x", remote_id="77", remote_object_id="1")
    assert "Status changes are checked every" not in page_client(personas.admin).get(reverse(page_name)).content.decode()

    settings.HUB_BASE_URL = "http://10.1.2.3:8000"
    StatusSync.objects.all().delete()
    registration.register(str(connection.pk), "c1")
    page = page_client(personas.admin).get(reverse(page_name)).content.decode()
    assert "Status changes are checked every 5 minutes because the hub&#x27;s address" in page


def test_removing_the_integration_removes_the_callback_in_a_task(world, run, monkeypatch):
    account, connection, _ = world
    removed = []
    monkeypatch.setattr(memory.MemoryProvider, "remove_callback", lambda self, cid: removed.append(cid), raising=False)
    StatusSync.objects.create(account=account, connection_id=connection.pk, vendor="connectwise",
                              mode=StatusSync.Mode.CALLBACK, secret_hash="x", remote_id="77", remote_object_id="1")
    run(integration_services.remove_connection, connection)
    assert removed == ["77"]
    assert not StatusSync.objects.exists() and not Connection.objects.filter(pk=connection.pk).exists()
    assert any(r.action == "webhook.remove" and r.outcome == "ok" for r in logs(account))


def test_retention_deletes_old_receipts_and_finished_deliveries_only(world, settings):
    from ticketing import retention

    account, _, incident = world
    settings.HUB_LOG_RETENTION_DAYS = 30
    old = datetime.now(UTC) - timedelta(days=31)
    WebhookReceipt.objects.create(account=account, vendor="halo", outcome="applied", received_at=old)
    kept_receipt = WebhookReceipt.objects.create(account=account, vendor="halo", outcome="applied")
    for n, state in enumerate(["delivered", "failed", "pending", "sending"]):
        delivery = HostDelivery.objects.create(account=account, incident=incident, event_id=f"e{n}", state=state, created_at=old)
        HostDeliveryAttempt.objects.create(delivery=delivery, status_code=500)
    recent = HostDelivery.objects.create(account=account, incident=incident, event_id="recent", state="delivered")

    assert tasks.purge_old_records() == 3
    assert list(WebhookReceipt.objects.all()) == [kept_receipt]
    assert set(HostDelivery.objects.values_list("event_id", flat=True)) == {"e2", "e3", "recent"}, "unfinished ones wait"
    assert HostDeliveryAttempt.objects.count() == 2 and recent.pk
    settings.HUB_LOG_RETENTION_DAYS = 0  # 0 keeps everything
    assert retention.purge_old_records(days=0) == 0


def test_a_hook_url_names_the_connections_own_psa(halo_hook, client):
    account, connection, incident, auth = halo_hook
    wrong_psa = reverse("hook_with_token", args=["connectwise", connection.pk, "token"])
    assert client.post(wrong_psa, {"ID": 1}, content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 401
    unknown = reverse("hook", args=["nopsa", connection.pk])
    assert client.post(unknown, {"id": 1}, content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 404
    # A PSA whose secret travels in the URL is not called without it, and the others never with one.
    assert client.post(reverse("hook_with_token", args=["halo", connection.pk, "x"]), {"id": 1},
                       content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 404

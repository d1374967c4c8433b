"""Two-way status sync through the live server, a real Celery worker and each vendor's HTTP fake:
a technician's status change in the fake reaches the incident (Halo by a webhook POST, ConnectWise
by a callback POST, both sent by the test to the URL the hub registered in the fake; Autotask by
the poll task), the host product's webhook (a tiny local receiver) gets a signed delivery whose
signature verifies, and the hub does not write the ticket back (the fake's request log). Where the
fake refuses the webhook/callback (403), the change comes by polling instead; removing the
integration removes the webhook/callback from the fake."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from integrations.models import Connection
from ticketing import tasks
from ticketing.sync import host
from ticketing.models import Incident, StatusSync, Ticket
from tests.fakes import autotask_server, connectwise_server
from tests.flows import link_and_configure, wait_for

pytestmark = pytest.mark.integration

HOST_SECRET = "host-product-signing-secret-42"


class Receiver:
    """The host product's webhook endpoint: records (headers, raw body) and answers 200."""

    def __init__(self):
        self.calls: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/psa-hub"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def ticket_writes(psas, vendor: str, ticket_id: str) -> list:
    if vendor == "halo":
        return [r for r in psas.halo.requests_to("/api/Tickets", "POST")
                if any(str(row.get("id")) == ticket_id for row in (r.body if isinstance(r.body, list) else []))]
    if vendor == "connectwise":
        return [r for r in psas.connectwise.api_requests("PATCH", f"service/tickets/{ticket_id}")]
    return [r for r in psas.autotask.requests_to("Tickets", "PATCH")]


def change_in_psa(psas, vendor: str, ticket_id: str, status_id: str) -> None:
    """A technician changes the ticket's status in the PSA."""
    if vendor == "halo":
        psas.halo.set_ticket_status(int(ticket_id), int(status_id))
    elif vendor == "connectwise":
        fake = psas.connectwise
        with fake.lock:
            ticket = fake.tickets[int(ticket_id)]
            board = fake.boards[ticket["board"]["id"]]
            fake._set_status(ticket, fake._board_value("statuses", board, {"id": int(status_id)}, "Service Status", "status"))
            ticket["_info"]["lastUpdated"] = connectwise_server.now_iso()
    else:
        fake = psas.autotask
        with fake.lock:
            ticket = fake.tables["Tickets"][int(ticket_id)]
            ticket["status"] = int(status_id)
            ticket["lastActivityDate"] = autotask_server._now()


def notify_hub(vendor: str, psas, live_url: str, connection: Connection, ticket_id: str, worker) -> None:
    sync = wait_for(lambda: StatusSync.objects.filter(connection_id=connection.pk).exclude(mode="none").first(),
                    f"{vendor} status sync set up", worker=worker)
    if sync.mode == "poll":  # Autotask, and the fallback of the other two
        tasks.poll_status.delay(sync.pk, "test-poll")
    elif vendor == "halo":
        assert sync.mode == "webhook", sync.fallback_reason
        [hook] = [w for w in psas.halo.webhooks.values() if str(connection.pk) in w["url"]]
        path = urlsplit(hook["url"]).path
        auth = base64.b64encode(f"{hook['basic_username']}:{hook['basic_password']}".encode()).decode()
        wrong = requests.post(live_url + path, json={"ticket": {"id": int(ticket_id)}}, timeout=10,
                              headers={"Authorization": "Basic " + base64.b64encode(b"x:wrong").decode()})
        assert wrong.status_code == 401
        response = requests.post(live_url + path, json={"event": "Ticket Updated", "ticket": {"id": int(ticket_id)}},
                                 headers={"Authorization": f"Basic {auth}"}, timeout=10)
        assert response.status_code == 202, response.text
    elif vendor == "connectwise":
        sync = wait_for(lambda: StatusSync.objects.filter(connection_id=connection.pk, mode="callback").first(),
                        "callback registered", worker=worker)
        [callback] = [c for c in psas.connectwise.callbacks.values() if str(connection.pk) in c["url"]]
        assert (callback["type"], callback["level"], str(callback["objectId"])) == ("ticket", "board", sync.remote_object_id)
        parts = urlsplit(callback["url"] + ticket_id)  # ConnectWise appends the record id
        body = {"MessageId": "m1", "Action": "updated", "Type": "ticket", "ID": int(ticket_id), "Entity": "{}"}
        assert requests.post(f"{live_url}{parts.path.rsplit('/', 2)[0]}/not-the-token/?{parts.query}", json=body,
                             timeout=10).status_code == 401
        response = requests.post(f"{live_url}{parts.path}?{parts.query}", json=body, timeout=10)
        assert response.status_code == 202, response.text
    else:
        pytest.fail(f"{vendor}: status sync in mode {sync.mode}")


# Where the API user may not register the webhook/callback: what the fake refuses (403).
REFUSE = {
    "halo": (lambda psas: psas.halo.deny("Admin: webhooks"), "Admin: webhooks"),
    "connectwise": (lambda psas: psas.connectwise.deny("system/callbacks"), "System"),
}


@pytest.mark.parametrize(("vendor", "way"), [
    ("halo", "webhook"), ("connectwise", "callback"), ("autotask", "poll"),
    ("halo", "poll fallback"), ("connectwise", "poll fallback"),
])  # fmt: skip
def test_a_status_change_in_the_psa_reaches_the_incident_and_the_host_product(
    vendor, way, hub, psas, personas, receiver, transactional_db
):
    account = personas.account_a
    hub.call("PUT", "ticketing/webhook", {"url": receiver.url, "secret": HOST_SECRET})
    if way == "poll fallback":
        refuse, permission = REFUSE[vendor]
        refuse(psas)
    connection, config, _ = link_and_configure(vendor, hub, psas, account)
    if way == "poll fallback":
        sync = wait_for(lambda: StatusSync.objects.filter(connection_id=connection.pk, mode="poll").first(),
                        f"{vendor}: the fallback to polling", worker=hub.worker)
        assert permission in sync.fallback_reason, sync.fallback_reason
        assert hub.call("GET", "ticketing/webhook")["status_sync_notice"].startswith("Status changes are checked every 5 minutes")
    incident = hub.report(tenant=f"globex-{vendor}", title="Mailbox rule", severity="High")
    body = hub.wait_synced(incident["id"])
    ticket_id = body["ticket"]["id"]
    done_status = config.status_map["Done"]

    psas.reset()  # empty request logs: from here on, nothing may be written to the ticket
    change_in_psa(psas, vendor, ticket_id, done_status)
    notify_hub(vendor, psas, hub.base.removesuffix("/api/v1/"), connection, ticket_id, hub.worker)

    def done():
        got = hub.incident(incident["id"])
        return got if got["status"] == "Done" else None

    got = wait_for(done, f"{vendor}: the incident follows the ticket", worker=hub.worker)
    assert got["status_source"] == "psa" and got["ticket"]["closed"] is True
    assert Ticket.objects.get(ticket_id=ticket_id, account=account).status_id == str(done_status)

    headers, raw = wait_for(lambda: receiver.calls and receiver.calls[0], "the host product is told", worker=hub.worker)
    assert host.verify_signature(HOST_SECRET, raw, headers["x-hub-signature"])
    payload = json.loads(raw)
    assert (payload["incident_id"], payload["status"], payload["previous_status"], payload["tenant"]) == (
        incident["id"], "Done", "Open", f"globex-{vendor}")

    # The hub does not write the PSA's own change back, now or on the next sweep.
    hub.call("POST", f"incidents/{incident['id']}/notes/", {"text": "Closed by the technician."}, expect=202)
    wait_for(lambda: Incident.objects.get(pk=incident["id"]).notes.filter(delivered_at__isnull=False).exists(),
             "the note is delivered", worker=hub.worker)
    time.sleep(0.5)
    assert ticket_writes(psas, vendor, ticket_id) == [], f"{vendor}: the ticket was written back"
    assert len(receiver.calls) == 1

    # Removing the integration removes what the hub registered in the PSA (in a task).
    def registered() -> list:
        found = psas.halo.webhooks.values() if vendor == "halo" else psas.connectwise.callbacks.values()
        return [entry for entry in found if str(connection.pk) in entry.get("url", "")]

    assert len(registered()) == (1 if way in ("webhook", "callback") else 0)
    hub.call("DELETE", "connection", expect=204)
    if way in ("webhook", "callback"):
        wait_for(lambda: not registered(), f"{vendor}: the {way} removed from the PSA", worker=hub.worker)
        wait_for(lambda: not StatusSync.objects.filter(connection_id=connection.pk).exists(), "the sync row gone",
                 worker=hub.worker)

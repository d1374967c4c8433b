"""Steps the integration and browser tiers share: waiting for background work, linking a PSA
through the API, a tenant mapped to a fake's company, and the host product driving the API over
the live server (`Hub`) with the ticketing settings made from a fake's own lists."""

from __future__ import annotations

import time

import pytest
import requests

from integrations import services as integration_services
from integrations.models import Connection
from ticketing.models import Incident, TicketingConfig
from tests.factories import make_tenant
from tests.fakes.tickets import VENDORS

WAIT = 60  # s: how long background work may take before a test fails with the worker's log
POLL = 0.2


def wait_for(check, what, worker=None, timeout: float = WAIT):
    """check()'s first truthy value; fails after `timeout` with `what` (a text, or a callable
    giving one) and the tail of the worker's log."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- worker log ---\n{worker.log_tail(60)}" if worker else ""
            pytest.fail(f"{what() if callable(what) else what}: not within {timeout} s{tail}")
        time.sleep(POLL)


def link_through_api(api, account, psas, vendor: str, worker) -> Connection:
    """PUT the fake's credentials (202), then wait until the worker has verified the link."""
    response = api.put("/api/v1/connection", {"vendor": vendor, "credentials": psas.link_values(vendor)}, format="json")
    assert response.status_code == 202, response.content

    def verified():
        connection = Connection.objects.get(account=account)
        if connection.status == Connection.Status.FAILED:
            pytest.fail(f"the worker did not verify the link: {connection.last_error}\n{worker.log_tail()}")
        return connection if connection.status == Connection.Status.CONNECTED else None

    return wait_for(verified, "the worker to verify the link", worker)


def map_fake_company(account, connection: Connection, vendor: str):
    """Tenant "Globex" (globex-<vendor>) mapped to the fake's Globex company; returns the company."""
    name = VENDORS[vendor].company
    provider = integration_services.build_provider(connection, action="test.companies", correlation_id="test")
    [company] = [c for c in provider.companies(name.split()[0]) if c.name == name]
    tenant = make_tenant(account, name="Globex", external_id=f"globex-{vendor}")
    integration_services.map_tenant(account, tenant, company.id, company.name)
    return company


# --- the host product, driven over HTTP ----------------------------------------------------------


class Hub:
    """Account A's host product: the API over the live server with an API key."""

    def __init__(self, base_url: str, key: str, worker):
        self.base = f"{base_url}/api/v1/"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.worker = worker

    def call(self, method: str, path: str, json=None, expect: int | tuple = 200) -> dict:
        response = self.session.request(method, self.base + path, json=json, timeout=30)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else {}

    def report(self, **fields) -> dict:
        return self.call("POST", "incidents/", {"title": "Suspicious sign-in", "severity": "High", **fields}, expect=(200, 201))

    def incident(self, incident_id: int) -> dict:
        return self.call("GET", f"incidents/{incident_id}/")

    def wait_synced(self, incident_id: int, timeout: float = 45) -> dict:
        def synced():
            body = self.incident(incident_id)
            if body["sync"]["state"] == "failed":
                pytest.fail(f"incident {incident_id} failed: {body['sync']['error']}\n{self.worker.log_tail(60)}")
            return body if body["sync"]["state"] == "synced" else None

        row = Incident.objects.filter(pk=incident_id).values("sync_state", "sync_claim", "sync_attempts", "sync_error").first
        return wait_for(synced, lambda: f"incident {incident_id} synced ({row()})", self.worker, timeout)


def names_to_ids(connection: Connection, kind: str, parent: str = "") -> dict[str, str]:
    """The PSA list as the hub caches it (fetched through the hub's own service, in this process)."""
    entry = integration_services.refresh_picklist(str(connection.pk), kind, parent, "test")
    assert entry is not None and not entry.error, entry and entry.error
    return {item["name"]: item["id"] for item in entry.items}


def link_and_configure(vendor: str, hub: Hub, psas, account) -> tuple[Connection, TicketingConfig, dict]:
    """Link through the API (the worker verifies), then the ticketing settings from the fake's
    lists, and a tenant mapped to the fake's company. Returns (connection, config, expected ids)."""
    hub.call("PUT", "connection", {"vendor": vendor, "credentials": psas.link_values(vendor)}, expect=202)
    wait_for(lambda: hub.call("GET", "connection")["status"] == "connected", f"{vendor} connected", hub.worker)
    connection = Connection.objects.get(account=account)
    words = VENDORS[vendor]
    board_id = names_to_ids(connection, words.board_kind)[words.board]
    statuses = names_to_ids(connection, "statuses", board_id if words.status_parent else "")
    priorities = names_to_ids(connection, "priorities", board_id if words.priority_parent else "")
    config = TicketingConfig.objects.create(
        account=account, vendor=vendor, board_id=board_id, board_name=words.board,
        status_map={status: statuses[name] for status, name in words.statuses.items()},
        priority_map={severity: priorities[name] for severity, name in words.priorities.items()},
    )  # fmt: skip
    company = map_fake_company(account, connection, vendor)
    return connection, config, {"board": board_id, "company": company.id}

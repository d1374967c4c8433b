"""The real Halo provider, ticketing and billing against the HTTP fake Halo over loopback.

No Celery worker or database is needed: these drive the vendor package the way the service
layer will, through a Transport that records every request (as IntegrationLog rows would be).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from integrations.base.billing import BillingLine, BillingTarget
from integrations.base.client import Transport
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    PermissionMissingError,
    UnavailableError,
)
from integrations.base.ticketing import TicketDraft
from integrations.halo.forms import HaloLinkForm
from integrations.halo.provider import HaloProvider
from tests.fakes.halo_server import CLOSED_STATUS, HaloFake

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def halo():
    with HaloFake(clients=350) as fake:
        yield fake


@pytest.fixture
def records() -> list:
    return []


@pytest.fixture
def transport(records) -> Transport:
    return Transport(allow_private=True, sleep=lambda seconds: None, on_request=records.append)


@pytest.fixture
def provider(halo, transport) -> HaloProvider:
    return HaloProvider(halo.config(), halo.secrets(), transport)


def assert_no_secret_in(records, *secrets):
    for record in records:
        for secret in secrets:
            assert secret not in repr(record), f"{secret!r} leaked into {record}"


def draft(reference: str, **overrides) -> TicketDraft:
    values = dict(
        reference=reference, company_id="1", summary="Impossible travel sign-in", description="From two countries.",
        board_id="3", status_id="1", priority_id="2", extra={"team": "Security Operations"},
    )
    return TicketDraft(**{**values, **overrides})


def test_linking_with_the_url_as_halo_shows_it(halo, transport, records):
    form = HaloLinkForm(
        {"tenant": "acme", "resource_server": f" {halo.url}/api/ ", "client_id": halo.client_id, "client_secret": halo.client_secret}
    )
    assert form.is_valid(), form.errors
    config, secrets = form.config_and_secrets()

    result = HaloProvider(config, secrets, transport).verify()

    assert result.display_name == "127.0.0.1 (agent hub_api)"
    assert [r.path.split("?")[0] for r in records] == ["/api/AuthInfo", "/auth/token", "/api/Agent/me"]
    assert not halo.requests_to("/api/api")
    assert_no_secret_in(records, halo.client_secret, *halo.tokens)


def test_an_auth_server_elsewhere_is_discovered_through_authinfo(halo, provider):
    halo.auth_path = "/identity"

    result = provider.verify()

    assert result.config_updates == {"auth_server": f"{halo.url}/identity"}
    assert halo.requests_to("/identity/token", "POST")


def test_a_regenerated_secret_fails_with_seed_002s_words_and_leaks_nothing(halo, provider, records):
    halo.revoke_secret()

    with pytest.raises(AuthFailedError) as caught:
        provider.verify()

    assert caught.value.message.startswith(
        "Authentication failed: Verify Tenant, Resource Server (without /api), Client ID, and Client Secret."
    )
    assert len(halo.requests_to("/auth/token")) == 1
    assert_no_secret_in(records, provider.secrets["client_secret"])
    assert provider.secrets["client_secret"] not in caught.value.message


def test_a_wrong_tenant_is_an_authentication_failure(halo, transport):
    config = {**halo.config(), "tenant": "someone-else"}

    with pytest.raises(AuthFailedError):
        HaloProvider(config, halo.secrets(), transport).verify()


def test_an_expired_token_is_replaced_once_and_the_call_goes_through(halo, provider):
    provider.verify()
    halo.expire_tokens()

    assert len(provider.picklist("teams")) == 3

    assert len(halo.requests_to("/auth/token")) == 2
    assert [r.status for r in halo.requests_to("/api/Team")] == [401, 200]


def test_permissions_report_what_is_missing_in_halos_words(halo, provider):
    assert provider.check_permissions().ok

    halo.deny("Read: softwarelicensing", "Admin: webhooks")
    report = provider.check_permissions()

    assert [check.label for check in report.missing] == ["Read: softwarelicensing", "Admin: webhooks"]
    assert "View Applications" in report.missing[0].fix


def test_importing_customers_pages_through_hundreds(halo, provider):
    companies = list(provider.companies())

    active = [c for c in halo.data.clients.values() if not c["inactive"]]
    assert len(companies) == len(active) > 300
    pages = [r.query["page_no"] for r in halo.requests_to("/api/Client")]
    assert pages == ["1", "2", "3", "4"]
    assert all(r.query["page_size"] == "100" and r.query["pageinate"] == "true" for r in halo.requests_to("/api/Client"))


def test_a_ticket_lives_through_the_incident(halo, provider):
    ticketing = provider.ticketing()
    priorities = {p.name: p.id for p in provider.picklist("priorities", "3")}

    ref = ticketing.create(draft("hub-incident-1", priority_id=priorities["High (Security)"]))

    ticket = halo.tickets[int(ref.id)]
    assert (ticket["client_id"], ticket["tickettype_id"], ticket["status_id"], ticket["priority_id"]) == (1, 3, 1, 2)
    assert ticket["team"] == "Security Operations" and ticket["supplier_reference"] == "hub-incident-1"
    assert ref.url == f"{halo.url}/ticket?id={ref.id}"
    assert ticketing.find_by_reference("hub-incident-1") == ref
    assert ticketing.find_by_reference("hub-incident-10") is None

    ticketing.add_note(ref.id, "Seen again at 10:02 (count 2)")
    closed = ticketing.update(ref.id, status_id=str(CLOSED_STATUS))

    assert closed.closed and halo.tickets[int(ref.id)]["hasbeenclosed"]
    note = next(iter(halo.actions.values()))
    assert (note["outcome"], note["hiddenfromuser"], note["sendemail"]) == ("Private Note", True, False)
    posts = len(halo.requests_to("/api/Tickets", "POST"))
    ticketing.update(ref.id, status_id=str(CLOSED_STATUS))
    assert len(halo.requests_to("/api/Tickets", "POST")) == posts  # already closed: nothing written


def test_a_create_whose_answer_is_lost_is_found_instead_of_made_twice(halo, provider):
    ticketing = provider.ticketing()
    halo.fail_next(502, path_contains="/api/tickets", method="POST", after_processing=True)

    with pytest.raises(UnavailableError) as caught:
        ticketing.create(draft("hub-incident-2"))
    assert caught.value.outcome_unknown

    # What the ticketing service does before trying again (DESIGN.md rule 5):
    found = ticketing.find_by_reference("hub-incident-2")
    assert found is not None
    assert len([t for t in halo.tickets.values() if t["supplier_reference"] == "hub-incident-2"]) == 1


def test_halos_business_rules_come_back_in_its_words(halo, provider):
    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(draft("hub-incident-3", board_id="5", priority_id="2"))  # type 5 has no SLA

    assert "is not valid for the SLA" in caught.value.message
    assert not halo.tickets


def test_a_429_storm_backs_off_and_finishes(halo, provider):
    halo.fail_next(429, times=3, path_contains="/api/team", retry_after="1")

    assert len(provider.picklist("teams")) == 3
    assert [r.status for r in halo.requests_to("/api/Team")] == [429, 429, 429, 200]


def test_billing_updates_creates_and_refuses_duplicates(halo, provider):
    billing = provider.billing()

    line = billing.read_line(BillingTarget("1", "1"))
    assert (line.line_id, line.quantity) == ("1", 10)
    billing.write_quantity(BillingTarget("1", "1"), line, 12)
    assert halo.licences[1]["count"] == 12

    posts = len(halo.requests_to("/api/SoftwareLicence", "POST"))
    assert billing.read_line(BillingTarget("1", "1")).quantity == 12  # a re-sync finds nothing to write
    assert len(halo.requests_to("/api/SoftwareLicence", "POST")) == posts

    missing = billing.read_line(BillingTarget("3", "1"))
    assert missing == BillingLine(None, 0)
    created = billing.write_quantity(BillingTarget("3", "1"), missing, 7)
    licence = halo.licences[int(created.line_id)]
    assert (licence["client_id"], licence["item_id"], licence["count"], licence["site_id"]) == (3, 1, 7, -1)
    assert licence["name"] == "Email Security (per user)"
    assert billing.read_line(BillingTarget("3", "1")).line_id == created.line_id

    with pytest.raises(BlockedError, match="Two or more Halo software licences"):
        billing.read_line(BillingTarget("2", "1"))


def test_a_refused_licence_write_names_the_edit_permission(halo, provider):
    billing = provider.billing()
    line = billing.read_line(BillingTarget("1", "1"))
    halo.deny("Edit: softwarelicensing")

    with pytest.raises(PermissionMissingError) as caught:
        billing.write_quantity(BillingTarget("1", "1"), line, 20)

    assert caught.value.which == "Edit: softwarelicensing"
    assert halo.licences[1]["count"] == 10


def test_the_hubs_webhook_is_registered_once_and_removed(halo, provider):
    url = "https://hub.example/hooks/halo/3f9c"
    first = provider.ensure_webhook(url, username="halo", password="hook-pass-123")
    again = provider.ensure_webhook(url, username="halo", password="hook-pass-456")

    assert first == again and list(halo.webhooks) == [first]
    assert halo.webhooks[first]["basic_password"] == "hook-pass-456"

    provider.remove_webhook(first)
    provider.remove_webhook(first)
    assert not halo.webhooks


def test_latency_is_added_to_every_answer(halo, provider):
    provider.verify()
    halo.latency_ms = 100

    started = time.monotonic()
    provider.picklist("teams")

    assert time.monotonic() - started >= 0.1


def test_no_request_record_holds_a_secret(halo, provider, records):
    provider.verify()
    provider.check_permissions()
    provider.ticketing().create(draft("hub-incident-9"))
    provider.ensure_webhook("https://hub.example/h", username="halo", password="hook-pass-789")

    assert records
    assert_no_secret_in(records, halo.client_secret, "hook-pass-789", *halo.tokens)


def test_the_fake_runs_on_its_own_from_the_command_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.halo_server", "--port", str(port), "--clients", "5"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while not lines or lines[-1] not in ("}\n", ""):  # the JSON banner, or EOF if it died
            lines.append(process.stdout.readline())
        banner = json.loads("".join(lines))
        assert banner["resource_server"] == f"http://127.0.0.1:{port}"
        assert requests.get(f"http://127.0.0.1:{port}/api/AuthInfo", timeout=5).json()["auth_url"].endswith("/auth")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_billing_run_over_many_tenants_reads_once_and_resyncs_without_writes(halo, provider):
    targets = [(BillingTarget(str(client_id), "3"), client_id * 2) for client_id in range(10, 130)]

    def sync() -> int:
        billing = provider.billing()
        billing.prefetch(target for target, _ in targets)
        writes = 0
        for target, units in targets:
            line = billing.read_line(target)
            if line.quantity != units or line.line_id is None:
                billing.write_quantity(target, line, units)
                writes += 1
        return writes

    assert sync() == 120
    first_reads = len(halo.requests_to("/api/SoftwareLicence", "GET"))
    assert first_reads == 1  # one page: the seeded licences, none yet for item 3

    halo.clear_log()
    assert sync() == 0
    assert len(halo.requests_to("/api/SoftwareLicence", "GET")) == 2  # 124 licences: two pages, no writes
    assert not halo.requests_to("/api/SoftwareLicence", "POST")
    counts = {lic["client_id"]: lic["count"] for lic in halo.licences.values() if lic["item_id"] == 3}
    assert counts == {int(target.company_id): units for target, units in targets}

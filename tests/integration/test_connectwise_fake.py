"""The real ConnectWise provider, ticketing and billing adapters against the HTTP fake over
loopback: every request goes through the one HTTP path (netguard lifted for 127.0.0.1)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from integrations.base.billing import BillingTarget
from integrations.base.client import Transport
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    UnavailableError,
)
from integrations.base.ticketing import TicketDraft
from integrations.connectwise.provider import ConnectWiseProvider
from tests.fakes.connectwise_server import FakeConnectWise

ROOT = Path(__file__).resolve().parents[2]
MULTIPLE = (
    "Multiple agreements contain the mapped product for this company. Only one agreement per company should have "
    "the product. Resolve in ConnectWise."
)


@pytest.fixture
def fake():
    with FakeConnectWise() as server:
        yield server


@pytest.fixture
def records():
    return []


@pytest.fixture
def provider(fake, records):
    transport = Transport(allow_private=True, sleep=lambda seconds: None, on_request=records.append)
    provider = ConnectWiseProvider(fake.provider_config(), fake.provider_secrets(), transport)
    provider.config.update(provider.verify().config_updates)
    records.clear()
    return provider


@pytest.fixture(autouse=True)
def no_secret_is_ever_recorded(fake, records):
    yield
    text = "\n".join(repr(r) for r in records)
    assert fake.private_key not in text and fake.client_id not in text


def test_verify_discovers_the_codebase(fake, records):
    transport = Transport(allow_private=True, on_request=records.append)
    result = ConnectWiseProvider(fake.provider_config(), fake.provider_secrets(), transport).verify()

    assert result.display_name == "Acme IT Services"
    assert result.config_updates == {"api_host": fake.site, "codebase": "v2025_1/"}
    assert [r.path for r in records] == ["/login/companyinfo/acme", "/v2025_1/apis/3.0/system/info"]


def test_verify_an_unknown_company(fake):
    config = {**fake.provider_config(), "company_id": "nobody"}
    with pytest.raises(AuthFailedError) as caught:
        ConnectWiseProvider(config, fake.provider_secrets(), Transport(allow_private=True)).verify()
    assert "Company ID not found" in str(caught.value)


def test_revoked_keys(fake, provider):
    fake.revoke()
    with pytest.raises(AuthFailedError) as caught:
        provider.check_permissions()
    assert str(caught.value).startswith("Authentication failed: Verify Company ID, Site URL, Public and Private keys.")
    assert fake.private_key not in str(caught.value)


def test_the_fake_refuses_a_request_without_the_client_id(fake):
    config = {**fake.provider_config(), "client_id": "someone-elses-client-id"}
    with pytest.raises(AuthFailedError):
        ConnectWiseProvider(config, fake.provider_secrets(), Transport(allow_private=True)).verify()


def test_permissions_all_granted_then_priorities_denied(fake, provider):
    assert provider.check_permissions().ok

    fake.deny("service/priorities")
    [missing] = provider.check_permissions().missing

    assert missing.message == "ConnectWise API user does not have permission to access Service > Priority."
    with pytest.raises(PermissionMissingError) as caught:
        provider.picklist("priorities")
    assert str(caught.value).startswith("ConnectWise API user does not have permission to access Service > Priority.")


def test_companies_page_through_the_link_header(fake, provider):
    companies = list(provider.companies())

    assert len(companies) == 1207  # 1,208 seeded, one deleted
    assert len(fake.api_requests("GET", "company/companies")) == 2
    assert [c.name for c in provider.companies("acme")] == ["Acme Dental"]


def test_contacts_and_picklists(fake, provider):
    assert [c.name for c in provider.contacts("250")] == ["Jane Doe", "Bob Roe"]
    assert [b.name for b in provider.picklist("boards")] == ["No Default Team", "Security Alerts", "Service Desk"]
    statuses = provider.picklist("statuses", "1")
    assert [s.name for s in statuses if s.extra["closed"]] == ["Completed", "Cancelled", "Closed - No Action"]
    assert [s.name for s in statuses if s.extra["default"]] == ["New"]
    assert [p.id for p in provider.picklist("priorities")] == ["1", "2", "3", "4", "5"]
    assert [t.name for t in provider.picklist("types", "1")] == ["Incident", "Request"]
    assert provider.picklist("subtypes", "1")[0].extra == {"type_ids": ["201", "202"]}
    assert {t.name: t.extra["default"] for t in provider.picklist("teams", "1")} == {
        "Security Ops": False,
        "Tier 1": True,
    }
    assert [a.name for a in provider.picklist("agreements", "255")] == ["New Contract"]
    assert "LEGACY-AV" not in [i.extra["identifier"] for i in provider.picklist("catalog_items")]
    assert provider.board_has_default_team("1") and not provider.board_has_default_team("3")


def test_a_ticket_from_creation_to_closing(fake, provider):
    ticketing = provider.ticketing()
    draft = TicketDraft(
        reference="hub-incident-1", company_id="250", summary="Impossible travel for jane@acmedental.example",
        description="Sign-ins from Sydney and Oslo.\nSecond line.", board_id="2", status_id="111", priority_id="1",
        type_id="211", subtype_id="311", source_id="4", contact_id="31",
    )  # fmt: skip

    ref = ticketing.create(draft)

    ticket = fake.tickets[int(ref.id)]
    assert ticket["board"]["name"] == "Security Alerts" and ticket["company"]["id"] == 250
    assert (ticket["status"]["id"], ticket["priority"]["id"], ticket["externalXRef"]) == (111, 1, "hub-incident-1")
    assert fake.notes(int(ref.id))[0]["text"] == "Sign-ins from Sydney and Oslo.\nSecond line."
    assert ref.url.startswith(f"http://{fake.site}/v4_6_release/services/system_io/Service/fv_sr100_request.rails")

    assert ticketing.find_by_reference("hub-incident-1") == ref
    assert ticketing.find_by_reference("hub-incident-2") is None

    ticketing.add_note(ref.id, "Seen again, count 2")
    assert fake.notes(int(ref.id))[-1]["internalAnalysisFlag"] is True

    closed = ticketing.update(ref.id, status_id="113")
    assert closed.closed and fake.tickets[int(ref.id)]["closedFlag"] is True

    patches = len(fake.api_requests("PATCH"))
    assert ticketing.update(ref.id, status_id="113", priority_id="1").closed
    assert len(fake.api_requests("PATCH")) == patches  # nothing differs, nothing written


def test_a_board_without_default_team(fake, provider):
    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(
            TicketDraft(reference="hub-incident-3", company_id="250", summary="s", description="d", board_id="3")
        )

    assert str(caught.value).startswith(
        "ConnectWise could not create the ticket: the Service Board has no Default Team"
    )
    assert "(field: board)). In ConnectWise go to System > Setup Tables > Service Board" in str(caught.value)
    assert fake.tickets == {}


def test_a_status_from_another_board_is_refused_with_the_field(fake, provider):
    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(
            TicketDraft(
                reference="hub-incident-4", company_id="250", summary="s", description="", board_id="1", status_id="111"
            )
        )
    assert caught.value.field == "status/id"
    assert "Service Status 111 not found for Service Board 1" in str(caught.value)


def test_a_429_storm_is_waited_out(fake, provider):
    fake.fail_next(429, count=3, path="service/priorities", retry_after=0)

    assert len(provider.picklist("priorities")) == 5
    assert [r.status for r in fake.api_requests("GET", "service/priorities")] == [429, 429, 429, 200]


def test_a_server_error_is_reported_not_hidden(fake, provider):
    fake.fail_next(500, path="service/boards")
    with pytest.raises(UnavailableError) as caught:
        provider.picklist("boards")
    assert "HTTP 500" in str(caught.value)


def test_added_latency(fake, provider):
    fake.latency_ms = 60
    started = time.monotonic()
    provider.picklist("sources")
    assert time.monotonic() - started >= 0.06


def test_billing_update_then_unchanged(fake, provider):
    billing = provider.billing()
    target = BillingTarget(company_id="250", product_id="701", agreement_id="3001")

    current = billing.read_line(target)
    assert (current.line_id, current.quantity) == ("9001", 15)
    billing.write_quantity(target, current, 18)
    assert fake.additions[9001]["quantity"] == 18

    writes = len(fake.api_requests("PATCH")) + len(fake.api_requests("POST"))
    assert billing.read_line(target).quantity == 18
    assert len(fake.api_requests("PATCH")) + len(fake.api_requests("POST")) == writes


def test_billing_creates_the_missing_addition(fake, provider):
    billing = provider.billing()
    target = BillingTarget(company_id="251", product_id="701", agreement_id="3003", description="Domains")

    current = billing.read_line(target)
    assert current.line_id is None
    line = billing.write_quantity(target, current, 7)

    addition = fake.additions[int(line.line_id)]
    assert (addition["agreementId"], addition["product"]["id"], addition["quantity"]) == (3003, 701, 7)
    assert addition["billCustomer"] == "Billable" and addition["invoiceDescription"] == "Domains"
    assert provider.billing().read_line(target).line_id == line.line_id


def test_billing_business_rules(fake, provider):
    billing = provider.billing()
    with pytest.raises(BlockedError) as caught:
        billing.read_line(BillingTarget(company_id="254", product_id="701", agreement_id="3004"))
    assert str(caught.value) == MULTIPLE

    with pytest.raises(BlockedError) as caught:
        billing.read_line(BillingTarget(company_id="250", product_id="703", agreement_id="3001"))
    assert "Catalog item not found" in str(caught.value) and "has not been deactivated" in str(caught.value)

    with pytest.raises(NotFoundError) as caught:
        billing.read_line(BillingTarget(company_id="255", product_id="701", agreement_id="3006"))
    assert "“Old Contract” was cancelled in ConnectWise on 2025-01-31" in str(caught.value)

    with pytest.raises(BlockedError):
        billing.read_line(BillingTarget(company_id="253", product_id="701", agreement_id="3009"))

    # A cancelled addition does not count: Initech has none for the product.
    assert billing.read_line(BillingTarget(company_id="252", product_id="701", agreement_id="3008")).line_id is None


def test_billing_prefetch_costs_one_additions_read_per_tenant(fake, provider):
    billing = provider.billing()
    targets = [
        BillingTarget(company_id="250", product_id="701", agreement_id="3001"),
        BillingTarget(company_id="251", product_id="701", agreement_id="3003"),
        BillingTarget(company_id="252", product_id="701", agreement_id="3008"),
    ]
    billing.prefetch(targets)
    before = len(fake.api_requests())

    assert [billing.read_line(t).quantity for t in targets] == [15, 0, 0]
    # Acme has two agreements (both read for the two-agreements rule); the others one each.
    assert len(fake.api_requests()) - before == 4


def test_callbacks_through_the_client(fake, provider):
    client = provider.client()
    entry = {
        "url": "https://hub.example/webhooks/connectwise/abc?recordId=",
        "objectId": 1,
        "type": "ticket",
        "level": "owner",
    }

    created = client.create_callback({**entry, "description": "PSA hub"})
    assert created["payloadVersion"] == "3.0.0"
    with pytest.raises(InvalidError) as caught:
        client.create_callback(entry)
    assert "A matching callback entry already exists" in caught.value.vendor_message
    assert [c["id"] for c in client.callbacks()] == [created["id"]]
    client.delete_callback(created["id"])
    assert fake.callbacks == {}


def test_the_fake_answers_conditions_errors_like_connectwise(fake, provider):
    with pytest.raises(InvalidError) as caught:
        list(provider.client().agreements(conditions='agreementStatus="Canceled"'))
    assert caught.value.vendor_message == "ApiFindCondition: Enum value supplied was invalid"
    with pytest.raises(InvalidError) as caught:
        list(provider.client().boards(conditions='board/name="Integration"'))
    assert caught.value.vendor_message == "ApiFindCondition: board/name is not a recognized name."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_fake_runs_from_the_command_line():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.connectwise_server", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert "Fake ConnectWise at" in process.stdout.readline()
        answer = requests.get(f"http://127.0.0.1:{port}/login/companyinfo/acme", timeout=5).json()
        assert answer["Codebase"] == "v2025_1/"
    finally:
        process.terminate()
        process.wait(timeout=10)

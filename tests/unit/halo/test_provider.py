"""HaloProvider: verify (with AuthInfo discovery), permission probes, customers, picklists."""

from __future__ import annotations

import json

import pytest

from integrations.base.errors import AuthFailedError, BlockedError, InvalidError, PermissionMissingError
from integrations.halo.forms import HaloLinkForm
from integrations.halo.provider import HaloProvider
from tests.unit.halo.support import API, BASE, TOKEN, bearer, body, expect_token, load, paged, query

AUTH_ELSEWHERE = "https://login.acme-halo.example/identity"


def test_verify_discovers_the_auth_server_then_reads_the_agent(rsps, provider):
    rsps.get(f"{API}/AuthInfo", json=load("authinfo"), match=[query()])
    expect_token(rsps, url=f"{AUTH_ELSEWHERE}/token")
    rsps.get(f"{API}/Agent/me", json=load("agent_me"), match=[bearer()])

    result = provider.verify()

    assert result.display_name == "acme.halopsa.com (agent petra_api)"
    assert result.config_updates == {"auth_server": AUTH_ELSEWHERE}
    assert "Authorization" not in rsps.calls[0].request.headers  # AuthInfo needs no token


def test_verify_keeps_halos_default_auth_server_when_authinfo_agrees(rsps, provider):
    rsps.get(f"{API}/AuthInfo", json={"auth_url": f"{BASE}/auth"})
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", json=load("agent_me"))

    assert provider.verify().config_updates == {}


def test_verify_falls_back_to_the_default_when_authinfo_is_missing(rsps, provider):
    rsps.get(f"{API}/AuthInfo", status=404, body="<html>Not found</html>")
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", json=load("agent_me"))

    assert provider.verify().display_name.startswith("acme.halopsa.com")


def test_verify_with_an_auth_server_given_skips_discovery(rsps, make_provider):
    expect_token(rsps, url=f"{AUTH_ELSEWHERE}/token")
    rsps.get(f"{API}/Agent/me", json=load("agent_me"))

    make_provider(auth_server=AUTH_ELSEWHERE).verify()

    assert [c.request.url.split("?")[0] for c in rsps.calls] == [f"{AUTH_ELSEWHERE}/token", f"{API}/Agent/me"]


def test_verify_refuses_an_auth_server_on_a_private_address(rsps, make_provider, transport):
    transport.resolver = lambda host, port: ["10.0.0.5"] if host == "login.internal" else ["93.184.216.34"]

    with pytest.raises(BlockedError, match="private or local network"):
        make_provider(auth_server="https://login.internal/auth").verify()


def test_verify_with_no_api_at_the_url_names_the_resource_server(rsps, provider):
    rsps.get(f"{API}/AuthInfo", status=404)
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", status=404, body="<html>Not found</html>")

    with pytest.raises(InvalidError) as caught:
        provider.verify()

    assert caught.value.field == "resource_server"
    assert "without /api" in caught.value.message


def test_check_permissions_probes_each_capability_cheaply(rsps, provider):
    expect_token(rsps)
    for path, key in (("Tickets", "tickets"), ("Client", "clients"), ("Item", "items"), ("ClientContract", "contracts"), ("Invoice", "invoices")):
        rsps.get(f"{API}/{path}", json={"record_count": 0, key: []}, match=[bearer(), query(count=1)])
    rsps.get(f"{API}/SoftwareLicence", status=403, body="", match=[query(count=1)])
    rsps.get(f"{API}/Webhook", status=403, body="", match=[query()])

    report = provider.check_permissions()

    assert [c.label for c in report.checks] == [
        "Read: tickets", "Read: customers", "Read: items", "Read: contracts", "Read: invoices",
        "Read: softwarelicensing", "Admin: webhooks",
    ]
    assert [c.label for c in report.missing] == ["Read: softwarelicensing", "Admin: webhooks"]
    licence = report.missing[0]
    assert licence.feature == "billing" and licence.key == "softwarelicensing.read"
    assert "View Applications" in licence.fix
    assert report.missing[1].feature == "sync"


def test_check_permissions_stops_on_bad_credentials(rsps, provider):
    expect_token(rsps, status=401, body={"error": "invalid_client"})

    with pytest.raises(AuthFailedError, match="Authentication failed"):
        provider.check_permissions()


def test_companies_are_paged_through_and_inactive_ones_left_out(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Client", json=load("clients_page1"), match=[paged(1, search="cust")])
    rsps.get(f"{API}/Client", json=load("clients_page2"), match=[paged(2, search="cust")])

    companies = list(provider.companies("cust"))

    assert len(companies) == 149
    assert companies[0].id == "1" and companies[0].name == "Customer 001" and companies[0].identifier == "C001"
    assert "5" not in {c.id for c in companies}


def test_contacts_are_the_clients_active_users(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Users", json=load("users_client7"), match=[paged(1, client_id=7)])

    contacts = provider.contacts("7")

    assert [(c.id, c.email) for c in contacts] == [("301", ""), ("302", "ada@customer7.example")]
    assert contacts[1].company_id == "7"


def test_ticket_types_carry_their_sla_and_allowed_statuses(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/TicketType", json=load("ticket_types"), match=[query()])

    types = provider.picklist("ticket_types")

    assert [(t.id, t.name) for t in types] == [("1", "Incident"), ("3", "Security Alert"), ("5", "Service Request")]
    assert types[1].extra["sla_id"] == "2" and types[1].extra["allowed_status"] == ["1", "2", "9"]
    assert types[2].extra["sla_id"] == ""


def test_statuses_of_a_ticket_type(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Status", json=load("statuses_type3"), match=[query(type="ticket", tickettype_id=3)])

    statuses = provider.picklist("statuses", "3")

    assert [(s.id, s.name, s.parent_id) for s in statuses] == [("1", "New", "3"), ("2", "In Progress", "3"), ("9", "Closed", "3")]


def test_all_ticket_statuses(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Status", json=load("statuses_type3"), match=[query(type="ticket")])

    assert len(provider.picklist("statuses")) == 3


def test_priorities_are_those_of_the_ticket_types_sla(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/TicketType/3", json=load("ticket_type_3"))
    rsps.get(f"{API}/Priority", json=load("priorities_sla2"), match=[query(slaid=2)])

    priorities = provider.picklist("priorities", "3")

    assert [(p.id, p.name, p.active) for p in priorities] == [("1", "Critical", True), ("2", "High", True), ("3", "Retired", False)]
    assert priorities[0].extra == {"sla_id": "2", "row_id": "11"}


def test_a_ticket_type_without_sla_offers_no_priorities(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/TicketType/5", json=load("ticket_type_5"))

    assert provider.picklist("priorities", "5") == []


def test_teams_outcomes_items_licences_and_sites(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Team", json=load("teams"))
    rsps.get(f"{API}/Outcome", json=load("outcomes"))
    rsps.get(f"{API}/Item", json=load("items"), match=[paged(1)])
    rsps.get(f"{API}/SoftwareLicence", json=load("licences_client7"), match=[paged(1, client_id=7)])
    rsps.get(f"{API}/Site", json={"record_count": 1, "sites": [{"id": 1007, "name": "Main", "client_id": 7}]}, match=[paged(1, client_id=7)])

    assert [t.name for t in provider.picklist("teams")] == ["1st Line Support", "Security Operations"]
    assert [(o.id, o.name) for o in provider.picklist("outcomes")] == [("1", "Email User"), ("21", "Private Note")]
    assert [(i.id, i.extra["recurring"]) for i in provider.picklist("items")] == [("40", True), ("41", True)]
    licences = provider.picklist("licences", "7")
    assert [(l.id, l.parent_id, l.extra["item_id"], l.extra["count"]) for l in licences] == [("77", "7", "40", 15), ("78", "7", "41", 2)]
    assert [(s.id, s.name, s.parent_id) for s in provider.picklist("sites", "7")] == [("1007", "Main", "7")]


def test_a_picklist_needing_a_company_refuses_a_non_id(provider):
    with pytest.raises(InvalidError):
        provider.picklist("licences", "Customer 007")


def test_an_unknown_picklist_kind_is_a_programming_error(provider):
    with pytest.raises(ValueError):
        provider.picklist("boards")


def test_ticket_url_is_the_web_ui(provider):
    assert provider.ticket_url("5123") == "https://acme.halopsa.com/ticket?id=5123"


def test_ensure_webhook_creates_one_with_basic_authentication(rsps, provider, records):
    expect_token(rsps)
    rsps.get(f"{API}/Webhook", json=[])
    hook_password = "hook-pass-7Gq2Lm9"
    sent = {
        "name": "PSA hub: ticket updates", "url": "https://hub.example/hooks/halo/abc", "type": 0,
        "content_type": "application/json", "authentication_type": 1, "basic_username": "halo",
        "basic_password": hook_password, "active": True,
    }
    rsps.post(f"{API}/Webhook", json={**sent, "id": "0b6f-guid"}, match=[bearer(), body([sent])])

    assert provider.ensure_webhook("https://hub.example/hooks/halo/abc", username="halo", password=hook_password) == "0b6f-guid"
    assert all(hook_password not in repr(r) for r in records)


def test_ensure_webhook_updates_the_existing_one_for_that_url(rsps, provider):
    expect_token(rsps)
    existing = load("webhooks")
    rsps.get(f"{API}/Webhook", json=existing)
    rsps.post(f"{API}/Webhook", json=existing[0])

    webhook_id = provider.ensure_webhook(existing[0]["url"], username="hub", password="pw-0000-xyz")

    assert webhook_id == existing[0]["id"]
    assert json.loads(rsps.calls[2].request.body)[0]["id"] == existing[0]["id"]


def test_remove_webhook_tolerates_one_already_gone(rsps, provider):
    expect_token(rsps)
    rsps.delete(f"{API}/Webhook/0b6f-guid", status=404)

    provider.remove_webhook("0b6f-guid")


def test_a_permission_refusal_on_webhooks_is_named(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Webhook", status=403)

    with pytest.raises(PermissionMissingError) as caught:
        provider.ensure_webhook("https://hub.example/h", username="u", password="p-123456")

    assert caught.value.which == "Admin: webhooks"
    assert TOKEN not in caught.value.message


def test_a_resource_server_typed_with_api_reaches_the_right_urls(rsps, transport, store, clock):
    form = HaloLinkForm({"tenant": "acme", "resource_server": "https://acme.halopsa.com/api/", "client_id": "5c1d9e2a-hub-client",
                         "client_secret": "cl1ent-Secret-9Xy7Wv5Ut3-do-not-leak"})
    assert form.is_valid(), form.errors
    config, secrets = form.config_and_secrets()
    rsps.get(f"{API}/AuthInfo", status=404)
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", json=load("agent_me"), match=[bearer()])

    HaloProvider(config, secrets, transport, token_store=store, clock=clock).verify()

    assert [c.request.url.split("?")[0] for c in rsps.calls] == [
        "https://acme.halopsa.com/api/AuthInfo", "https://acme.halopsa.com/auth/token", "https://acme.halopsa.com/api/Agent/me",
    ]

"""HaloClient over the one HTTP path: Halo's error shapes, permissions named as Halo's
Permissions tab names them, paging until record_count, and what goes wrong on the wire."""

from __future__ import annotations

import pytest
import requests

from integrations.base.errors import (
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    RateLimitedError,
    UnavailableError,
)
from integrations.halo.client import PERMISSION_FIX
from tests.unit.halo.support import API, SECRET, bearer, expect_token, load, paged, query


@pytest.fixture
def client(rsps, provider):
    expect_token(rsps)
    return provider.client


def test_a_refused_read_names_the_application_and_agent_permission(rsps, client):
    rsps.get(f"{API}/SoftwareLicence", status=403, body="", match=[bearer(), query(count=1)])

    with pytest.raises(PermissionMissingError) as caught:
        client.peek("SoftwareLicence", "licences")

    error = caught.value
    assert error.which == "Read: softwarelicensing"
    assert error.permanent
    assert "“Read: softwarelicensing”" in error.message
    assert "Software Licencing access (Read and Modify)" in error.message
    assert error.fix == PERMISSION_FIX
    assert "Configuration > Integrations > HaloPSA API > View Applications" in error.fix
    assert "the agent's Permissions tab" in error.fix


@pytest.mark.parametrize(
    ("method", "path", "which"),
    [
        ("POST", "/api/Tickets", "Edit: tickets"),
        ("GET", "/api/tickets/12", "Read: tickets"),
        ("POST", "/api/Actions", "Edit: tickets"),
        ("GET", "/api/Client", "Read: customers"),
        ("GET", "/api/Item", "Read: items"),
        ("GET", "/api/ClientContract", "Read: contracts"),
        ("GET", "/api/Invoice", "Read: invoices"),
        ("POST", "/api/SoftwareLicence", "Edit: softwarelicensing"),
        ("GET", "/api/Webhook", "Admin: webhooks"),
        ("DELETE", "/api/Webhook/abc", "Admin: webhooks"),
    ],
)
def test_each_path_maps_to_its_halo_permission(provider, method, path, which):
    assert provider.client.permission_for(method, path)[0] == which


@pytest.mark.parametrize(
    ("payload", "said", "field"),
    [
        ({"resultCode": 2, "errorMessage": "CODE:APP03/2 Please select the CAB members to approve"}, "CODE:APP03/2 Please select the CAB members to approve (result code 2)", ""),
        ({"ClassName": "HaloValidationException", "Message": "An Outcome must be entered for this Action"}, "An Outcome must be entered for this Action", ""),
        ({"Message": "Invalid advanced search parameter"}, "Invalid advanced search parameter", ""),
        ({"error": "Something broke"}, "Something broke", ""),
        ({"[0].client_id": ["The JSON value could not be converted to System.Int32."]}, "[0].client_id: The JSON value could not be converted to System.Int32.", "client_id"),
        ("Ticket type is inactive", "Ticket type is inactive", ""),
    ],
)
def test_halo_error_bodies_become_invalid_with_halos_words(rsps, client, payload, said, field):
    rsps.post(f"{API}/Tickets", status=400, json=payload)

    with pytest.raises(InvalidError) as caught:
        client.post_tickets([{"summary": "x"}])

    assert caught.value.vendor_message == said
    assert caught.value.message == f"Halo PSA rejected the request. Halo PSA said: {said}"
    assert caught.value.field == field


def test_an_error_echoing_the_secret_is_redacted(rsps, client):
    rsps.post(f"{API}/Tickets", status=400, json={"Message": f"bad value {SECRET}"})

    with pytest.raises(InvalidError) as caught:
        client.post_tickets([{"summary": "x"}])

    assert SECRET not in caught.value.message and SECRET not in caught.value.vendor_message


def test_an_html_page_instead_of_json_is_unavailable(rsps, client):
    rsps.get(f"{API}/Agent/me", body="<!DOCTYPE html><html><body>Halo login</body></html>", content_type="text/html")

    with pytest.raises(UnavailableError) as caught:
        client.agent_me()

    assert "answered with a web page" in caught.value.message
    assert "API" in caught.value.message


def test_invalid_json_is_unavailable(rsps, client):
    rsps.get(f"{API}/Agent/me", body="{not json", content_type="application/json")

    with pytest.raises(UnavailableError, match="something that is not JSON"):
        client.agent_me()


def test_a_timeout_on_a_read_is_retried_then_reported_with_the_host(rsps, client, sleeps):
    for _ in range(4):  # one try and Transport.max_retries (3) retries
        rsps.get(f"{API}/Agent/me", body=requests.exceptions.ConnectTimeout("timed out"))

    with pytest.raises(UnavailableError) as caught:
        client.agent_me()

    assert caught.value.message.startswith("Could not reach Halo PSA at acme.halopsa.com: the connection timed out.")
    assert not caught.value.permanent
    assert len(sleeps) == 3


def test_a_read_timeout_on_a_create_is_not_retried_and_says_the_outcome_is_unknown(rsps, client, sleeps):
    rsps.post(f"{API}/Tickets", body=requests.exceptions.ReadTimeout("read timed out"))

    with pytest.raises(UnavailableError) as caught:
        client.post_tickets([{"summary": "x"}])

    assert caught.value.outcome_unknown
    assert sleeps == []


def test_a_429_storm_backs_off_as_told_and_finishes(rsps, client, sleeps):
    for _ in range(3):
        rsps.get(f"{API}/Agent/me", status=429, headers={"Retry-After": "2"})
    rsps.get(f"{API}/Agent/me", json=load("agent_me"))

    assert client.agent_me()["id"] == 12

    assert sleeps == [2.0, 2.0, 2.0]


def test_a_429_storm_that_does_not_end_is_rate_limited_for_the_task_to_retry(rsps, client, sleeps):
    for _ in range(4):
        rsps.get(f"{API}/Agent/me", status=429, headers={"Retry-After": "5"})

    with pytest.raises(RateLimitedError) as caught:
        client.agent_me()

    assert caught.value.retry_after == 5.0
    assert not caught.value.permanent
    assert sleeps == [5.0, 5.0, 5.0]


def test_a_500_on_a_licence_update_is_unavailable(rsps, client):
    rsps.post(f"{API}/SoftwareLicence", status=500, json={"ClassName": "System.NullReferenceException", "Message": "Object reference not set"})

    with pytest.raises(UnavailableError) as caught:
        client.post_licences([{"id": 1, "count": 2}], idempotent=True)

    assert "HTTP 500" in caught.value.message and "Object reference not set" in caught.value.message


def test_an_unknown_id_is_not_found(rsps, client):
    rsps.get(f"{API}/Tickets/999", status=404)

    with pytest.raises(NotFoundError):
        client.get_ticket(999)


def test_lists_are_paged_100_at_a_time_until_record_count(rsps, client):
    rsps.get(f"{API}/Client", json=load("clients_page1"), match=[bearer(), paged(1)])
    rsps.get(f"{API}/Client", json=load("clients_page2"), match=[bearer(), paged(2)])

    rows = list(client.list_clients())

    assert len(rows) == 150 and rows[-1]["id"] == 150


def test_paging_stops_at_record_count_even_on_a_full_page(rsps, client):
    page = load("clients_page1")
    rsps.get(f"{API}/Client", json={**page, "record_count": 100}, match=[paged(1)])

    assert len(list(client.list_clients())) == 100


def test_a_bare_array_where_a_page_was_asked_for_is_taken_whole(rsps, client):
    rsps.get(f"{API}/Item", json=load("items")["items"], match=[paged(1)])

    assert [row["id"] for row in client.list_items()] == [40, 41]


@pytest.mark.parametrize("shape", ["bare", "wrapped"])
def test_configuration_lists_accept_both_shapes(rsps, client, shape):
    teams = load("teams")
    rsps.get(f"{API}/Team", json=teams if shape == "bare" else {"record_count": 2, "teams": teams})

    assert [row["name"] for row in client.list_teams()] == ["1st Line Support", "Security Operations"]


def test_the_resource_server_gets_api_appended_once(provider):
    assert provider.client.url_for("Tickets") == "https://acme.halopsa.com/api/Tickets"

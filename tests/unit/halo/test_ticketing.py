"""HaloTicketing: the exact ticket and action arrays, the searchable incident reference,
updates that send only what differs, and notes with an outcome."""

from __future__ import annotations

import json

import pytest
from responses import matchers

from integrations.base.errors import InvalidError, UnavailableError
from integrations.base.ticketing import TicketDraft
from integrations.halo.ticketing import DETAILS_LIMIT, SUMMARY_LIMIT
from tests.unit.halo.support import API, bearer, body, expect_token, load, paged

URL = "https://acme.halopsa.com/ticket?id=5123"


@pytest.fixture
def ticketing(rsps, provider):
    expect_token(rsps)
    return provider.ticketing()


def draft(**overrides) -> TicketDraft:
    values = dict(
        reference="hub-incident-42",
        company_id="7",
        summary="Phishing mailbox rule on ada@customer7.example",
        description="A forwarding rule sends mail outside.",
        board_id="3",
        status_id="1",
        priority_id="2",
    )
    return TicketDraft(**{**values, **overrides})


def test_create_posts_one_ticket_with_the_reference_in_supplier_reference(rsps, ticketing):
    expected = [{
        "summary": "Phishing mailbox rule on ada@customer7.example",
        "details": "A forwarding rule sends mail outside.\n\nReference: hub-incident-42",
        "client_id": 7,
        "supplier_reference": "hub-incident-42",
        "donotapplytemplateintheapi": True,
        "tickettype_id": 3,
        "status_id": 1,
        "priority_id": 2,
        "team": "Security Operations",
    }]
    rsps.post(f"{API}/Tickets", json=load("ticket_5123"), match=[bearer(), body(expected)])

    ref = ticketing.create(draft(extra={"team": "Security Operations"}))

    assert ref.id == "5123" and ref.number == "5123" and ref.status_id == "1" and not ref.closed
    assert ref.url == URL


def test_create_resolves_a_team_id_to_the_name_halo_wants(rsps, ticketing):
    rsps.get(f"{API}/Team", json=load("teams"))
    rsps.post(f"{API}/Tickets", json=load("ticket_5123"))

    ticketing.create(draft(team_id="2"))

    assert json.loads(rsps.calls[-1].request.body)[0]["team"] == "Security Operations"


def test_an_unknown_team_id_is_invalid_before_anything_is_written(rsps, ticketing):
    rsps.get(f"{API}/Team", json=load("teams"))

    with pytest.raises(InvalidError) as caught:
        ticketing.create(draft(team_id="99"))

    assert caught.value.field == "team"


def test_a_contact_brings_its_site_as_halo_requires(rsps, ticketing):
    rsps.get(f"{API}/Users/302", json=load("users_client7")["users"][1])
    rsps.post(f"{API}/Tickets", json=load("ticket_5123"))

    ticketing.create(draft(contact_id="302"))

    sent = json.loads(rsps.calls[-1].request.body)[0]
    assert sent["user_id"] == 302 and sent["site_id"] == 1007


def test_long_text_is_shortened_with_a_note(rsps, ticketing):
    rsps.post(f"{API}/Tickets", json=load("ticket_5123"))

    ticketing.create(draft(summary="S" * 400, description="D" * 100_000))

    sent = json.loads(rsps.calls[-1].request.body)[0]
    assert len(sent["summary"]) == SUMMARY_LIMIT and sent["summary"].endswith("…")
    assert len(sent["details"]) <= DETAILS_LIMIT
    assert "Shortened by the hub" in sent["details"]
    assert sent["details"].endswith("Reference: hub-incident-42")


def test_ids_that_are_not_numbers_are_refused_before_sending(provider):
    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(draft(company_id="Customer 007"))

    assert caught.value.field == "company_id"


def test_a_lost_answer_on_create_is_not_retried(rsps, ticketing, sleeps):
    rsps.post(f"{API}/Tickets", status=502)

    with pytest.raises(UnavailableError) as caught:
        ticketing.create(draft())

    assert caught.value.outcome_unknown and sleeps == []


def test_find_by_reference_searches_and_compares_exactly(rsps, ticketing):
    rsps.get(f"{API}/Tickets", json=load("tickets_search"), match=[bearer(), paged(1, search_supplier_reference="hub-incident-42")])

    ref = ticketing.find_by_reference("hub-incident-42")

    assert ref.id == "5123" and ref.url == URL


def test_find_by_reference_ignores_a_longer_reference_that_contains_it(rsps, ticketing):
    rsps.get(f"{API}/Tickets", json={"record_count": 1, "tickets": [load("tickets_search")["tickets"][1]]}, match=[paged(1, search_supplier_reference="hub-incident-42")])

    assert ticketing.find_by_reference("hub-incident-42") is None


def test_find_by_reference_reads_the_ticket_when_the_list_leaves_the_field_out(rsps, ticketing):
    rsps.get(f"{API}/Tickets", json={"record_count": 1, "tickets": [{"id": 5123, "summary": "x"}]}, match=[paged(1, search_supplier_reference="hub-incident-42")])
    rsps.get(f"{API}/Tickets/5123", json=load("ticket_5123"))

    assert ticketing.find_by_reference("hub-incident-42").id == "5123"


def test_get_reports_closed_tickets(rsps, ticketing):
    rsps.get(f"{API}/Tickets/5123", json={**load("ticket_5123"), "status_id": 9, "hasbeenclosed": True})

    ref = ticketing.get("5123")

    assert ref.closed and ref.status_id == "9"


def test_update_sends_only_what_differs(rsps, ticketing):
    rsps.get(f"{API}/Tickets/5123", json=load("ticket_5123"))  # status 1, priority 2
    rsps.post(f"{API}/Tickets", json={**load("ticket_5123"), "status_id": 9, "hasbeenclosed": True}, match=[bearer(), body([{"id": 5123, "status_id": 9}])])

    ref = ticketing.update("5123", status_id="9", priority_id="2")

    assert ref.closed and ref.status_id == "9"


def test_update_to_the_current_state_writes_nothing(rsps, ticketing):
    rsps.get(f"{API}/Tickets/5123", json=load("ticket_5123"))

    ref = ticketing.update("5123", status_id="1", priority_id="2")

    assert ref.status_id == "1"
    assert [c.request.method for c in rsps.calls] == ["POST", "GET"]  # the token, then the read


def test_an_update_is_retried_after_a_502_because_it_is_idempotent(rsps, ticketing, sleeps):
    rsps.get(f"{API}/Tickets/5123", json=load("ticket_5123"))
    rsps.post(f"{API}/Tickets", status=502)
    rsps.post(f"{API}/Tickets", json={**load("ticket_5123"), "priority_id": 1})

    assert ticketing.update("5123", priority_id="1").id == "5123"
    assert len(sleeps) == 1


def test_add_note_uses_the_configured_outcome(rsps, make_provider):
    expect_token(rsps)
    note = [{"ticket_id": 5123, "outcome_id": 21, "note": "Seen again at 10:02, count 2", "hiddenfromuser": True, "sendemail": False}]
    rsps.post(f"{API}/Actions", json=load("action_saved"), match=[bearer(), body(note)])

    make_provider(note_outcome_id="21").ticketing().add_note("5123", "Seen again at 10:02, count 2")


def test_add_note_without_a_configured_outcome_finds_the_private_note_outcome(rsps, ticketing):
    rsps.get(f"{API}/Outcome", json=load("outcomes"))
    note = [{"ticket_id": 5123, "outcome_id": 21, "note": "Public update", "hiddenfromuser": False, "sendemail": False}]
    rsps.post(f"{API}/Actions", json=load("action_saved"), match=[body(note)])

    ticketing.add_note("5123", "Public update", internal=False)


def test_add_note_falls_back_to_outcome_7(rsps, ticketing):
    rsps.get(f"{API}/Outcome", json=[{"id": 1, "outcome": "Email User"}])
    rsps.post(f"{API}/Actions", json=load("action_saved"))

    ticketing.add_note("5123", "x")

    assert json.loads(rsps.calls[-1].request.body)[0]["outcome_id"] == 7


def test_a_missing_outcome_error_is_shown_in_halos_words(rsps, make_provider):
    expect_token(rsps)
    rsps.post(f"{API}/Actions", status=400, json={"ClassName": "HaloValidationException", "Message": "An Outcome must be entered for this Action"})

    with pytest.raises(InvalidError, match="An Outcome must be entered for this Action"):
        make_provider(note_outcome_id="999").ticketing().add_note("5123", "x")


@pytest.mark.parametrize("marker, found", [("[hub note 7]", True), ("[hub note 8]", False)])
def test_note_exists_reads_the_tickets_actions_for_the_marker(rsps, ticketing, marker, found):
    actions = {"actions": [{"id": 1, "note": "Ticket logged"},
                           {"id": 2, "note": "", "note_html": "<p>[hub note 7] Jane confirmed it was not her.</p>"}]}
    rsps.get(f"{API}/Actions", json=actions, match=[matchers.query_param_matcher({"ticket_id": "5123"})])

    assert ticketing.note_exists("5123", marker) is found

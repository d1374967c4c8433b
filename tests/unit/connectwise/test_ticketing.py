"""ConnectWiseTicketing: create with the reference in externalXRef, find it again, update only
what differs, notes, and ConnectWise's refusals in the seeds' words."""

from __future__ import annotations

import pytest

from integrations.base.errors import InvalidError, UnavailableError
from integrations.base.ticketing import TicketDraft, TicketRef
from integrations.connectwise import parse
from tests.unit.connectwise.support import API, auth, body, fixture, query

URL = (
    "https://na.myconnectwise.net/v4_6_release/services/system_io/Service/fv_sr100_request.rails"
    "?service_recid=5000&companyName=acme"
)
FIELDS = "id,summary,board,company,status,priority,closedFlag,externalXRef"

DRAFT = TicketDraft(
    reference="hub-incident-42",
    company_id="250",
    summary="Suspicious sign-in for jane@acmedental.example",
    description="Impossible travel: Sydney then Oslo within 10 minutes.",
    board_id="1",
    status_id="101",
    priority_id="1",
    type_id="201",
    subtype_id="302",
    item_id="401",
    source_id="4",
    team_id="501",
    contact_id="31",
)


def test_create_sends_every_mapped_value_and_the_reference(mocked_responses, provider):
    mocked_responses.post(
        API + "service/tickets",
        status=201,
        json=fixture("ticket.json"),
        match=[
            auth(),
            body(
                {
                    "summary": "Suspicious sign-in for jane@acmedental.example",
                    "company": {"id": 250},
                    "externalXRef": "hub-incident-42",
                    "initialDescription": "Impossible travel: Sydney then Oslo within 10 minutes.",
                    "board": {"id": 1},
                    "status": {"id": 101},
                    "priority": {"id": 1},
                    "type": {"id": 201},
                    "subType": {"id": 302},
                    "item": {"id": 401},
                    "source": {"id": 4},
                    "team": {"id": 501},
                    "contact": {"id": 31},
                }
            ),
        ],
    )

    ref = provider.ticketing().create(DRAFT)

    assert ref == TicketRef(id="5000", number="5000", status_id="101", closed=False, url=URL)


def test_create_keeps_within_connectwise_text_limits(mocked_responses, provider):
    long_title = "Mailbox rule forwards to external address\n" + "x" * 200
    details = "y" * 100_000
    sent = {}

    def capture(request):
        import json

        sent.update(json.loads(request.body))
        return True, ""

    mocked_responses.post(API + "service/tickets", status=201, json=fixture("ticket.json"), match=[capture])

    provider.ticketing().create(
        TicketDraft(reference="hub-incident-43", company_id="250", summary=long_title, description=details)
    )

    assert len(sent["summary"]) == 100 and sent["summary"].endswith("…") and "\n" not in sent["summary"]
    assert len(sent["initialDescription"]) == parse.TEXT_LIMIT
    assert "[Truncated by the hub:" in sent["initialDescription"]
    assert set(sent) == {"summary", "company", "externalXRef", "initialDescription"}


def test_a_board_without_a_default_team_gets_the_seed_explanation(mocked_responses, provider):
    mocked_responses.post(API + "service/tickets", status=400, json=fixture("error_default_team.json"))

    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(DRAFT)

    assert str(caught.value) == (
        "ConnectWise could not create the ticket: the Service Board has no Default Team (InvalidObject: ticket object "
        "is invalid - Cannot find default team for board specified (field: board)). In ConnectWise go to System > "
        "Setup Tables > Service Board, open the board, set an active Default Team, then retry."
    )
    assert caught.value.field == "board"
    assert caught.value.permanent


def test_other_validation_errors_show_connectwise_field_and_message(mocked_responses, provider):
    mocked_responses.post(API + "service/tickets", status=400, json=fixture("error_status_not_on_board.json"))

    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(DRAFT)

    assert str(caught.value) == (
        "ConnectWise could not create the ticket: InvalidObject: ticket object is invalid - Service Status 17 not "
        "found for Service Board 21 (field: status/id)"
    )
    assert caught.value.field == "status/id"


def test_a_create_with_a_lost_answer_is_left_to_the_reference_search(mocked_responses, provider):
    mocked_responses.post(API + "service/tickets", status=504, body="")

    with pytest.raises(UnavailableError) as caught:
        provider.ticketing().create(DRAFT)

    assert caught.value.outcome_unknown
    assert len(mocked_responses.calls) == 1


def test_bad_ids_are_refused_before_anything_is_sent(provider):
    with pytest.raises(InvalidError) as caught:
        provider.ticketing().create(
            TicketDraft(
                reference="hub-incident-1", company_id="250", summary="s", description="", board_id="Service Desk"
            )
        )
    assert caught.value.field == "board"
    with pytest.raises(InvalidError):
        provider.ticketing().create(TicketDraft(reference='x" or id>0', company_id="250", summary="s", description=""))


def test_find_by_reference_searches_external_xref(mocked_responses, provider):
    mocked_responses.get(
        API + "service/tickets",
        json=[fixture("ticket.json")],
        match=[
            query(conditions='externalXRef="hub-incident-42"', orderBy="id asc", fields=FIELDS, pageSize=1),
            auth(),
        ],
    )

    assert provider.ticketing().find_by_reference("hub-incident-42").id == "5000"


def test_find_by_reference_when_there_is_none(mocked_responses, provider):
    mocked_responses.get(
        API + "service/tickets",
        json=[],
        match=[query(conditions='externalXRef="hub-incident-7"', orderBy="id asc", fields=FIELDS, pageSize=1)],
    )

    assert provider.ticketing().find_by_reference("hub-incident-7") is None


def test_get(mocked_responses, provider):
    mocked_responses.get(
        API + "service/tickets/5000", json=fixture("ticket_closed.json"), match=[query(fields=FIELDS), auth()]
    )

    ref = provider.ticketing().get("5000")

    assert (ref.status_id, ref.closed, ref.url) == ("105", True, URL)


def test_update_patches_only_what_differs_as_whole_references(mocked_responses, provider):
    mocked_responses.get(API + "service/tickets/5000", json=fixture("ticket.json"), match=[query(fields=FIELDS)])
    mocked_responses.patch(
        API + "service/tickets/5000",
        json=fixture("ticket_closed.json"),
        match=[body([{"op": "replace", "path": "status", "value": {"id": 105}}]), auth()],
    )

    ref = provider.ticketing().update("5000", status_id="105", priority_id="1")

    assert ref.closed and ref.status_id == "105"


def test_update_both(mocked_responses, provider):
    mocked_responses.get(API + "service/tickets/5000", json=fixture("ticket.json"), match=[query(fields=FIELDS)])
    mocked_responses.patch(
        API + "service/tickets/5000",
        json=fixture("ticket.json"),
        match=[
            body(
                [
                    {"op": "replace", "path": "status", "value": {"id": 102}},
                    {"op": "replace", "path": "priority", "value": {"id": 3}},
                ]
            )
        ],
    )

    provider.ticketing().update("5000", status_id="102", priority_id="3")


def test_update_writes_nothing_when_the_ticket_is_already_there(mocked_responses, provider):
    mocked_responses.get(API + "service/tickets/5000", json=fixture("ticket.json"), match=[query(fields=FIELDS)])

    ref = provider.ticketing().update("5000", status_id="101", priority_id="1")

    assert ref.status_id == "101"
    assert [c.request.method for c in mocked_responses.calls] == ["GET"]


def test_a_patch_is_retried_after_a_gateway_error_since_it_is_absolute(mocked_responses, provider, recorder):
    mocked_responses.get(API + "service/tickets/5000", json=fixture("ticket.json"), match=[query(fields=FIELDS)])
    mocked_responses.patch(API + "service/tickets/5000", status=502, body="")
    mocked_responses.patch(API + "service/tickets/5000", json=fixture("ticket_closed.json"))

    assert provider.ticketing().update("5000", status_id="105").closed
    assert len(recorder.sleeps) == 1


@pytest.mark.parametrize("internal, flag", [(True, "internalAnalysisFlag"), (False, "detailDescriptionFlag")])
def test_add_note(mocked_responses, provider, internal, flag):
    mocked_responses.post(
        API + "service/tickets/5000/notes",
        status=201,
        json=fixture("ticket_note.json"),
        match=[body({"text": "Seen again at 2025-06-01 10:05 UTC, count 2", flag: True}), auth()],
    )

    provider.ticketing().add_note("5000", "Seen again at 2025-06-01 10:05 UTC, count 2", internal=internal)


@pytest.mark.parametrize("marker, found", [("[hub note 7]", True), ("[hub note 8]", False)])
def test_note_exists_reads_the_newest_notes_for_the_marker(mocked_responses, provider, marker, found):
    mocked_responses.get(
        API + "service/tickets/5000/notes",
        json=[{"id": 12, "text": "[hub note 7] Jane confirmed it was not her."}, {"id": 11, "text": "Called the user."}],
        match=[query(orderBy="id desc", fields="id,text", pageSize=100), auth()],
    )

    assert provider.ticketing().note_exists("5000", marker) is found

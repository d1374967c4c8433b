"""AutotaskTicketing against strict `responses`: the exact bodies of create, find, patch, note."""

from __future__ import annotations

import json

import pytest
from responses import matchers

from integrations.autotask.ticketing import DESCRIPTION_LIMIT
from integrations.base.errors import InvalidError, NotFoundError
from integrations.base.ticketing import TicketDraft
from tests.unit.autotask.conftest import API, assert_no_secret, assert_request, fixture

TICKET = fixture("ticket.json")["item"]
LINK = "https://ww14.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenTicketDetail&TicketID=7001"


@pytest.fixture
def ticketing(provider):
    return provider.ticketing()


def draft(**overrides) -> TicketDraft:
    values = dict(
        reference="hub-incident-42",
        company_id="174",
        summary="Suspicious sign-in",
        description="Impossible travel for ann@acme.example.",
        board_id="29682833",
        status_id="1",
        priority_id="1",
    )
    return TicketDraft(**{**values, **overrides})


def test_create_sends_only_what_is_set_and_reads_back_the_number(mocked_responses, ticketing, records):
    mocked_responses.post(API + "Tickets", json={"itemId": 7001})
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ref = ticketing.create(draft())
    assert_request(
        mocked_responses.calls[0],
        method="POST",
        url=API + "Tickets",
        body={
            "companyID": 174,
            "title": "Suspicious sign-in",
            "description": "Impossible travel for ann@acme.example.",
            "externalID": "hub-incident-42",
            "status": 1,
            "priority": 1,
            "queueID": 29682833,
        },
    )
    assert_request(mocked_responses.calls[1], method="GET", url=API + "Tickets/7001")
    assert (ref.id, ref.number, ref.status_id, ref.closed, ref.url) == ("7001", "T20250930.0256", "1", False, LINK)
    assert_no_secret(records)


def test_create_with_every_optional_setting(mocked_responses, ticketing):
    mocked_responses.post(
        API + "Tickets",
        match=[matchers.json_params_matcher({
            "companyID": 174, "title": "Suspicious sign-in", "description": "Impossible travel for ann@acme.example.",
            "externalID": "hub-incident-42", "status": 1, "priority": 1, "queueID": 29682833, "ticketType": 2,
            "source": 8, "issueType": 10, "subIssueType": 100, "ticketCategory": 3, "contactID": 30,
        })],
        json={"itemId": 7001},
    )  # fmt: skip
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ticketing.create(
        draft(
            type_id="2",
            source_id="8",
            contact_id="30",
            extra={"issue_type_id": "10", "sub_issue_type_id": "100", "ticket_category_id": "3"},
        )
    )


def test_a_sub_issue_type_without_its_issue_type_is_left_out(mocked_responses, ticketing):
    mocked_responses.post(API + "Tickets", json={"itemId": 7001})
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ticketing.create(draft(extra={"sub_issue_type_id": "100"}))
    assert "subIssueType" not in json.loads(mocked_responses.calls[0].request.body)


def test_long_title_and_description_are_shortened_with_a_note(mocked_responses, ticketing):
    mocked_responses.post(API + "Tickets", json={"itemId": 7001})
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ticketing.create(draft(summary="Alert\n" + "t" * 400, description="d" * 100_000))
    sent = json.loads(mocked_responses.calls[0].request.body)
    assert len(sent["title"]) == 255 and sent["title"].startswith("Alert ttt") and sent["title"].endswith("…")
    assert len(sent["description"]) == DESCRIPTION_LIMIT
    assert sent["description"].endswith(
        "[Shortened by the hub: the full text was longer than Autotask allows (8,000 characters).]"
    )


def test_a_reference_too_long_for_external_id_is_refused(mocked_responses, ticketing):
    with pytest.raises(InvalidError) as caught:
        ticketing.create(draft(reference="x" * 51))
    assert caught.value.field == "externalID"


def test_find_by_reference_queries_external_id(mocked_responses, ticketing):
    body = {
        "filter": [{"op": "eq", "field": "externalID", "value": "hub-incident-42"}],
        "MaxRecords": 5,
        "IncludeFields": ["id", "ticketNumber", "status", "externalID"],
    }
    mocked_responses.post(
        API + "Tickets/query",
        json={"items": [{"id": 7001, "ticketNumber": "T20250930.0256", "status": 5, "externalID": "hub-incident-42"}],
              "pageDetails": {"nextPageUrl": None}},
    )  # fmt: skip
    ref = ticketing.find_by_reference("hub-incident-42")
    assert_request(mocked_responses.calls[0], method="POST", url=API + "Tickets/query", body=body)
    assert (ref.id, ref.number, ref.closed) == ("7001", "T20250930.0256", True)


def test_find_by_reference_ignores_case_insensitive_near_misses(mocked_responses, ticketing):
    mocked_responses.post(
        API + "Tickets/query",
        json={"items": [{"id": 7001, "status": 1, "externalID": "HUB-INCIDENT-42"}], "pageDetails": {"nextPageUrl": None}},
    )
    assert ticketing.find_by_reference("hub-incident-42") is None


def test_find_by_reference_when_there_is_none(mocked_responses, ticketing):
    mocked_responses.post(API + "Tickets/query", json={"items": [], "pageDetails": {"nextPageUrl": None}})
    assert ticketing.find_by_reference("hub-incident-43") is None


def test_get_a_missing_ticket(mocked_responses, ticketing):
    mocked_responses.get(API + "Tickets/9", json={"item": None})
    with pytest.raises(NotFoundError):
        ticketing.get("9")


def test_update_patches_only_what_differs(mocked_responses, ticketing):
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    mocked_responses.patch(API + "Tickets", json={"itemId": 7001})
    ref = ticketing.update("7001", status_id="5", priority_id="1")
    assert_request(mocked_responses.calls[1], method="PATCH", url=API + "Tickets", body={"id": 7001, "status": 5})
    assert ref.status_id == "5" and ref.closed


def test_update_to_the_same_state_writes_nothing(mocked_responses, ticketing):
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ref = ticketing.update("7001", status_id="1", priority_id="1")
    assert len(mocked_responses.calls) == 1 and ref.status_id == "1"


def test_add_note_posts_under_the_ticket_with_title_type_and_publish(mocked_responses, ticketing):
    mocked_responses.get(API + "TicketNotes/entityInformation/fields", json=fixture("ticket_notes_fields.json"))
    mocked_responses.post(API + "Tickets/7001/Notes", json={"itemId": 99})
    mocked_responses.post(API + "Tickets/7001/Notes", json={"itemId": 100})
    ticketing.add_note("7001", "Seen again at 10:15, count 3\nDetails follow.")
    ticketing.add_note("7001", "Visible to all", internal=False)
    assert_request(
        mocked_responses.calls[1],
        method="POST",
        url=API + "Tickets/7001/Notes",
        body={
            "ticketID": 7001,
            "title": "Seen again at 10:15, count 3",
            "description": "Seen again at 10:15, count 3\nDetails follow.",
            "noteType": 3,  # the database's default note type
            "publish": 2,  # Internal Users Only
        },
    )
    assert json.loads(mocked_responses.calls[2].request.body)["publish"] == 1
    assert len(mocked_responses.calls) == 3  # the note metadata is read once


def test_note_type_chosen_in_settings_needs_no_metadata_for_the_type(mocked_responses, provider):
    from integrations.autotask.ticketing import AutotaskTicketing

    ticketing = AutotaskTicketing(provider.client, note_type_id="2", note_fields=lambda: {"fields": []})
    mocked_responses.post(
        API + "Tickets/5/Notes",
        match=[matchers.json_params_matcher({"ticketID": 5, "title": "Update from the hub", "description": "Update from the hub", "noteType": 2, "publish": 2})],
        json={"itemId": 1},
    )
    ticketing.add_note("5", "")


def test_contact_is_found_by_email_within_the_company(mocked_responses, ticketing):
    contacts = {
        "filter": [
            {"op": "eq", "field": "companyID", "value": 174},
            {"op": "eq", "field": "emailAddress", "value": "Ann@Acme.example"},
            {"op": "eq", "field": "isActive", "value": 1},
        ],
        "MaxRecords": 5,
        "IncludeFields": ["id", "emailAddress"],
    }
    mocked_responses.post(
        API + "Contacts/query",
        match=[matchers.json_params_matcher(contacts)],
        json={"items": [{"id": 31, "emailAddress": "ann@acme.example"}, {"id": 30, "emailAddress": "ann@acme.example"}],
              "pageDetails": {"nextPageUrl": None}},
    )  # fmt: skip
    mocked_responses.post(API + "Tickets", json={"itemId": 7001})
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ticketing.create(draft(contact_email="Ann@Acme.example"))
    assert json.loads(mocked_responses.calls[1].request.body)["contactID"] == 30


def test_unknown_contact_email_leaves_the_contact_out(mocked_responses, ticketing):
    mocked_responses.post(API + "Contacts/query", json={"items": [], "pageDetails": {"nextPageUrl": None}})
    mocked_responses.post(API + "Tickets", json={"itemId": 7001})
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ticketing.create(draft(contact_email="nobody@acme.example"))
    assert "contactID" not in json.loads(mocked_responses.calls[1].request.body)


def test_subtype_id_is_the_sub_issue_type(mocked_responses, ticketing):
    mocked_responses.post(API + "Tickets", json={"itemId": 7001})
    mocked_responses.get(API + "Tickets/7001", json={"item": TICKET})
    ticketing.create(draft(subtype_id="101", extra={"issue_type_id": "10"}))
    sent = json.loads(mocked_responses.calls[0].request.body)
    assert (sent["issueType"], sent["subIssueType"]) == (10, 101)


@pytest.mark.parametrize("description, found", [
    ("[hub note 7] Jane confirmed it was not her.", True),
    ("[HUB NOTE 7] a near miss: Autotask's contains may ignore case", False),
])  # fmt: skip
def test_note_exists_queries_the_tickets_notes_for_the_marker(mocked_responses, ticketing, description, found):
    mocked_responses.post(API + "TicketNotes/query",
                          json={"items": [{"id": 31, "description": description}], "pageDetails": {"nextPageUrl": None}})
    assert ticketing.note_exists("7001", "[hub note 7]") is found
    assert_request(mocked_responses.calls[0], method="POST", url=API + "TicketNotes/query", body={
        "filter": [{"op": "eq", "field": "ticketID", "value": 7001},
                   {"op": "contains", "field": "description", "value": "[hub note 7]"}],
        "MaxRecords": 1, "IncludeFields": ["id", "description"],
    })  # fmt: skip

"""REST API v1 for the ticketing settings: GET/PUT /ticketing/config and POST /ticketing/preview,
validated against cached picklists with the page's own form (no PSA call)."""

from __future__ import annotations

import json

import pytest

from integrations.models import CompanyMapping, Connection, Picklist, PsaCompany
from ticketing.forms import NO_DEFAULT_TEAM
from ticketing.models import Incident, TicketingConfig
from tests.factories import make_tenant
from tests.fakes.memory import cache_ticketing_lists

pytestmark = pytest.mark.django_db

CONFIG = "/api/v1/ticketing/config"
PREVIEW = "/api/v1/ticketing/preview"
STATUSES = {"Open": "10", "Pending": "12", "Done": "14", "Snoozed": "13", "Canceled": "15", "Dismissed": "15"}
PRIORITIES = {"Critical": "8", "High": "7", "Medium": "6", "Low": "5"}
CW = {"board_id": "1", "status_map": STATUSES, "priority_map": PRIORITIES, "type_id": "40", "source_id": "30"}


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache):
    """The in-memory PSA behind every vendor slug (nothing here may call it), a private cache."""


@pytest.fixture
def api(personas, api_for):
    return api_for(personas.account_a)


@pytest.fixture
def deliveries(monkeypatch):
    from ticketing import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.deliver_incident, "delay", lambda incident_id, correlation_id: sent.append(incident_id))
    return sent


def connect(account, vendor="connectwise", status=Connection.Status.CONNECTED) -> Connection:
    connection = Connection.objects.create(account=account, vendor=vendor, status=status)
    cache_ticketing_lists(connection)
    return connection


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"} and error["code"] == code and error["message"]
    if field is not None:
        assert field in error["fields"], error
        assert field in error["message"] or len(error["fields"]) > 1, error
    return error


# No PSA ----------------------------------------------------------------------------------------------------


def test_without_a_psa_the_config_is_a_conflict_that_says_link_one(personas, api):
    for response in (api.get(CONFIG), api.put(CONFIG, CW, format="json"),
                     api.post(PREVIEW, {"tenant": "x", "severity": "Low"}, format="json")):
        error = assert_error(response, 409, "conflict")
        assert error["message"].startswith("No PSA is linked to this account: link one first (PUT /api/v1/connection)")


def test_a_psa_not_connected_yet_is_a_conflict(personas, api):
    Connection.objects.create(account=personas.account_a, vendor="connectwise", status=Connection.Status.FAILED,
                              last_error="Authentication failed.")
    error = assert_error(api.get(CONFIG), 409, "conflict")
    assert error["message"].startswith("ConnectWise Manage is linked but not connected (Failed: Authentication failed.)")


# GET --------------------------------------------------------------------------------------------------------


def test_get_before_anything_is_saved(personas, api):
    connect(personas.account_a)
    body = api.get(CONFIG).json()
    assert body["vendor"] == "connectwise" and body["configured"] is False
    assert body["board_id"] == "" and body["reopen_within_hours"] == 24
    assert body["status_map"] == dict.fromkeys(STATUSES, "")
    assert body["missing_statuses"] == list(STATUSES) and body["missing_priorities"] == list(PRIORITIES)
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["board_id"] == {"name": "board_id", "label": "Service Board", "list": "boards", "parent": "",
                                  "parent_field": "", "required": True, "list_state": "ready", "list_error": ""}
    assert fields["status_map.Open"]["list"] == "statuses" and fields["status_map.Open"]["list_state"] == "needs_parent"
    assert fields["status_map.Open"]["parent_field"] == "board_id"
    assert set(fields) == {"board_id", *(f"status_map.{s}" for s in STATUSES), *(f"priority_map.{p}" for p in PRIORITIES),
                           "default_priority_id", "type_id", "subtype_id", "item_id", "source_id"}
    assert "team_id" not in body and "extra" not in body


def test_get_reads_for_every_role(personas, api_for):
    connect(personas.account_a)
    TicketingConfig.objects.create(account=personas.account_a, vendor="connectwise", board_id="2", board_name="Projects")
    body = api_for(personas.account_a, role="support").get(CONFIG).json()
    assert (body["board_id"], body["board_name"], body["configured"]) == ("2", "Projects", True)
    assert body["warnings"] == [NO_DEFAULT_TEAM]  # seed 000 step 3.5, before any ticket fails
    assert {f["name"]: f for f in body["fields"]}["status_map.Open"]["parent"] == "2"


# PUT --------------------------------------------------------------------------------------------------------


def test_put_saves_and_answers_the_settings(personas, api):
    connect(personas.account_a)
    response = api.put(CONFIG, {**CW, "reopen_within_hours": 12}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["board_id"], body["board_name"], body["configured"]) == ("1", "Help Desk", True)
    assert body["status_map"] == STATUSES and body["priority_map"] == PRIORITIES
    assert body["missing_statuses"] == [] and body["warnings"] == [] and body["reopen_within_hours"] == 12
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert (config.vendor, config.type_id, config.source_id, config.reopen_within_hours) == ("connectwise", "40", "30", 12)
    assert api.get(CONFIG).json() == body


def test_put_keeps_what_it_leaves_out_and_clears_what_is_empty(personas, api):
    connect(personas.account_a)
    api.put(CONFIG, CW, format="json")
    body = api.put(CONFIG, {"reopen_within_hours": 2, "status_map": {"Snoozed": ""}, "source_id": ""}, format="json").json()
    assert body["reopen_within_hours"] == 2 and body["board_id"] == "1" and body["type_id"] == "40"
    assert body["status_map"]["Snoozed"] == "" and body["status_map"]["Open"] == "10" and body["source_id"] == ""
    assert body["missing_statuses"] == ["Snoozed"]  # an incomplete mapping is saved and named


def test_put_validates_against_the_cached_lists_naming_the_field(personas, api):
    connect(personas.account_a)
    error = assert_error(api.put(CONFIG, {**CW, "status_map": {**STATUSES, "Open": "20"}}, format="json"),
                         400, "invalid", "status_map.Open")
    assert error["message"] == ("status_map.Open: Status for Open: “20” is not in ConnectWise's list of Service Board "
                                "“Help Desk”. Choose one from the list, or Refresh lists if it was added in ConnectWise recently.")
    error = assert_error(api.put(CONFIG, {"board_id": "3"}, format="json"), 400, "invalid", "board_id")  # inactive board
    assert "“3” is not in ConnectWise's list" in error["fields"]["board_id"][0]
    error = assert_error(api.put(CONFIG, {**CW, "priority_map": {"High": "99"}, "type_id": "42"}, format="json"), 400, "invalid")
    assert set(error["fields"]) == {"priority_map.High", "type_id"}
    assert_error(api.put(CONFIG, {**CW, "reopen_within_hours": -1}, format="json"), 400, "invalid", "reopen_within_hours")
    assert_error(api.put(CONFIG, {**CW, "status_map": {"Open": {"id": 1}}}, format="json"), 400, "invalid", "status_map.Open")
    assert not TicketingConfig.objects.exists()


def test_put_refuses_settings_this_psa_does_not_have(personas, api):
    connect(personas.account_a)
    error = assert_error(api.put(CONFIG, {**CW, "team_id": "5", "status_map": {**STATUSES, "new": "10"}}, format="json"),
                         400, "invalid")
    assert error["fields"] == {"team_id": ["ConnectWise has no such setting; leave team_id out."],
                               "status_map.new": ["ConnectWise has no such setting; leave status_map.new out."]}


def test_a_list_still_loading_is_named(personas, api):
    connection = connect(personas.account_a)
    Picklist.objects.filter(connection=connection, kind="sources").update(fetched_at=None, items=[])
    error = assert_error(api.put(CONFIG, CW, format="json"), 400, "invalid", "source_id")
    assert error["fields"]["source_id"] == ["Source: the list is still loading from ConnectWise; save again in a moment."]


def test_changing_the_board_clears_the_old_boards_statuses_unless_sent(personas, api):
    connect(personas.account_a)
    api.put(CONFIG, CW, format="json")
    body = api.put(CONFIG, {"board_id": "2"}, format="json").json()
    assert (body["board_id"], body["board_name"]) == ("2", "Projects")
    assert body["status_map"] == dict.fromkeys(STATUSES, "") and body["type_id"] == ""
    assert body["priority_map"] == PRIORITIES and body["source_id"] == "30"  # not per board
    assert body["missing_statuses"] == list(STATUSES) and body["warnings"] == [NO_DEFAULT_TEAM]
    # Statuses sent with the new board must be that board's.
    error = assert_error(api.put(CONFIG, {"board_id": "1", "status_map": {"Open": "20"}}, format="json"),
                         400, "invalid", "status_map.Open")
    assert "Service Board “Help Desk”" in error["message"]
    body = api.put(CONFIG, {"board_id": "1", "status_map": {"Open": "10", "Done": "14"}}, format="json").json()
    assert body["status_map"]["Open"] == "10" and body["status_map"]["Done"] == "14" and body["status_map"]["Pending"] == ""


def test_put_needs_an_operator(personas, api_for):
    connect(personas.account_a)
    assert_error(api_for(personas.account_a, role="support").put(CONFIG, CW, format="json"), 403, "forbidden")
    assert api_for(personas.account_a, role="operator").put(CONFIG, CW, format="json").status_code == 200


def test_default_company_must_be_imported_and_releases_waiting_incidents(
    personas, api, deliveries, django_capture_on_commit_callbacks
):
    connection = connect(personas.account_a)
    tenant = make_tenant(personas.account_a)
    waiting = Incident.objects.create(account=personas.account_a, tenant=tenant, title="t", severity="Low",
                                      sync_state=Incident.Sync.NEEDS_MAPPING)
    error = assert_error(api.put(CONFIG, {**CW, "default_company_id": "250"}, format="json"), 400, "invalid", "default_company_id")
    assert "Import customers under Integrations" in error["message"]
    PsaCompany.objects.create(connection=connection, company_id="250", name="Acme Corp")
    with django_capture_on_commit_callbacks(execute=True):
        body = api.put(CONFIG, {**CW, "default_company_id": "250"}, format="json").json()
    assert (body["default_company_id"], body["default_company_name"]) == ("250", "Acme Corp")
    waiting.refresh_from_db()
    assert waiting.sync_state == Incident.Sync.PENDING and deliveries == [waiting.pk]


def test_autotask_and_halo_documents(personas, api, api_for):
    connect(personas.account_a, vendor="autotask")
    body = api.put(CONFIG, {
        "board_id": "29683", "status_map": {"new": "1", "Open": "8"}, "priority_map": {"Critical": "4"},
        "type_id": "2", "extra": {"issue_type_id": "10", "sub_issue_type_id": "100"},
    }, format="json").json()
    assert body["vendor"] == "autotask" and body["board_name"] == "Level I Support"
    assert body["status_map"]["new"] == "1" and body["extra"] == {"issue_type_id": "10", "sub_issue_type_id": "100"}
    assert "default_priority_id" not in body and "subtype_id" not in body
    error = assert_error(api.put(CONFIG, {"extra": {"sub_issue_type_id": "110"}}, format="json"),
                         400, "invalid", "extra.sub_issue_type_id")
    assert "Issue Type “Security”" in error["message"]
    assert_error(api.put(CONFIG, {"extra": {"note_outcome_id": "7"}}, format="json"), 400, "invalid", "extra.note_outcome_id")

    connect(personas.account_b, vendor="halo")
    halo = api_for(personas.account_b)
    body = halo.put(CONFIG, {"board_id": "3", "status_map": {"Open": "1", "Done": "9"}, "priority_map": {"Critical": "1"},
                             "team_id": "6", "extra": {"note_outcome_id": "7"}}, format="json").json()
    assert (body["board_name"], body["team_id"], body["extra"]) == ("Alert", "6", {"note_outcome_id": "7"})
    # Halo priorities belong to the ticket type's SLA: "2" is not one of the Alert type's.
    assert_error(halo.put(CONFIG, {"priority_map": {"High": "2"}}, format="json"), 400, "invalid", "priority_map.High")
    assert TicketingConfig.objects.get(account=personas.account_a).vendor == "autotask"


# Preview ------------------------------------------------------------------------------------------------------


def test_preview_of_a_mapped_tenant(personas, api):
    connect(personas.account_a)
    api.put(CONFIG, CW, format="json")
    tenant = make_tenant(personas.account_a, external_id="contoso-1")
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250", company_name="Contoso Ltd")
    incidents = Incident.objects.count()
    response = api.post(PREVIEW, {"tenant": "contoso-1", "severity": "High"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "ready": True, "state": "", "message": "", "note": "", "tenant": "contoso-1", "severity": "High",
        "company": {"id": "250", "name": "Contoso Ltd", "source": "mapping"},
        "board": {"id": "1", "name": "Help Desk"},
        "status": {"id": "10", "name": "New"},
        "priority": {"id": "7", "name": "Priority 2 - Quick Response"},
        "type": {"id": "40", "name": "Security"},
    }
    assert Incident.objects.count() == incidents


def test_preview_not_ready_says_why(personas, api, api_for):
    connection = connect(personas.account_a)
    tenant = make_tenant(personas.account_a, name="Initech", external_id="initech")
    body = api.post(PREVIEW, {"tenant": "initech", "severity": "Low"}, format="json").json()
    assert body["ready"] is False and body["company"] is None
    assert body["message"] == "Ticketing is not set up: choose the board or queue on the Ticketing page."
    api.put(CONFIG, CW, format="json")
    body = api.post(PREVIEW, {"tenant": "initech", "severity": "Low"}, format="json").json()
    assert (body["ready"], body["state"]) == (False, "needs_mapping")
    assert body["message"].startswith("Tenant “Initech” is not mapped to a PSA company and no default company is set.")
    PsaCompany.objects.create(connection=connection, company_id="251", name="Fallback Inc")
    api.put(CONFIG, {"default_company_id": "251"}, format="json")
    Connection.objects.filter(pk=connection.pk).update(paused=True)
    body = api_for(personas.account_a, role="support").post(PREVIEW, {"tenant": "initech", "severity": "Low"}, format="json").json()
    assert body["ready"] is True and body["company"] == {"id": "251", "name": "Fallback Inc", "source": "default"}
    assert body["note"] == "The integration is paused: incidents are held and sent when it is resumed."
    assert tenant.incidents.count() == 0


def test_preview_bad_input(personas, api, api_for):
    connect(personas.account_a)
    make_tenant(personas.account_b, external_id="theirs")
    error = assert_error(api.post(PREVIEW, {"tenant": "theirs", "severity": "Low"}, format="json"), 404, "not_found")
    assert error["message"] == "tenant: no tenant with external_id 'theirs' in this account."
    error = assert_error(api.post(PREVIEW, {"tenant": "theirs", "severity": "Severe"}, format="json"), 400, "invalid", "severity")
    assert error["fields"]["severity"] == ["Severe is not a valid severity; use one of: Critical, High, Medium, Low."]
    assert_error(api.post(PREVIEW, {"severity": "Low"}, format="json"), 400, "invalid", "tenant")


def test_the_outsider_reaches_only_their_own_account(personas, api_for):
    connect(personas.account_a)
    api_for(personas.account_a).put(CONFIG, CW, format="json")
    outsider = api_for(personas.account_b)
    assert_error(outsider.get(CONFIG), 409, "conflict")  # account B has no PSA; A's settings are not shown
    assert_error(outsider.put(CONFIG, CW, format="json"), 409, "conflict")
    assert TicketingConfig.objects.filter(account=personas.account_b).count() == 0


def test_unauthenticated(client):
    for response in (client.get(CONFIG), client.post(PREVIEW, {}, content_type="application/json")):
        assert response.status_code in (401, 403)


# Schema -------------------------------------------------------------------------------------------------------------


def test_the_schema_has_the_ticketing_endpoints(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    paths = schema["paths"]
    assert {"get", "put"} <= set(paths["/api/v1/ticketing/config"])
    assert "post" in paths["/api/v1/ticketing/preview"]
    put = paths["/api/v1/ticketing/config"]["put"]
    request_schema = put["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    properties = schema["components"]["schemas"][request_schema]["properties"]
    assert {"board_id", "status_map", "priority_map", "default_company_id", "reopen_within_hours", "extra"} <= set(properties)
    status_map = schema["components"]["schemas"][properties["status_map"]["$ref"].rsplit("/", 1)[1]]["properties"]
    assert set(status_map) == {"Open", "Pending", "Done", "Snoozed", "Canceled", "Dismissed", "new"}
    preview = paths["/api/v1/ticketing/preview"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert {"ready", "message", "company", "board", "status", "priority", "type"} <= set(
        schema["components"]["schemas"][preview.rsplit("/", 1)[1]]["properties"]
    )

"""REST API v1 for incidents: report (201), repeat (200, deduplicated), read back with the
ticket and its sync state, change status/severity/details, notes, retry, list filters; the
bad input of issue 4 (unknown tenant, invalid values, 100 kB details, HTML in a title); roles,
account scoping and the OpenAPI schema. The PSA behind it is the in-memory one."""

from __future__ import annotations

import json

import pytest
import responses
from django.utils import timezone

from integrations import services as integration_services
from integrations.base.ticketing import TicketDraft
from integrations.connectwise import parse as cw_parse
from integrations.connectwise.provider import ConnectWiseProvider
from integrations.models import CompanyMapping, Connection
from ticketing.models import SEVERITIES, STATUSES, Incident, TicketingConfig
from tests.factories import make_tenant
from tests.fakes import memory
from tests.unit.connectwise.support import API as CW_API
from tests.unit.connectwise.support import CONFIG as CW_CONFIG
from tests.unit.connectwise.support import SECRETS as CW_SECRETS
from tests.unit.connectwise.support import Recorder, fixture

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents/"
STATUS_MAP = {"Open": "10", "Pending": "12", "Done": "11", "Snoozed": "13", "Canceled": "14", "Dismissed": "15"}
PRIORITY_MAP = {"Critical": "1", "High": "2", "Medium": "3", "Low": "4"}


def url(incident_id, action: str = "") -> str:
    return f"{URL}{incident_id}/" + (f"{action}/" if action else "")


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"} and error["code"] == code and error["message"]
    if field is not None:
        assert field in error["fields"], error
    return error


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    """The limiter uses Django's cache: a private in-memory one per test."""


@pytest.fixture
def psa(memory_psa):
    memory.tickets.reset()
    memory.tickets.closed_statuses = {"11", "14", "15"}
    yield memory_psa
    memory.tickets.reset()


@pytest.fixture
def setup(personas, psa, eager_tasks, django_capture_on_commit_callbacks):
    """Account A linked to the memory PSA, ticketing set up, one mapped tenant."""
    with django_capture_on_commit_callbacks(execute=True):
        connection = integration_services.save_connection(
            personas.account_a, "connectwise", {"site": "acme.example.com"}, {"api_key": "mem-secret-api-77"}
        )
    connection.refresh_from_db()
    assert connection.status == Connection.Status.CONNECTED
    TicketingConfig.objects.create(
        account=personas.account_a, vendor="connectwise", board_id="1", board_name="Help Desk",
        status_map=dict(STATUS_MAP), priority_map=dict(PRIORITY_MAP),
    )  # fmt: skip
    tenant = make_tenant(personas.account_a, name="Globex", external_id="globex")
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="2", company_name="Globex, Inc.")
    psa.calls.clear()
    return tenant


@pytest.fixture
def api(personas, api_for):
    return api_for(personas.account_a)


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """send(call) -> the response, with the deliveries it queued run by the (eager) worker."""

    def call(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return call


def body(**fields) -> dict:
    return {"tenant": "globex", "title": "Suspicious sign-in", "severity": "High", **fields}


# Reporting -------------------------------------------------------------------------------------------


def test_report_answers_at_once_before_the_ticket_is_made(setup, api, psa, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = api.post(URL, body(details="Impossible travel.", dedupe_key="k1", contact_email="jane@globex.example",
                                      source_url="https://host.example/a/1"), format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["deduplicated"] is False
    assert data["tenant"] == "globex" and data["status"] == "Open" and data["severity"] == "High"
    assert data["ticket"] is None
    assert data["sync"] == {"state": "pending", "error": "", "attempts": 0, "synced_at": None}
    assert data["occurrences"] == 1 and data["status_source"] == "api"
    assert Incident.objects.filter(pk=data["id"]).exists()
    assert psa.calls == [] and len(queued) == 1  # the delivery goes after the commit


def test_report_then_read_back_the_ticket_and_its_sync_state(setup, api, send):
    created = send(api.post, URL, body(), format="json").json()
    data = api.get(url(created["id"])).json()
    ticket = next(iter(memory.tickets.records.values()))
    assert data["ticket"] == {"id": ticket["id"], "number": ticket["number"],
                              "url": f"https://psa.example.com/tickets/{ticket['id']}", "closed": False}  # fmt: skip
    assert data["sync"]["state"] == "synced" and data["sync"]["attempts"] == 1 and data["sync"]["synced_at"]


def test_a_repeat_answers_200_with_the_same_incident(setup, api, send):
    first = send(api.post, URL, body(dedupe_key="mailbox-rule:jane"), format="json")
    again = send(api.post, URL, body(dedupe_key="mailbox-rule:jane"), format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["deduplicated"] is True
    assert again.json()["id"] == first.json()["id"] and again.json()["occurrences"] == 2
    assert len(memory.tickets.records) == 1


def test_change_status_severity_and_details(setup, api, send):
    incident = send(api.post, URL, body(severity="Low"), format="json").json()
    response = send(api.patch, url(incident["id"]), {"status": "Done", "severity": "Critical", "details": "Resolved."}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "Done" and response.json()["details"] == "Resolved."
    ticket = next(iter(memory.tickets.records.values()))
    assert (ticket["status_id"], ticket["priority_id"], ticket["closed"]) == ("11", "1", True)
    assert api.get(url(incident["id"])).json()["ticket"]["closed"] is True


def test_a_change_needs_at_least_one_field(setup, api, send):
    incident = send(api.post, URL, body(), format="json").json()
    assert_error(api.patch(url(incident["id"]), {}, format="json"), 400, "invalid")
    assert_error(api.patch(url(incident["id"]), {"title": "renamed"}, format="json"), 400, "invalid")


def test_a_note_goes_to_the_ticket(setup, api, send):
    incident = send(api.post, URL, body(), format="json").json()
    response = send(api.post, url(incident["id"], "notes"), {"text": "Jane confirmed."}, format="json")
    assert response.status_code == 202, response.content
    [text] = next(iter(memory.tickets.notes.values()))
    assert text.endswith("Jane confirmed.")
    assert_error(api.post(url(incident["id"], "notes"), {"text": ""}, format="json"), 400, "invalid", "text")


def test_retry_a_failed_incident(setup, api, send, psa):
    psa.mode = "auth_failed"  # permanent: failed at once
    incident = send(api.post, URL, body(), format="json").json()
    failed = api.get(url(incident["id"])).json()
    assert failed["sync"]["state"] == "failed" and failed["sync"]["error"].startswith("Authentication failed")

    psa.mode = "ok"
    response = send(api.post, url(incident["id"], "retry"))
    assert response.status_code == 202
    assert api.get(url(incident["id"])).json()["sync"]["state"] == "synced"
    assert len(memory.tickets.records) == 1


def test_list_filters(personas, setup, api, send):
    other = make_tenant(personas.account_a, name="Initech", external_id="initech")
    a = send(api.post, URL, body(severity="Critical", dedupe_key="a"), format="json").json()
    b = send(api.post, URL, body(tenant="initech", severity="Low", dedupe_key="b"), format="json").json()  # needs mapping
    c = send(api.post, URL, body(severity="Low", status="Pending", dedupe_key="c"), format="json").json()
    assert other.pk

    def ids(**params):
        response = api.get(URL, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [c["id"], b["id"], a["id"]]  # newest first
    assert ids(tenant="initech") == [b["id"]]
    assert ids(severity="Low") == [c["id"], b["id"]]
    assert ids(status="Pending") == [c["id"]]
    assert ids(sync_state="needs_mapping") == [b["id"]]
    assert ids(sync_state="synced", severity="Critical") == [a["id"]]

    since = timezone.now()
    send(api.patch, url(a["id"]), {"status": "Snoozed"}, format="json")
    assert ids(changed_since=since.isoformat()) == [a["id"]]

    assert "Critical, High, Medium, Low" in assert_error(api.get(URL, {"severity": "Urgent"}), 400, "invalid", "severity")["message"]
    assert_error(api.get(URL, {"sync_state": "lost"}), 400, "invalid", "sync_state")
    assert "ISO 8601" in assert_error(api.get(URL, {"changed_since": "yesterday"}), 400, "invalid", "changed_since")["message"]


# Bad input ---------------------------------------------------------------------------------------------


def test_unknown_tenant_is_a_404_naming_the_external_id(setup, api, psa):
    error = assert_error(api.post(URL, body(tenant="no-such-tenant"), format="json"), 404, "not_found")
    assert "'no-such-tenant'" in error["message"]
    assert Incident.objects.count() == 0 and psa.calls == []


def test_an_unmapped_tenant_is_accepted_and_held_as_needing_mapping(personas, setup, api, send):
    make_tenant(personas.account_a, name="Initech", external_id="initech")
    response = send(api.post, URL, body(tenant="initech"), format="json")
    assert response.status_code == 201
    data = api.get(url(response.json()["id"])).json()
    assert data["sync"]["state"] == "needs_mapping" and "Initech" in data["sync"]["error"]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("severity", "Urgent", SEVERITIES), ("status", "Closed", STATUSES), ("severity", "high", SEVERITIES)],
)
def test_invalid_severity_or_status_is_a_400_naming_the_allowed_values(setup, api, send, field, value, allowed):
    error = assert_error(api.post(URL, body(**{field: value}), format="json"), 400, "invalid", field)
    assert f"use one of: {', '.join(allowed)}" in error["fields"][field][0]
    assert Incident.objects.count() == 0

    incident = send(api.post, URL, body(), format="json").json()
    error = assert_error(api.patch(url(incident["id"]), {field: value}, format="json"), 400, "invalid", field)
    assert f"use one of: {', '.join(allowed)}" in error["fields"][field][0]


def test_missing_fields_are_named(setup, api):
    error = assert_error(api.post(URL, {"tenant": "globex"}, format="json"), 400, "invalid")
    assert {"title", "severity"} <= set(error["fields"])


def test_100_kb_details_are_accepted_and_stored_whole(setup, api, send):
    details = "Mailbox rule forwarding to an outside address.\n" * 2200  # about 105 kB
    assert len(details) > 100_000
    response = send(api.post, URL, body(details=details), format="json")
    assert response.status_code == 201
    incident = Incident.objects.get(pk=response.json()["id"])
    assert incident.details == details.strip() and incident.sync_state == Incident.Sync.SYNCED


def test_100_kb_details_fit_the_connectwise_ticket_with_a_note(setup, api, send):
    """What the ConnectWise adapter sends for that incident stays inside its text limit and says so."""
    details = "x" * 105_000
    send(api.post, URL, body(details=details), format="json")
    description = next(iter(memory.tickets.records.values()))["description"]
    recorder = Recorder()
    provider = ConnectWiseProvider(dict(CW_CONFIG), dict(CW_SECRETS), recorder.transport())
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mocked:
        mocked.post(CW_API + "service/tickets", status=201, json=fixture("ticket.json"))
        provider.ticketing().create(TicketDraft(reference="hub-1-1", company_id="250", summary="T" * 300, description=description))
        sent = json.loads(mocked.calls[0].request.body)
    assert len(sent["initialDescription"]) <= cw_parse.TEXT_LIMIT
    assert "[Truncated by the hub:" in sent["initialDescription"] and sent["initialDescription"].startswith("xxx")
    assert len(sent["summary"]) <= cw_parse.SUMMARY_LIMIT


def test_html_in_a_title_is_stored_as_sent(setup, api, send):
    """Escaping is the pages' job; the API keeps what the host product said."""
    title = '<script>alert("x")</script><b>Sign-in</b> & more'
    created = send(api.post, URL, body(title=title), format="json").json()
    assert api.get(url(created["id"])).json()["title"] == title
    assert Incident.objects.get(pk=created["id"]).title == title
    assert next(iter(memory.tickets.records.values()))["summary"] == title


# Roles and accounts -------------------------------------------------------------------------------------


def test_a_support_key_reads_but_cannot_write(personas, setup, api, api_for, send):
    incident = send(api.post, URL, body(), format="json").json()
    support = api_for(personas.account_a, role="support")
    assert support.get(URL).status_code == 200
    assert support.get(url(incident["id"])).status_code == 200
    assert_error(support.post(URL, body(dedupe_key="x"), format="json"), 403, "forbidden")
    assert_error(support.patch(url(incident["id"]), {"status": "Done"}, format="json"), 403, "forbidden")
    assert_error(support.post(url(incident["id"], "notes"), {"text": "hi"}, format="json"), 403, "forbidden")
    assert_error(support.post(url(incident["id"], "retry")), 403, "forbidden")
    assert Incident.objects.get(pk=incident["id"]).status == "Open" and Incident.objects.count() == 1


def test_another_account_sees_none_of_these_incidents(personas, setup, api, api_for, send):
    incident = send(api.post, URL, body(), format="json").json()
    outsider = api_for(personas.account_b)
    assert outsider.get(URL).json()["count"] == 0
    assert_error(outsider.get(url(incident["id"])), 404, "not_found")
    assert_error(outsider.patch(url(incident["id"]), {"status": "Done"}, format="json"), 404, "not_found")
    assert_error(outsider.post(url(incident["id"], "notes"), {"text": "hi"}, format="json"), 404, "not_found")
    assert_error(outsider.post(url(incident["id"], "retry")), 404, "not_found")
    # A's tenant is unknown to B.
    assert "'globex'" in assert_error(outsider.post(URL, body(), format="json"), 404, "not_found")["message"]
    assert Incident.objects.get(pk=incident["id"]).status == "Open"


def test_no_key_is_a_401(client):
    assert client.get(URL).status_code == 401


def test_every_incident_endpoint_is_in_the_schema(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    paths = {path.rstrip("/"): methods for path, methods in schema["paths"].items()}
    expected = {
        "/api/v1/incidents": {"get", "post"},
        "/api/v1/incidents/{id}": {"get", "patch"},
        "/api/v1/incidents/{id}/notes": {"post"},
        "/api/v1/incidents/{id}/retry": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, set(paths[path]))
    list_params = {p["name"] for p in paths["/api/v1/incidents"]["get"]["parameters"]}
    assert {"tenant", "status", "severity", "sync_state", "changed_since"} <= list_params
    assert set(paths["/api/v1/incidents"]["post"]["responses"]) >= {"200", "201"}

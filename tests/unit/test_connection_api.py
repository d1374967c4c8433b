"""REST API v1 for the PSA link: /connection (+ verify, permissions, picklists, pause, resume)
and /tenants/{external_id}/company, against the in-memory PSA."""

from __future__ import annotations

import json

import pytest

from integrations import services
from integrations.models import CompanyMapping, Connection, IntegrationLog, Picklist
from tests.factories import make_tenant
from tests.fakes import memory

pytestmark = pytest.mark.django_db

SECRET = "api-secret-5d1f0b9e3c"
URL = "/api/v1/connection"
LINK = {"vendor": "connectwise", "credentials": {"site": "acme.example.com", "api_key": SECRET}}


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache):
    """The in-memory PSA behind every vendor slug, and a private cache."""


@pytest.fixture
def api(personas, api_for):
    return api_for(personas.account_a)


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"} and error["code"] == code and error["message"]
    if field is not None:
        assert field in error["fields"], error
        assert field in error["message"], error
    return error


def link_a(personas, status=Connection.Status.CONNECTED) -> Connection:
    connection = services.save_connection(personas.account_a, "connectwise", {"site": "acme.example.com"}, {"api_key": SECRET})
    Connection.objects.filter(pk=connection.pk).update(status=status)
    connection.refresh_from_db()
    return connection


# /connection ----------------------------------------------------------------------------------------------


def test_no_connection_is_a_404_that_says_how_to_link(personas, api):
    error = assert_error(api.get(URL), 404, "not_found")
    assert error["message"] == "No PSA is linked to this account. PUT /api/v1/connection to link one."


def test_put_links_and_queues_verification(personas, api, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.put(URL, LINK, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["vendor"] == "connectwise" and body["status"] == "verifying"
    assert body["config"] == {"site": "acme.example.com"}
    assert body["secrets"] == {"api_key": "set"}
    assert SECRET not in response.content.decode()
    connection = Connection.objects.for_account(personas.account_a).get()
    assert services.load_credentials(connection) == {"api_key": SECRET}
    assert [name for name, _ in queued] == ["verify_connection"]

    body = api.get(URL).json()
    assert body["secrets"] == {"api_key": "set"} and SECRET not in json.dumps(body)
    assert set(body) == {
        "vendor", "status", "last_error", "config", "secrets", "verified_at", "paused", "billing_paused",
        "permissions", "permissions_checked_at", "companies_imported_at", "created_at", "updated_at",
    }


def test_put_form_errors_name_the_credential_field(personas, api):
    error = assert_error(api.put(URL, {"vendor": "connectwise", "credentials": {"site": "a.example.com"}}, format="json"),
                         400, "invalid", "credentials.api_key")
    assert error["fields"]["credentials.api_key"] == ["Enter the API key."]
    error = assert_error(api.put(URL, {"vendor": "connectwise", "credentials": {"site": "", "api_key": SECRET}}, format="json"),
                         400, "invalid", "credentials.site")
    assert SECRET not in json.dumps(error)
    assert_error(api.put(URL, {"vendor": "nosuchpsa", "credentials": {}}, format="json"), 400, "invalid", "vendor")
    assert_error(api.put(URL, {"vendor": "connectwise"}, format="json"), 400, "invalid", "credentials")
    assert not Connection.objects.exists()


def test_put_update_keeps_the_secret_when_left_out(personas, api, queued):
    connection = link_a(personas)
    response = api.put(URL, {"vendor": "connectwise", "credentials": {"site": "new.example.com"}}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["secrets"] == {"api_key": "set"}
    connection.refresh_from_db()
    assert services.load_credentials(connection) == {"api_key": SECRET}
    assert connection.config["site"] == "new.example.com"


def test_put_another_vendor_is_a_conflict(personas, api):
    link_a(personas)
    error = assert_error(api.put(URL, {"vendor": "halo", "credentials": {"site": "h.example.com", "api_key": "x"}}, format="json"),
                         409, "conflict")
    assert "linked to ConnectWise Manage" in error["message"] and "Remove that integration first" in error["message"]
    assert Connection.objects.get().vendor == "connectwise"


def test_delete_removes_everything_and_logs_it(personas, api):
    connection = link_a(personas)
    tenant = make_tenant(personas.account_a)
    services.import_companies(str(connection.pk), "cid")
    services.map_tenant(personas.account_a, tenant, "1")
    assert api.delete(URL).status_code == 204
    assert not Connection.objects.exists() and not CompanyMapping.objects.exists()
    assert IntegrationLog.objects.filter(action="connection.remove", connection__isnull=True).exists()
    assert_error(api.get(URL), 404, "not_found")
    assert_error(api.delete(URL), 404, "not_found")


def test_a_failed_verification_shows_in_get_without_the_secret(
    personas, api, memory_psa, eager_tasks, django_capture_on_commit_callbacks
):
    memory_psa.mode = "auth_failed"
    with django_capture_on_commit_callbacks(execute=True):
        api.put(URL, LINK, format="json")
    body = api.get(URL).json()
    assert body["status"] == "failed"
    assert body["last_error"].startswith("Authentication failed: re-check the Site and the API key.")
    for response in (api.get(URL), api.get(f"{URL}/permissions"), api.get(f"{URL}/picklists/boards")):
        assert SECRET not in response.content.decode()
    for log in IntegrationLog.objects.all():
        assert SECRET not in " ".join(str(value) for value in log.__dict__.values())


def test_verify_is_queued(personas, api, queued, django_capture_on_commit_callbacks):
    connection = link_a(personas)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{URL}/verify")
    assert response.status_code == 202 and response.json()["status"] == "verifying"
    assert queued == [("verify_connection", (str(connection.pk), queued[0][1][1]))]


# Permissions ------------------------------------------------------------------------------------------


def test_permissions_report_and_check(personas, api, memory_psa, queued, django_capture_on_commit_callbacks):
    connection = link_a(personas)
    body = api.get(f"{URL}/permissions").json()
    assert body == {"checked_at": None, "ok": False, "missing": [], "checks": []}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{URL}/permissions")
    assert response.status_code == 202 and response.json()["queued"] is True
    assert [name for name, _ in queued] == ["check_permissions"]

    memory_psa.permission_report = memory.missing_priority_report()
    services.check_permissions(str(connection.pk), "cid")
    body = api.get(f"{URL}/permissions").json()
    assert body["ok"] is False and body["checked_at"]
    assert [m["label"] for m in body["missing"]] == ["Service > Priority"]
    assert body["missing"][0]["message"] == "Memory PSA API user does not have permission to access Service > Priority."
    assert len(body["checks"]) == 3
    assert api.get(URL).json()["permissions"][1]["ok"] is False


# Picklists ------------------------------------------------------------------------------------------------


def test_picklists(personas, api, queued, django_capture_on_commit_callbacks):
    connection = link_a(personas)
    services.refresh_picklist(str(connection.pk), "priorities", "", "cid")
    body = api.get(f"{URL}/picklists/priorities").json()
    assert body["kind"] == "priorities" and body["refreshing"] is False and body["error"] == ""
    assert [(i["id"], i["name"]) for i in body["items"]] == [("8", "Priority 1 - Critical"), ("9", "Priority 3 - Normal")]
    assert queued == []  # fresh: nothing to do

    with django_capture_on_commit_callbacks(execute=True):
        body = api.get(f"{URL}/picklists/priorities", {"refresh": "1"}).json()
    assert body["refreshing"] is True and len(body["items"]) == 2
    assert [(name, args[1:3]) for name, args in queued] == [("refresh_picklist", ("priorities", ""))]

    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        body = api.get(f"{URL}/picklists/statuses", {"parent": "1"}).json()
    assert body == {"kind": "statuses", "parent": "1", "fetched_at": None, "refreshing": True, "error": "", "items": []}
    assert [(name, args[1:3]) for name, args in queued] == [("refresh_picklist", ("statuses", "1"))]
    services.refresh_picklist(str(connection.pk), "statuses", "1", "cid")
    body = api.get(f"{URL}/picklists/statuses", {"parent": "1"}).json()
    assert [i["name"] for i in body["items"]] == ["New", "Closed"] and body["items"][1]["extra"] == {"closed": True}


def test_picklist_errors(personas, api):
    link_a(personas)
    error = assert_error(api.get(f"{URL}/picklists/teams"), 404, "not_found")
    assert "has no list 'teams'" in error["message"]
    assert "companies, boards, priorities, statuses" in error["message"]
    error = assert_error(api.get(f"{URL}/picklists/statuses"), 400, "invalid", "parent")
    assert "belongs to a board" in error["message"]
    assert not Picklist.objects.filter(kind__in=["teams", "statuses"]).exists()


def test_picklist_shows_the_refresh_error(personas, api, memory_psa):
    connection = link_a(personas)
    memory_psa.mode = "permission_missing"
    services.refresh_picklist(str(connection.pk), "boards", "", "cid")
    body = api.get(f"{URL}/picklists/boards").json()
    assert body["error"].startswith("Could not refresh boards: Memory PSA API user does not have permission")


def test_companies_picklist_comes_from_imported_companies(personas, api, memory_psa):
    connection = link_a(personas)
    body = api.get(f"{URL}/picklists/companies").json()
    assert body["items"] == [] and body["fetched_at"] is None
    services.import_companies(str(connection.pk), "cid")
    memory_psa.calls.clear()
    body = api.get(f"{URL}/picklists/companies").json()
    assert [c["name"] for c in body["items"]][:2] == ["Acme Corp", "Globex, Inc."]
    assert body["items"][0] == {"id": "1", "name": "Acme Corp", "identifier": "AcmeCorp", "active": True}
    assert body["fetched_at"] is not None
    assert memory_psa.calls == []  # never the PSA


# Pause and resume -------------------------------------------------------------------------------------------


def test_pause_and_resume_with_scope(personas, api):
    connection = link_a(personas)
    body = api.post(f"{URL}/pause", {"scope": "billing"}, format="json").json()
    assert (body["paused"], body["billing_paused"]) == (False, True)
    body = api.post(f"{URL}/pause", {}, format="json").json()
    assert (body["paused"], body["billing_paused"]) == (True, True)
    body = api.post(f"{URL}/resume", {"scope": "integration"}, format="json").json()
    assert (body["paused"], body["billing_paused"]) == (False, True)
    body = api.post(f"{URL}/resume", {"scope": "billing"}, format="json").json()
    assert (body["paused"], body["billing_paused"]) == (False, False)
    assert_error(api.post(f"{URL}/pause", {"scope": "tickets"}, format="json"), 400, "invalid", "scope")
    connection.refresh_from_db()
    assert not connection.paused and not connection.billing_paused
    assert IntegrationLog.objects.filter(action="connection.pause").count() == 2


# Tenant company mapping -------------------------------------------------------------------------------------


def test_tenant_company_mapping(personas, api):
    connection = link_a(personas)
    services.import_companies(str(connection.pk), "cid")
    make_tenant(personas.account_a, name="Initech", external_id="ten-42")
    url = "/api/v1/tenants/ten-42/company"
    error = assert_error(api.get(url), 404, "not_found")
    assert "not mapped" in error["message"]

    response = api.put(url, {"company_id": "3"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"company_id": "3", "company_name": "Initech LLC"}
    assert api.get(url).json() == {"company_id": "3", "company_name": "Initech LLC"}

    error = assert_error(api.put(url, {"company_id": "999"}, format="json"), 400, "invalid", "company_id")
    assert "'999'" in error["message"] and "import customers first" in error["message"]
    assert api.get(url).json()["company_id"] == "3"

    assert api.put(url, {"company_id": ""}, format="json").json() == {"company_id": "", "company_name": ""}
    assert not CompanyMapping.objects.exists()


def test_unknown_tenant_is_a_404_naming_it(personas, api):
    link_a(personas)
    make_tenant(personas.account_b, external_id="theirs-1")
    for response in (api.get("/api/v1/tenants/nope-7/company"), api.put("/api/v1/tenants/nope-7/company", {"company_id": "1"}, format="json")):
        assert "'nope-7'" in assert_error(response, 404, "not_found")["message"]
    assert "'theirs-1'" in assert_error(api.get("/api/v1/tenants/theirs-1/company"), 404, "not_found")["message"]


# Roles and accounts --------------------------------------------------------------------------------------------

WRITES = [
    ("put", URL, LINK),
    ("delete", URL, None),
    ("post", f"{URL}/verify", None),
    ("post", f"{URL}/permissions", None),
    ("post", f"{URL}/pause", {"scope": "billing"}),
    ("post", f"{URL}/resume", {}),
    ("put", "/api/v1/tenants/ten-1/company", {"company_id": "1"}),
]
ADMIN_ONLY = {(m, p) for m, p, _ in WRITES[:3]} | {("post", f"{URL}/pause"), ("post", f"{URL}/resume")}


def test_support_key_reads_but_cannot_write(personas, api_for, queued):
    link_a(personas)
    make_tenant(personas.account_a, external_id="ten-1")
    support = api_for(personas.account_a, role="support")
    assert support.get(URL).status_code == 200
    assert support.get(f"{URL}/permissions").status_code == 200
    assert support.get(f"{URL}/picklists/boards").status_code == 200
    for method, path, data in WRITES:
        assert_error(getattr(support, method)(path, data, format="json"), 403, "forbidden")
    connection = Connection.objects.get()
    assert not connection.billing_paused and queued == []


def test_operator_key_may_do_operator_work_only(personas, api_for, queued):
    link_a(personas)
    services.import_companies(str(Connection.objects.get().pk), "cid")
    make_tenant(personas.account_a, external_id="ten-1")
    operator = api_for(personas.account_a, role="operator")
    for method, path, data in WRITES:
        response = getattr(operator, method)(path, data, format="json")
        if (method, path) in ADMIN_ONLY:
            assert_error(response, 403, "forbidden")
        else:
            assert response.status_code in (200, 202), (path, response.content)
    assert Connection.objects.exists()


def test_another_account_key_sees_no_connection(personas, api_for, queued):
    link_a(personas)
    make_tenant(personas.account_a, external_id="ten-1")
    outsider = api_for(personas.account_b)
    # (A PUT /connection by B links B's own PSA, so it is not in this list.)
    for method, path, data in WRITES[1:6] + [("get", URL, None), ("get", f"{URL}/permissions", None),
                                            ("get", f"{URL}/picklists/boards", None)]:
        error = assert_error(getattr(outsider, method)(path, data, format="json"), 404, "not_found")
        assert error["message"].startswith("No PSA is linked"), path
    assert_error(outsider.put("/api/v1/tenants/ten-1/company", {"company_id": "1"}, format="json"), 404, "not_found")
    connection = Connection.objects.get()
    assert connection.account == personas.account_a and not connection.billing_paused and queued == []


def test_every_endpoint_is_in_the_schema(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    paths = schema["paths"]
    expected = {
        "/api/v1/connection": {"get", "put", "delete"},
        "/api/v1/connection/verify": {"post"},
        "/api/v1/connection/permissions": {"get", "post"},
        "/api/v1/connection/picklists/{kind}": {"get"},
        "/api/v1/connection/pause": {"post"},
        "/api/v1/connection/resume": {"post"},
        "/api/v1/tenants/{external_id}/company": {"get", "put"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    picklist_params = {p["name"] for p in paths["/api/v1/connection/picklists/{kind}"]["get"]["parameters"]}
    assert {"kind", "parent", "refresh"} <= picklist_params
    secrets = schema["components"]["schemas"]["Connection"]["properties"]["secrets"]
    assert "never returned" in secrets["description"]


def test_unreadable_stored_credentials_must_be_sent_again(personas, api, queued):
    connection = link_a(personas, status=Connection.Status.FAILED)
    Connection.objects.filter(pk=connection.pk).update(credentials="fernet:gone:not-a-token")
    assert_error(api.put(URL, {"vendor": "connectwise", "credentials": {"site": "a.example.com"}}, format="json"),
                 400, "invalid", "credentials.api_key")
    assert api.put(URL, {"vendor": "connectwise", "credentials": {"site": "a.example.com", "api_key": "k2"}},
                   format="json").status_code == 202
    connection.refresh_from_db()
    assert services.load_credentials(connection) == {"api_key": "k2"}

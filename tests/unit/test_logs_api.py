"""GET /api/v1/logs (filters, keyset pages, warnings), GET/DELETE /api/v1/logs/{id} and
GET /api/v1/connection/health: roles, account isolation, bad input, the OpenAPI schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from hub.tenancy import OPERATOR, SUPPORT
from integrations.models import Connection, IntegrationLog
from tests.factories import make_tenant
from tests.log_rows import link, make_log, make_request_log

pytestmark = pytest.mark.django_db

LOGS = "/api/v1/logs"


@pytest.fixture
def linked(personas):
    return link(personas.account_a)


@pytest.fixture
def api(api_for, personas):
    return api_for(personas.account_a)


def ids(body) -> list[int]:
    return [row["id"] for row in body["results"]]


def test_list_newest_first_with_its_fields(personas, api, linked):
    tenant = make_tenant(personas.account_a, name="Globex", external_id="globex")
    old = make_log(personas.account_a, "ticket.create", ago=timedelta(minutes=5), tenant=tenant, subject="incident:3",
                   message="Created ticket 12 for incident #3")
    new = make_request_log(personas.account_a, "ticket.create", status=201)
    make_log(personas.account_b, message="B's")

    response = api.get(LOGS)

    assert response.status_code == 200
    body = response.json()
    assert ids(body) == [new.pk, old.pk] and body["next"] is None and body["warnings"] == []
    first, second = body["results"]
    assert first["request"] == {"method": "POST", "path": "/service/tickets", "status": 201, "duration_ms": 42}
    assert second["request"] is None
    assert second["tenant"] == {"external_id": "globex", "name": "Globex"}
    assert second["group"] == "ticket" and second["outcome"] == "ok" and second["subject"] == "incident:3"
    assert second["subject_url"] == "/settings/incidents/3/"
    assert second["doing"] == "Creating a ticket for incident #3 (tenant “Globex”)."
    assert second["url"].endswith(f"/api/v1/logs/{old.pk}")
    assert "request_excerpt" not in first  # bodies are in the detail only


def test_keyset_pages_follow_next_to_the_end(personas, api, linked):
    same = timezone.now() - timedelta(hours=1)
    made = [make_log(personas.account_a, at=same if n % 2 else None, ago=timedelta(seconds=n)) for n in range(23)]
    seen, url, pages = [], f"{LOGS}?page_size=10&group=ticket", 0
    while url:
        body = api.get(url).json()
        assert body["warnings"] == []
        seen += ids(body)
        url, pages = body["next"], pages + 1
        if url:
            assert "page_size=10" in url and "group=ticket" in url and "cursor=" in url
    assert pages == 3
    assert seen == [e.pk for e in sorted(made, key=lambda e: (e.created_at, e.pk), reverse=True)]


def test_filters(personas, api, linked):
    a = personas.account_a
    make_tenant(a, external_id="t-1")
    err = make_log(a, "billing.sync", outcome="error", message="Duplicate service found on contract")
    req = make_request_log(a, "billing.sync", status=500, message="PATCH /contracts → 500")
    make_log(a, "ticket.create")
    assert set(ids(api.get(LOGS, {"group": "billing"}).json())) == {err.pk, req.pk}
    assert ids(api.get(LOGS, {"status": "500"}).json()) == [req.pk]
    assert ids(api.get(LOGS, {"q": "duplicate SERVICE"}).json()) == [err.pk]
    assert ids(api.get(LOGS, {"outcome": "error", "level": "actions"}).json()) == [err.pk]
    assert ids(api.get(LOGS, {"tenant": "t-1"}).json()) == []


@pytest.mark.parametrize("params,message", [
    ({"range": "1y"}, "Time range “1y” was ignored"),
    ({"since": "not-a-date"}, "is not a date or time"),
    ({"tenant": "missing"}, "no tenant with that external ID"),
    ({"group": "bogus"}, "Action “bogus” was ignored"),
    ({"outcome": "fine"}, "Outcome “fine” was ignored"),
    ({"status": "4xx"}, "PSA HTTP status “4xx” was ignored"),
    ({"q": "a"}, "at least 3 characters"),
    ({"level": "x"}, "Show “x” was ignored"),
    ({"cursor": "%%%"}, "The page link was not valid"),
    ({"page_size": "100000"}, "Page size “100000” was ignored"),
    ({"page_size": "0"}, "Page size “0” was ignored"),
    ({"account": "x"}, "not an account number"),
])
def test_bad_filters_are_ignored_with_a_warning(personas, api, linked, params, message):
    entry = make_log(personas.account_a)
    response = api.get(LOGS, params)
    assert response.status_code == 200
    body = response.json()
    assert any(message in warning for warning in body["warnings"]), body["warnings"]
    assert ids(body) == [entry.pk]


@pytest.mark.parametrize("role", ["admin", OPERATOR, SUPPORT])
def test_every_role_reads_only_its_account(personas, api_for, linked, role):
    mine = make_log(personas.account_a)
    make_log(personas.account_b)
    client = api_for(personas.account_a, role=role)
    assert ids(client.get(LOGS).json()) == [mine.pk]
    assert client.get(LOGS, {"account": personas.account_b.pk}).status_code == 404
    assert client.get(LOGS, {"account": "all"}).status_code == 404


def test_detail_has_every_request_of_the_action(personas, api, linked):
    cid = "abc123abc123abc1"
    req = make_request_log(personas.account_a, "ticket.sync", status=401, correlation_id=cid,
                           request_excerpt='{"summary": "x"}', response_excerpt='{"message": "[redacted] refused"}')
    action = make_log(personas.account_a, "ticket.sync", outcome="error", correlation_id=cid, error_kind="auth_failed",
                      message="Authentication failed")
    make_request_log(personas.account_b, "ticket.sync", correlation_id=cid, path="/b-only")

    body = api.get(f"{LOGS}/{action.pk}").json()

    assert body["id"] == action.pk and body["error_kind"] == "auth_failed" and body["correlation_id"] == cid
    assert [r["id"] for r in body["requests"]] == [req.pk]
    assert body["requests"][0]["response_excerpt"] == '{"message": "[redacted] refused"}'
    assert body["requests"][0]["request"]["status"] == 401
    body = api.get(f"{LOGS}/{req.pk}").json()
    assert [r["id"] for r in body["related"]] == [action.pk]


def test_another_accounts_entry_is_404(personas, api, api_for, linked):
    foreign = make_log(personas.account_b)
    assert api.get(f"{LOGS}/{foreign.pk}").status_code == 404
    assert api.get(f"{LOGS}/999999").status_code == 404
    assert api_for(personas.account_a, role=SUPPORT).get(f"{LOGS}/{foreign.pk}").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("role", [SUPPORT, OPERATOR])
def test_support_and_operators_cannot_delete(personas, api_for, linked, role):
    entry = make_log(personas.account_a)
    response = api_for(personas.account_a, role=role).delete(f"{LOGS}/{entry.pk}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert IntegrationLog.objects.filter(pk=entry.pk).exists()


def test_support_cannot_delete_another_accounts_entry(personas, api_for, linked):
    entry = make_log(personas.account_b)
    assert api_for(personas.account_a, role=SUPPORT).delete(f"{LOGS}/{entry.pk}").status_code == 403
    assert api_for(personas.account_a).delete(f"{LOGS}/{entry.pk}").status_code == 404  # an admin of A: not found
    assert IntegrationLog.objects.filter(pk=entry.pk).exists()


def test_an_admin_deletes_an_entry(personas, api, linked):
    entry = make_log(personas.account_a)
    assert api.delete(f"{LOGS}/{entry.pk}").status_code == 204
    assert not IntegrationLog.objects.filter(pk=entry.pk).exists()
    assert IntegrationLog.objects.for_account(personas.account_a).filter(action="log.delete").count() == 1


def test_vendor_staff_read_any_account_through_their_session(personas, client, linked):
    b = make_log(personas.account_b, message="B's")
    a = make_log(personas.account_a, message="A's")
    client.force_login(personas.staff)
    body = client.get(LOGS, {"account": "all"}).json()
    assert {a.pk, b.pk} <= set(ids(body))
    assert ids(client.get(LOGS, {"account": personas.account_b.pk}).json()) == [b.pk]
    assert client.get(f"{LOGS}/{b.pk}").status_code == 200
    assert client.delete(f"{LOGS}/{b.pk}").status_code == 403


def test_unauthenticated_is_401(client):
    assert client.get(LOGS).status_code in (401, 403)


# Health ------------------------------------------------------------------------------------------------------


def test_health_of_the_connection(personas, api_for, linked, settings):
    a = personas.account_a
    make_log(a, "ticket.create", ago=timedelta(hours=1), message="Created ticket 5")
    failure = make_log(a, "billing.sync", outcome="error", ago=timedelta(minutes=10), error_kind="permission_missing",
                       message="ConnectWise API user does not have permission to access Agreements.")
    Connection.objects.filter(pk=linked.pk).update(
        health_state="degraded", health_since=timezone.now(), health_error=failure.message,
        credential_expires_at=timezone.now() + timedelta(days=5, hours=1),
    )

    response = api_for(a, role=SUPPORT).get("/api/v1/connection/health")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "degraded" and body["state_label"] == "Degraded" and body["since"]
    assert body["error"] == failure.message and body["fix"]["title"] == "Check permissions"
    kinds = {k["key"]: k for k in body["kinds"]}
    assert set(kinds) == {"tickets", "billing", "verification"}
    assert kinds["tickets"]["last_success"]["message"] == "Created ticket 5" and kinds["tickets"]["last_failure"] is None
    assert kinds["billing"]["last_failure"]["id"] == failure.pk and kinds["billing"]["failures_24h"] == 1
    assert "group=billing" in kinds["billing"]["failures_url"] and "outcome=error" in kinds["billing"]["failures_url"]
    assert kinds["verification"]["last_success"] is None
    assert body["expiry"]["source"] == "psa" and body["expiry"]["days_left"] == 5 and body["expiry"]["warn"] is True
    assert len(body["expiry_warnings"]) == 1 and "expires on" in body["expiry_warnings"][0]["message"]


def test_health_without_a_connection_is_404(personas, api_for):
    response = api_for(personas.account_b).get("/api/v1/connection/health")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_health_shows_streaks(personas, api, linked):
    for n in range(5):
        make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(minutes=n), error_kind="auth_failed",
                 message="Authentication failed: check the keys")
    body = api.get("/api/v1/connection/health").json()
    assert [s["key"] for s in body["streaks"]] == ["tickets"]
    assert body["streaks"][0]["fix"]["title"] == "Update credentials"


def test_the_schema_documents_logs_and_health(tmp_path):
    target = tmp_path / "schema.json"
    call_command("spectacular", "--file", str(target), "--format", "openapi-json")
    text = target.read_text()
    for path in ('"/api/v1/logs"', '"/api/v1/logs/{id}"', '"/api/v1/connection/health"'):
        assert path in text
    assert '"LogPage"' in text and '"cursor"' in text and '"Health"' in text

"""REST API v1 for billing against the in-memory PSA: usage (single, bulk, history) and its bad
input, product mappings, tenant billing mappings, runs (preview, sync, approve, revert) and
settings; roles (support reads only), account scoping and the OpenAPI schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import services, tasks
from billing.models import MAX_UNITS, BillingMapping, BillingRun, BillingSettings, Usage
from integrations import services as integration_services
from integrations.models import CompanyMapping, Connection
from tests.factories import make_tenant
from tests.fakes.memory import billing_book

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache, eager_tasks):
    billing_book.reset()
    yield
    billing_book.reset()


@pytest.fixture
def account(personas):
    return personas.account_a


@pytest.fixture
def api(account, api_for):
    return api_for(account)


@pytest.fixture
def connection(account):
    connection = integration_services.save_connection(account, "connectwise", {"site": "acme.example.com"}, {"api_key": "k-1"})
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.CONNECTED)
    connection.refresh_from_db()
    return connection


@pytest.fixture
def product(account, connection):
    return services.save_product(account, "domains", {"name": "Domains", "psa_product_id": "701"})


@pytest.fixture
def acme(account):
    return make_tenant(account, "Acme Dental", "acme")


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"} and error["code"] == code and error["message"]
    if field is not None:
        assert field in error["fields"], error
        assert error["message"].startswith(f"{field}: "), error
    return error


def map_acme(account, acme, product, agreement="3001"):
    CompanyMapping.objects.create(account=account, tenant=acme, company_id="250", company_name="Acme Dental")
    services.set_billing_mapping(account, acme, product, {"agreement_id": agreement})


# Usage ----------------------------------------------------------------------------------------------------


def test_put_usage_and_read_its_history(api, account, acme, product):
    first = api.put("/api/v1/tenants/acme/usage/domains", {"units": 15}, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["units"] == 15 and first.json()["changed"] is True and first.json()["product"] == "domains"
    again = api.put("/api/v1/tenants/acme/usage/domains", {"units": 15}, format="json")
    assert again.json()["changed"] is False
    api.put("/api/v1/tenants/acme/usage/domains", {"units": "18", "as_of": timezone.now().isoformat()}, format="json")

    history = api.get("/api/v1/tenants/acme/usage/domains")
    assert history.status_code == 200
    assert [row["units"] for row in history.json()["results"]] == [18, 15]
    latest = api.get("/api/v1/tenants/acme/usage").json()
    assert [(row["product"], row["units"]) for row in latest] == [("domains", 18)]


@pytest.mark.parametrize(
    ("units", "message"),
    [
        (-1, "units cannot be negative."),
        ("-4", "units cannot be negative."),
        (2.5, "A whole number of units is required, e.g. 15."),
        ("twelve", "A whole number of units is required, e.g. 15."),
        (True, "A whole number of units is required, e.g. 15."),
        (None, "This field may not be null."),
        ([3], "A whole number of units is required, e.g. 15."),
        (MAX_UNITS + 1, "units cannot be more than 10,000,000 (10^7)."),
        (10**30, "units cannot be more than 10,000,000 (10^7)."),
    ],
)
def test_bad_units_are_a_400_naming_the_field(api, acme, product, units, message):
    response = api.put("/api/v1/tenants/acme/usage/domains", {"units": units}, format="json")
    error = assert_error(response, 400, "invalid", "units")
    assert error["fields"]["units"] == [message]
    assert not Usage.objects.exists()


def test_the_largest_count_is_accepted(api, acme, product):
    assert api.put("/api/v1/tenants/acme/usage/domains", {"units": MAX_UNITS}, format="json").status_code == 200
    assert api.put("/api/v1/tenants/acme/usage/domains", {"units": 0}, format="json").status_code == 200


def test_missing_units_and_a_future_as_of_are_400s(api, acme, product):
    assert_error(api.put("/api/v1/tenants/acme/usage/domains", {}, format="json"), 400, "invalid", "units")
    later = (timezone.now() + timedelta(days=1)).isoformat()
    error = assert_error(api.put("/api/v1/tenants/acme/usage/domains", {"units": 3, "as_of": later}, format="json"),
                         400, "invalid", "as_of")  # fmt: skip
    assert error["fields"]["as_of"] == ["as_of cannot be in the future."]


def test_unknown_tenant_or_product_is_a_404_naming_it(api, acme, product):
    error = assert_error(api.put("/api/v1/tenants/nobody/usage/domains", {"units": 3}, format="json"), 404, "not_found", "tenant")
    assert "'nobody'" in error["message"]
    error = assert_error(api.put("/api/v1/tenants/acme/usage/mailboxes", {"units": 3}, format="json"), 404, "not_found", "product")
    assert "'mailboxes'" in error["message"] and "POST /api/v1/billing/products" in error["message"]
    assert_error(api.get("/api/v1/tenants/acme/usage/mailboxes"), 404, "not_found", "product")


def test_bulk_usage_is_stored_all_or_nothing(api, account, acme, product):
    globex = make_tenant(account, "Globex", "globex")
    ok = api.post("/api/v1/usage", {"items": [{"tenant": "acme", "product": "domains", "units": 4},
                                             {"tenant": "globex", "product": "domains", "units": 9}]}, format="json")  # fmt: skip
    assert ok.status_code == 200, ok.content
    assert ok.json() == {"accepted": 2, "changed": 2}
    assert Usage.objects.filter(tenant=globex).get().units == 9

    bad = api.post("/api/v1/usage", {"items": [{"tenant": "acme", "product": "domains", "units": 5},
                                              {"tenant": "globex", "product": "domains", "units": -2},
                                              {"tenant": "globex", "product": "domains", "units": 1.5}]}, format="json")  # fmt: skip
    error = assert_error(bad, 400, "invalid", "items[1].units")
    assert error["fields"] == {"items[1].units": ["units cannot be negative."],
                               "items[2].units": ["A whole number of units is required, e.g. 15."]}  # fmt: skip

    unknown = api.post("/api/v1/usage", {"items": [{"tenant": "acme", "product": "domains", "units": 5},
                                                  {"tenant": "ghost", "product": "domains", "units": 2}]}, format="json")  # fmt: skip
    assert_error(unknown, 404, "not_found", "items[1].tenant")
    unknown = api.post("/api/v1/usage", {"items": [{"tenant": "acme", "product": "gb", "units": 5}]}, format="json")
    assert_error(unknown, 404, "not_found", "items[0].product")
    assert Usage.objects.filter(tenant=acme).get().units == 4, "nothing of a refused batch is stored"
    assert_error(api.post("/api/v1/usage", {"items": []}, format="json"), 400, "invalid", "items")


def test_usage_is_committed_before_the_debounced_auto_sync_is_queued(api, account, acme, product, monkeypatch,
                                                                      django_capture_on_commit_callbacks):  # fmt: skip
    services.update_settings(account, {"auto_sync": True, "auto_sync_delay_minutes": 3})
    queued = []
    monkeypatch.setattr(tasks.auto_sync, "apply_async", lambda args, countdown=None, **kw: queued.append((args, countdown)))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        api.put("/api/v1/tenants/acme/usage/domains", {"units": 15}, format="json")
        api.put("/api/v1/tenants/acme/usage/domains", {"units": 16}, format="json")
    assert len(callbacks) == 1 and queued == [((account.pk,), 180)]
    assert BillingSettings.objects.get(account=account).auto_sync_due_at is not None


# Products ------------------------------------------------------------------------------------------------


def test_product_mappings_crud(api, account, connection):
    created = api.post("/api/v1/billing/products", {
        "key": "users", "name": "Users", "psa_product_id": "701", "psa_product_name": "M365 AI Powered MDR (per user)",
        "invoice_description": "Protected users", "unit_price": "12.50", "unit_cost": "6",
    }, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["vendor"] == "connectwise" and body["unit_price"] == "12.5000" and body["key"] == "users"

    assert_error(api.post("/api/v1/billing/products", {"key": "users"}, format="json"), 409, "conflict", "key")
    assert_error(api.post("/api/v1/billing/products", {"key": "Users!"}, format="json"), 400, "invalid", "key")
    assert_error(api.post("/api/v1/billing/products", {"key": "gb", "unit_cost": "-1"}, format="json"), 400, "invalid", "unit_cost")

    changed = api.patch("/api/v1/billing/products/users", {"psa_product_id": "702", "unit_price": None}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["psa_product_id"] == "702" and changed.json()["unit_price"] is None
    replaced = api.put("/api/v1/billing/products/users", {"name": "Seats", "psa_product_id": "701"}, format="json")
    assert replaced.status_code == 200 and replaced.json()["key"] == "users" and replaced.json()["name"] == "Seats"
    assert [p["key"] for p in api.get("/api/v1/billing/products").json()] == ["users"]
    assert api.delete("/api/v1/billing/products/users").status_code == 204
    assert_error(api.get("/api/v1/billing/products/users"), 404, "not_found", "key")


# Tenant billing mappings --------------------------------------------------------------------------------


def test_tenant_billing_mapping_get_and_put(api, account, acme, product):
    services.save_product(account, "gb", {"psa_product_id": "702"})
    CompanyMapping.objects.create(account=account, tenant=acme, company_id="250", company_name="Acme Dental")
    put = api.put("/api/v1/tenants/acme/billing", {"mappings": [
        {"product": "domains", "agreement_id": "3001", "agreement_name": "Managed Security", "mode": "automatic"},
        {"product": "gb", "agreement_id": "3002", "agreement_name": "Backup Services"},
    ]}, format="json")  # fmt: skip
    assert put.status_code == 200, put.content
    body = put.json()
    assert body["company"] == {"id": "250", "name": "Acme Dental"}
    assert [(m["product"], m["agreement_id"], m["mode"]) for m in body["mappings"]] == [
        ("domains", "3001", "automatic"), ("gb", "3002", ""),
    ]  # fmt: skip

    again = api.put("/api/v1/tenants/acme/billing", {"mappings": [{"product": "gb", "agreement_id": "3002"}]}, format="json")
    assert [m["product"] for m in again.json()["mappings"]] == ["gb"], "PUT replaces: domains is unmapped"
    assert not BillingMapping.objects.filter(product=product).exists()

    assert_error(api.put("/api/v1/tenants/acme/billing", {"mappings": [{"product": "nope"}]}, format="json"),
                 404, "not_found", "mappings[0].product")  # fmt: skip
    assert_error(api.put("/api/v1/tenants/acme/billing", {"mappings": [{"product": "gb", "mode": "yolo"}]}, format="json"),
                 400, "invalid", "mappings[0].mode")  # fmt: skip
    assert_error(api.get("/api/v1/tenants/ghost/billing"), 404, "not_found", "tenant")


# Runs ------------------------------------------------------------------------------------------------------


def test_preview_then_approve_then_revert(api, account, acme, product, django_capture_on_commit_callbacks):
    map_acme(account, acme, product)
    billing_book.set("250", "3001", "701", 15)
    services.record_usage(account, [services.UsageReport(acme, "domains", 18)])

    with django_capture_on_commit_callbacks(execute=True):
        preview = api.post("/api/v1/billing/runs", {"apply": False}, format="json")
    assert preview.status_code == 202, preview.content
    run_id = preview.json()["id"]
    assert preview.json()["trigger"] == "api" and preview.json()["requested_by"].startswith("API key")
    detail = api.get(f"/api/v1/billing/runs/{run_id}").json()
    assert detail["state"] == "planned" and detail["progress"] == {"total": 1, "done": 1, "percent": 100}
    [line] = detail["items"]
    assert (line["tenant"], line["product"], line["action"], line["current_quantity"], line["new_quantity"]) == (
        "acme", "domains", "update", 15, 18)
    assert line["usage"]["units"] == 18 and line["mapping"]["target"]["agreement_id"] == "3001"
    assert billing_book.writes == []

    assert_error(api.post(f"/api/v1/billing/runs/{run_id}/approve", {"tenants": ["ghost"]}, format="json"),
                 404, "not_found", "tenants[0]")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        approved = api.post(f"/api/v1/billing/runs/{run_id}/approve", {"tenants": ["acme"]}, format="json")
    assert approved.status_code == 202, approved.content
    assert api.get(f"/api/v1/billing/runs/{run_id}").json()["state"] == "done"
    assert billing_book.quantity("250", "3001", "701") == 18
    assert_error(api.post(f"/api/v1/billing/runs/{run_id}/approve", {}, format="json"), 409, "nothing_to_approve")

    with django_capture_on_commit_callbacks(execute=True):
        revert = api.post(f"/api/v1/billing/runs/{run_id}/revert")
    assert revert.status_code == 202, revert.content
    assert revert.json()["trigger"] == "revert" and revert.json()["reverts"] == run_id
    assert billing_book.quantity("250", "3001", "701") == 15
    runs = api.get("/api/v1/billing/runs").json()["results"]
    assert [r["trigger"] for r in runs] == ["revert", "api"]

    filtered = api.get(f"/api/v1/billing/runs/{run_id}?state=applied").json()["items"]
    assert len(filtered) == 1
    assert_error(api.get(f"/api/v1/billing/runs/{run_id}?state=bogus"), 400, "invalid", "state")


def test_sync_now_in_automatic_mode_for_some_tenants(api, account, acme, product, django_capture_on_commit_callbacks):
    services.update_settings(account, {"mode": "automatic"})
    map_acme(account, acme, product)
    other = make_tenant(account, "Other", "other")
    services.record_usage(account, [services.UsageReport(acme, "domains", 5), services.UsageReport(other, "domains", 2)])

    assert_error(api.post("/api/v1/billing/runs", {"apply": True, "tenants": ["acme", "ghost"]}, format="json"),
                 404, "not_found", "tenants[1]")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/billing/runs", {"apply": True, "tenants": ["acme"]}, format="json")
    run = api.get(f"/api/v1/billing/runs/{response.json()['id']}").json()
    assert run["tenants"] == ["acme"] and run["state"] == "done" and run["counts"]["created"] == 1
    assert [i["tenant"] for i in run["items"]] == ["acme"], "only the tenants asked for"
    assert billing_book.quantity("250", "3001", "701") == 5


def test_runs_are_refused_while_billing_is_paused(api, account, acme, product, connection):
    integration_services.set_paused(connection, paused=True, billing_only=True)
    error = assert_error(api.post("/api/v1/billing/runs", {"apply": True}, format="json"), 409, "paused")
    assert error["message"].startswith("Billing is paused.")
    assert not BillingRun.objects.exists()


def test_support_reads_billing_but_cannot_change_it(api_for, account, acme, product, django_capture_on_commit_callbacks):
    map_acme(account, acme, product)
    support = api_for(account, role="support")
    operator = api_for(account, role="operator")
    assert support.get("/api/v1/billing/products").status_code == 200
    assert support.get("/api/v1/billing/runs").status_code == 200
    assert support.get("/api/v1/billing/settings").status_code == 200
    assert support.get("/api/v1/tenants/acme/billing").status_code == 200
    for call in (
        lambda: support.post("/api/v1/billing/runs", {"apply": True}, format="json"),
        lambda: support.post("/api/v1/billing/products", {"key": "gb"}, format="json"),
        lambda: support.put("/api/v1/tenants/acme/usage/domains", {"units": 1}, format="json"),
        lambda: support.put("/api/v1/billing/settings", {"mode": "automatic"}, format="json"),
        lambda: operator.put("/api/v1/billing/settings", {"mode": "automatic"}, format="json"),
    ):
        assert_error(call(), 403, "forbidden")
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post("/api/v1/billing/runs", {"apply": False}, format="json").status_code == 202


def test_another_accounts_runs_and_products_are_404s(personas, api_for, account, acme, product, django_capture_on_commit_callbacks):
    map_acme(account, acme, product)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(account, trigger="manual", apply=False, label="alice")
    outsider = api_for(personas.account_b)
    assert_error(outsider.get(f"/api/v1/billing/runs/{run.pk}"), 404, "not_found")
    assert_error(outsider.post(f"/api/v1/billing/runs/{run.pk}/approve", {}, format="json"), 404, "not_found")
    assert_error(outsider.get("/api/v1/billing/products/domains"), 404, "not_found")
    assert outsider.get("/api/v1/billing/runs").json()["results"] == []
    assert_error(outsider.put("/api/v1/tenants/acme/usage/domains", {"units": 1}, format="json"), 404, "not_found", "tenant")


# Settings ------------------------------------------------------------------------------------------------


def test_settings_read_and_write_including_pause(api, account, connection):
    body = api.get("/api/v1/billing/settings").json()
    assert (body["mode"], body["max_change_percent"], body["max_change_units"], body["schedule"]) == ("approve", 50, 100, "daily")
    assert body["time_of_day"] == "02:00:00" and body["time_zone"] == "UTC" and body["paused"] is False
    assert body["next_run_at"] is not None and body["paused_reason"] == ""

    changed = api.put("/api/v1/billing/settings", {"mode": "automatic", "max_change_percent": 25, "schedule": "monthly",
                                                   "day_of_month": 3, "auto_sync": True, "paused": True}, format="json")  # fmt: skip
    assert changed.status_code == 200, changed.content
    body = changed.json()
    assert (body["mode"], body["max_change_percent"], body["schedule"], body["day_of_month"], body["auto_sync"]) == (
        "automatic", 25, "monthly", 3, True)
    assert body["paused"] is True and body["paused_reason"].startswith("Billing is paused.")
    assert Connection.objects.get(pk=connection.pk).billing_paused is True
    resumed = api.patch("/api/v1/billing/settings", {"paused": False}, format="json").json()
    assert resumed["paused"] is False and resumed["mode"] == "automatic"

    assert_error(api.put("/api/v1/billing/settings", {"mode": "yolo"}, format="json"), 400, "invalid", "mode")
    assert_error(api.put("/api/v1/billing/settings", {"day_of_month": 31}, format="json"), 400, "invalid", "day_of_month")
    assert_error(api.put("/api/v1/billing/settings", {"max_change_units": -1}, format="json"), 400, "invalid", "max_change_units")


def test_pause_without_a_connection_is_a_409(api, account):
    assert_error(api.put("/api/v1/billing/settings", {"paused": True}, format="json"), 409, "no_connection")


def test_the_billing_api_is_in_the_openapi_schema(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    for path in ("/api/v1/billing/products", "/api/v1/billing/products/{key}", "/api/v1/billing/runs",
                 "/api/v1/billing/runs/{id}/approve", "/api/v1/billing/runs/{id}/revert", "/api/v1/billing/settings",
                 "/api/v1/usage", "/api/v1/tenants/{external_id}/usage/{product}", "/api/v1/tenants/{external_id}/billing"):  # fmt: skip
        assert path in text, path

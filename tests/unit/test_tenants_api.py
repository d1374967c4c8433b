"""REST API v1: tenants keyed by external_id (list, create, read, PUT upsert, PATCH, deactivate)."""

from __future__ import annotations

import pytest

from hub.models import Tenant
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db


URL = "/api/v1/tenants/"


def url(external_id: str) -> str:
    return f"{URL}{external_id}/"


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """Every error body is {"error": {"code", "message", "fields"}}; returns the error."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if field is not None:
        assert field in error["fields"], error
        assert all(isinstance(m, str) and m for m in error["fields"][field])
        assert field in error["message"]
    return error


@pytest.fixture
def api(personas, api_for):
    return api_for(personas.account_a)


# Reading ----------------------------------------------------------------------------------------


def test_list_is_paginated_and_scoped_to_the_account(personas, api):
    make_tenant(personas.account_a, name="Alpha", external_id="a-1")
    make_tenant(personas.account_a, name="Beta", external_id="b-1", is_active=False)
    make_tenant(personas.account_b, name="Gamma of B", external_id="g-1")
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [t["external_id"] for t in body["results"]] == ["a-1", "b-1"]
    assert set(body["results"][0]) == {"external_id", "name", "is_active", "created_at", "updated_at"}


def test_list_page_size(personas, api):
    for n in range(3):
        make_tenant(personas.account_a, name=f"T{n}", external_id=f"t-{n}")
    body = api.get(URL, {"page_size": 2}).json()
    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"]


def test_search_matches_name_or_external_id(personas, api):
    make_tenant(personas.account_a, name="Contoso Ltd", external_id="cust-100")
    make_tenant(personas.account_a, name="Fabrikam", external_id="cust-200")
    make_tenant(personas.account_b, name="Contoso of B", external_id="cust-300")
    by_name = api.get(URL, {"search": "contoso"}).json()
    assert [t["external_id"] for t in by_name["results"]] == ["cust-100"]
    by_id = api.get(URL, {"search": "200"}).json()
    assert [t["name"] for t in by_id["results"]] == ["Fabrikam"]
    assert api.get(URL, {"search": "nothing"}).json()["count"] == 0


def test_filter_by_active(personas, api):
    make_tenant(personas.account_a, external_id="on")
    make_tenant(personas.account_a, external_id="off", is_active=False)
    assert [t["external_id"] for t in api.get(URL, {"active": "false"}).json()["results"]] == ["off"]
    assert [t["external_id"] for t in api.get(URL, {"active": "true"}).json()["results"]] == ["on"]


def test_retrieve_by_external_id(personas, api):
    make_tenant(personas.account_a, name="Contoso", external_id="cust 1")
    response = api.get(url("cust%201"))
    assert response.status_code == 200
    assert response.json()["name"] == "Contoso"
    assert response.json()["external_id"] == "cust 1"


def test_retrieve_unknown_is_404_in_the_error_format(api):
    assert_error(api.get(url("nope")), 404, "not_found")


# Creating ---------------------------------------------------------------------------------------


def test_create(personas, api):
    response = api.post(URL, {"external_id": "cust-1", "name": "Contoso"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["external_id"] == "cust-1"
    tenant = Tenant.objects.get(external_id="cust-1")
    assert tenant.account == personas.account_a
    assert tenant.name == "Contoso"
    assert tenant.is_active


def test_create_strips_the_external_id(personas, api):
    response = api.post(URL, {"external_id": "  cust-2  ", "name": "Contoso"}, format="json")
    assert response.status_code == 201
    assert Tenant.objects.filter(account=personas.account_a, external_id="cust-2").exists()


@pytest.mark.parametrize("external_id", ["", "   "], ids=["empty", "blank"])
def test_create_with_empty_external_id_is_400_naming_it(api, external_id):
    response = api.post(URL, {"external_id": external_id, "name": "Contoso"}, format="json")
    assert_error(response, 400, "invalid", "external_id")
    assert not Tenant.objects.exists()


def test_create_without_external_id_is_400_naming_it(api):
    assert_error(api.post(URL, {"name": "Contoso"}, format="json"), 400, "invalid", "external_id")


def test_create_with_300_character_external_id_is_400_naming_it(api):
    response = api.post(URL, {"external_id": "x" * 300, "name": "Contoso"}, format="json")
    error = assert_error(response, 400, "invalid", "external_id")
    assert "200" in error["fields"]["external_id"][0]
    assert not Tenant.objects.exists()


def test_create_with_slash_is_400(api):
    assert_error(api.post(URL, {"external_id": "a/b", "name": "X"}, format="json"), 400, "invalid", "external_id")


def test_create_without_name_is_400_naming_it(api):
    assert_error(api.post(URL, {"external_id": "x", "name": ""}, format="json"), 400, "invalid", "name")


def test_duplicate_within_an_account_is_409_naming_external_id(personas, api):
    make_tenant(personas.account_a, name="First", external_id="dup")
    response = api.post(URL, {"external_id": "dup", "name": "Second"}, format="json")
    error = assert_error(response, 409, "conflict", "external_id")
    assert "dup" in error["message"]
    assert Tenant.objects.get(account=personas.account_a, external_id="dup").name == "First"


def test_same_external_id_in_two_accounts_is_allowed(personas, api, api_for):
    api_b = api_for(personas.account_b)
    assert api.post(URL, {"external_id": "shared", "name": "A's"}, format="json").status_code == 201
    assert api_b.post(URL, {"external_id": "shared", "name": "B's"}, format="json").status_code == 201
    assert api_b.put(url("shared"), {"name": "B's renamed"}, format="json").status_code == 200
    assert Tenant.objects.get(account=personas.account_a, external_id="shared").name == "A's"
    assert Tenant.objects.get(account=personas.account_b, external_id="shared").name == "B's renamed"


def test_malformed_json_is_400_in_the_error_format(api):
    response = api.generic("POST", URL, "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


# PUT upsert -------------------------------------------------------------------------------------


def test_put_creates_then_updates(personas, api):
    created = api.put(url("cust-9"), {"name": "Contoso"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["external_id"] == "cust-9"
    assert created.json()["name"] == "Contoso"
    updated = api.put(url("cust-9"), {"name": "Contoso Ltd", "is_active": False}, format="json")
    assert updated.status_code == 200, updated.content
    assert updated.json()["name"] == "Contoso Ltd"
    assert updated.json()["is_active"] is False
    tenant = Tenant.objects.get()
    assert (tenant.account, tenant.external_id, tenant.name, tenant.is_active) == (
        personas.account_a,
        "cust-9",
        "Contoso Ltd",
        False,
    )


def test_put_ignores_an_external_id_in_the_body(personas, api):
    make_tenant(personas.account_a, name="Old", external_id="keep")
    response = api.put(url("keep"), {"name": "New", "external_id": "other"}, format="json")
    assert response.status_code == 200
    assert list(Tenant.objects.values_list("external_id", "name")) == [("keep", "New")]


def test_put_without_name_is_400(api):
    assert_error(api.put(url("cust-9"), {}, format="json"), 400, "invalid", "name")
    assert not Tenant.objects.exists()


def test_put_with_300_character_external_id_is_400_naming_it(api):
    error = assert_error(api.put(url("y" * 300), {"name": "Contoso"}, format="json"), 400, "invalid", "external_id")
    assert "200" in error["fields"]["external_id"][0]
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("path", ["%20", "%20%20%20"], ids=["space", "spaces"])
def test_put_with_blank_external_id_is_400_naming_it(api, path):
    assert_error(api.put(url(path), {"name": "Contoso"}, format="json"), 400, "invalid", "external_id")
    assert not Tenant.objects.exists()


def test_put_on_the_collection_is_not_allowed(api):
    assert_error(api.put(URL, {"name": "Contoso"}, format="json"), 405, "method_not_allowed")


# PATCH and DELETE -------------------------------------------------------------------------------


def test_patch_changes_only_the_given_fields(personas, api):
    make_tenant(personas.account_a, name="Contoso", external_id="p-1")
    response = api.patch(url("p-1"), {"is_active": False}, format="json")
    assert response.status_code == 200, response.content
    tenant = Tenant.objects.get(external_id="p-1")
    assert tenant.name == "Contoso"
    assert tenant.is_active is False


def test_patch_unknown_is_404_and_creates_nothing(api):
    assert_error(api.patch(url("ghost"), {"name": "X"}, format="json"), 404, "not_found")
    assert not Tenant.objects.exists()


def test_patch_with_empty_name_is_400(personas, api):
    make_tenant(personas.account_a, name="Contoso", external_id="p-2")
    assert_error(api.patch(url("p-2"), {"name": ""}, format="json"), 400, "invalid", "name")
    assert Tenant.objects.get(external_id="p-2").name == "Contoso"


def test_delete_deactivates(personas, api):
    make_tenant(personas.account_a, name="Contoso", external_id="d-1")
    response = api.delete(url("d-1"))
    assert response.status_code == 204
    tenant = Tenant.objects.get(external_id="d-1")
    assert tenant.is_active is False
    # Deleting again is harmless.
    assert api.delete(url("d-1")).status_code == 204
    assert api.get(url("d-1")).json()["is_active"] is False


def test_delete_unknown_is_404(api):
    assert_error(api.delete(url("ghost")), 404, "not_found")


def test_collection_urls_work_with_and_without_a_trailing_slash(api_for, personas):
    client = api_for(personas.account_a)
    for url in ("/api/v1/tenants", "/api/v1/tenants/"):
        assert client.get(url).status_code == 200
    created = client.post("/api/v1/tenants", {"external_id": "no-slash", "name": "No slash"}, format="json")
    assert created.status_code == 201, created.content

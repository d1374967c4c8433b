"""REST API authentication and authorisation: API keys, roles, sessions, account scoping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from hub.models import ApiKey, Tenant
from hub.tenancy import OPERATOR, SUPPORT
from tests.factories import make_api_key, make_tenant

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/"



def url(external_id: str) -> str:
    return f"{URL}{external_id}/"


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    return body["error"]


def bearer(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


# 401 ---------------------------------------------------------------------------------------------


def test_no_key_is_401(personas):
    response = APIClient().get(URL)
    error = error_of(response, 401, "unauthenticated")
    assert "Bearer" in error["message"]
    assert response["WWW-Authenticate"] == "Bearer"


def test_no_key_is_401_for_writes_too(personas):
    error_of(APIClient().post(URL, {"external_id": "x", "name": "X"}, format="json"), 401, "unauthenticated")
    error_of(APIClient().put(url("x"), {"name": "X"}, format="json"), 401, "unauthenticated")
    assert not Tenant.objects.exists()


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer not-a-key", "Bearer hub_", "Bearer hub_abc_def", "Bearer hub_abcdef12", "Bearer hub_abcdef12_"],
)
def test_malformed_key_is_401_with_a_clear_message(personas, header):
    error = error_of(bearer(header).get(URL), 401, "unauthenticated")
    assert "malformed" in error["message"]


def test_unknown_key_is_401(personas):
    error = error_of(bearer("Bearer hub_00000000_secretsecret").get(URL), 401, "unauthenticated")
    assert "not valid" in error["message"]


def test_wrong_secret_is_401(personas):
    _, full = make_api_key(personas.account_a)
    wrong = full[:-4] + ("aaaa" if not full.endswith("aaaa") else "bbbb")
    error = error_of(bearer(f"Bearer {wrong}").get(URL), 401, "unauthenticated")
    assert "not valid" in error["message"]


def test_revoked_key_is_401_revoked(personas):
    key, full = make_api_key(personas.account_a)
    client = bearer(f"Bearer {full}")
    assert client.get(URL).status_code == 200
    key.revoke()
    error = error_of(client.get(URL), 401, "unauthenticated")
    assert "revoked" in error["message"]
    error_of(client.put(url("x"), {"name": "X"}, format="json"), 401, "unauthenticated")
    assert not Tenant.objects.exists()


def test_a_revoked_key_with_a_wrong_secret_does_not_say_revoked(personas):
    key, full = make_api_key(personas.account_a)
    key.revoke()
    error = error_of(bearer(f"Bearer {full}x").get(URL), 401, "unauthenticated")
    assert "revoked" not in error["message"]


def test_the_key_is_accepted_with_any_case_of_bearer(personas):
    _, full = make_api_key(personas.account_a)
    assert bearer(f"bearer {full}").get(URL).status_code == 200


def test_the_secret_is_stored_only_as_a_hash(personas):
    key, full = make_api_key(personas.account_a)
    assert full.startswith(f"hub_{key.prefix}_")
    secret = full[len(f"hub_{key.prefix}_") :]
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert all(secret not in str(value) for value in stored.values())
    assert key.matches(secret)
    assert not key.matches(secret + "x")


# last_used_at ------------------------------------------------------------------------------------


def test_last_used_at_is_updated(personas):
    key, full = make_api_key(personas.account_a)
    assert key.last_used_at is None
    bearer(f"Bearer {full}").get(URL)
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert timezone.now() - key.last_used_at < timedelta(seconds=10)


def test_last_used_at_is_written_at_most_once_a_minute(personas):
    key, full = make_api_key(personas.account_a)
    recent = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=recent)
    bearer(f"Bearer {full}").get(URL)
    key.refresh_from_db()
    assert key.last_used_at == recent
    old = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=old)
    bearer(f"Bearer {full}").get(URL)
    key.refresh_from_db()
    assert key.last_used_at > old


def test_failed_requests_do_not_touch_last_used_at(personas):
    key, full = make_api_key(personas.account_a)
    key.revoke()
    bearer(f"Bearer {full}").get(URL)
    key.refresh_from_db()
    assert key.last_used_at is None


# Roles -------------------------------------------------------------------------------------------


def test_support_key_reads_but_cannot_write(personas, api_for):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="t-1")
    api = api_for(personas.account_a, role=SUPPORT)
    assert api.get(URL).status_code == 200
    assert api.get(url("t-1")).status_code == 200
    error_of(api.post(URL, {"external_id": "new", "name": "New"}, format="json"), 403, "forbidden")
    error_of(api.put(url("t-1"), {"name": "Changed"}, format="json"), 403, "forbidden")
    error_of(api.put(url("new"), {"name": "New"}, format="json"), 403, "forbidden")
    error_of(api.patch(url("t-1"), {"name": "Changed"}, format="json"), 403, "forbidden")
    error_of(api.delete(url("t-1")), 403, "forbidden")
    tenant.refresh_from_db()
    assert (tenant.name, tenant.is_active) == ("Contoso", True)
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize("role", [OPERATOR, "admin"])
def test_operator_and_admin_keys_write(personas, api_for, role):
    api = api_for(personas.account_a, role=role)
    assert api.post(URL, {"external_id": "new", "name": "New"}, format="json").status_code == 201
    assert api.delete(url("new")).status_code == 204


def test_support_session_user_reads_but_cannot_write(personas):
    make_tenant(personas.account_a, name="Contoso", external_id="t-1")
    client = APIClient()
    client.force_login(personas.support)
    assert client.get(URL).json()["count"] == 1
    error_of(client.post(URL, {"external_id": "new", "name": "New"}, format="json"), 403, "forbidden")
    error_of(client.put(url("t-1"), {"name": "Changed"}, format="json"), 403, "forbidden")
    error_of(client.delete(url("t-1")), 403, "forbidden")
    assert Tenant.objects.get().name == "Contoso"


def test_admin_session_user_writes(personas):
    client = APIClient()
    client.force_login(personas.admin)
    assert client.put(url("t-9"), {"name": "Contoso"}, format="json").status_code == 201
    assert Tenant.objects.get().account == personas.account_a


def test_session_writes_need_the_csrf_token(personas):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(personas.admin)
    assert client.get(URL).status_code == 200
    error_of(client.put(url("t-9"), {"name": "Contoso"}, format="json"), 403, "forbidden")
    assert not Tenant.objects.exists()


def test_staff_session_reads_any_account_but_cannot_write(personas):
    make_tenant(personas.account_a, name="Contoso", external_id="t-1")
    client = APIClient()
    client.force_login(personas.staff)
    assert client.get(url("t-1")).status_code == 200
    error_of(client.put(url("t-1"), {"name": "Changed"}, format="json"), 403, "forbidden")
    assert Tenant.objects.get().name == "Contoso"


def test_session_user_without_an_account_is_403(db):
    from tests.factories import make_user

    client = APIClient()
    client.force_login(make_user())
    error_of(client.get(URL), 403, "forbidden")


# Account scoping: account B never reaches account A's rows -----------------------------------------


def test_outsider_key_gets_404_for_account_a_tenants(personas, api_for):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="a-only")
    before = Tenant.objects.filter(pk=tenant.pk).values().get()
    api_b = api_for(personas.account_b)
    error_of(api_b.get(url("a-only")), 404, "not_found")
    error_of(api_b.patch(url("a-only"), {"name": "Hijacked"}, format="json"), 404, "not_found")
    error_of(api_b.delete(url("a-only")), 404, "not_found")
    assert api_b.get(URL).json()["count"] == 0
    assert api_b.get(URL, {"search": "Contoso"}).json()["count"] == 0
    assert Tenant.objects.filter(pk=tenant.pk).values().get() == before


def test_outsider_put_creates_their_own_tenant_and_leaves_account_a_alone(personas, api_for):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="a-only")
    before = Tenant.objects.filter(pk=tenant.pk).values().get()
    api_b = api_for(personas.account_b)
    # External ids are per account: B's PUT is an upsert of B's own tenant with that id.
    response = api_b.put(url("a-only"), {"name": "B's customer", "is_active": False}, format="json")
    assert response.status_code == 201
    assert Tenant.objects.filter(pk=tenant.pk).values().get() == before
    theirs = Tenant.objects.get(account=personas.account_b, external_id="a-only")
    assert theirs.pk != tenant.pk
    assert theirs.name == "B's customer"


def test_outsider_session_gets_404_for_account_a_tenants(personas):
    make_tenant(personas.account_a, name="Contoso", external_id="a-only")
    client = APIClient()
    client.force_login(personas.outsider)
    error_of(client.get(url("a-only")), 404, "not_found")
    error_of(client.patch(url("a-only"), {"name": "Hijacked"}, format="json"), 404, "not_found")
    error_of(client.delete(url("a-only")), 404, "not_found")
    assert Tenant.objects.get().name == "Contoso"
    assert Tenant.objects.get().is_active


def test_a_key_acts_for_its_own_account_even_with_a_session_of_another(personas, api_for):
    """A browser signed in to account B that sends account A's key acts for A, not B."""
    _, full = make_api_key(personas.account_a)
    client = APIClient()
    client.force_login(personas.outsider)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {full}")
    assert client.put(url("k-1"), {"name": "Via key"}, format="json").status_code == 201
    assert Tenant.objects.get().account == personas.account_a

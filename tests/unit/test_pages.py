"""The core's pages: sign-in and throttling, CSRF, tenants, API keys, account switcher, roles,
staff read-only access, probes and the API's schema and docs."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings as django_settings
from django.test import Client

from hub.models import ApiKey, Membership, Tenant
from hub.tenancy import SESSION_KEY, SUPPORT
from tests.factories import PASSWORD, make_api_key, make_tenant, make_user

pytestmark = pytest.mark.django_db



def field_block(html: str, name: str) -> str:
    """The rendered <div class="field"> of one form field (hub/_field.html)."""
    for block in re.findall(r'<div class="field[^"]*">.*?</div>', html, re.S):
        if f'for="id_{name}"' in block:
            return block
    raise AssertionError(f"no field {name!r} in the page")


def field_errors(html: str, name: str) -> str:
    block = field_block(html, name)
    assert "has-error" in block, block
    match = re.search(rf'<ul class="errors" id="id_{name}-errors">(.*?)</ul>', block, re.S)
    assert match, block
    return match.group(1)


# Sign-in, sign-out, throttling ------------------------------------------------------------------


def test_sign_in_page_renders(client):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Sign in</h1>" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="username"' in html and 'name="password"' in html


def test_pages_need_sign_in(client):
    response = client.get("/settings/tenants/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/settings/tenants/")


def test_sign_in_and_out(client, personas):
    response = client.post("/login/", {"username": personas.admin.username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/settings/integrations/"
    html = response.content.decode()
    assert personas.admin.username in html
    assert "Acme IT" in html
    # Signed in, the sign-in page sends you on.
    assert client.get("/login/").status_code == 302
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/settings/tenants/").status_code == 302


def test_sign_in_with_a_wrong_password_shows_an_error(client, personas):
    response = client.post("/login/", {"username": personas.admin.username, "password": "wrong"})
    assert response.status_code == 200
    assert 'class="errors form-errors"' in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_failed_sign_ins_are_throttled(client, personas):
    limit = django_settings.AXES_FAILURE_LIMIT
    assert limit >= 2
    for _ in range(limit - 1):
        response = client.post("/login/", {"username": personas.admin.username, "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/login/", {"username": personas.admin.username, "password": "wrong"})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    # Locked: even the right password is refused now.
    response = client.post("/login/", {"username": personas.admin.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # The lock is for that username from that address, not for everyone.
    response = client.post("/login/", {"username": personas.operator.username, "password": PASSWORD})
    assert response.status_code == 302


def test_home_without_an_account(page_client):
    client = page_client(make_user())
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/no-account/"
    assert "not in an account" in response.content.decode()
    assert client.get("/settings/tenants/").status_code == 302


# CSRF on every form ---------------------------------------------------------------------------------


@pytest.fixture
def csrf_client(personas):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.admin)
    return client


def _csrf_forms(personas) -> list[tuple[str, dict]]:
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    key, _ = make_api_key(personas.account_a)
    return [
        ("/settings/tenants/new/", {"name": "New", "external_id": "new-1"}),
        (f"/settings/tenants/{tenant.pk}/", {"name": "Renamed", "external_id": "c-1"}),
        (f"/settings/tenants/{tenant.pk}/active/", {"active": "0"}),
        ("/settings/api-keys/", {"name": "Another", "role": "admin"}),
        (f"/settings/api-keys/{key.pk}/revoke/", {}),
        ("/accounts/switch/", {"account": str(personas.account_a.pk)}),
        ("/settings/system/ping/", {}),
        ("/logout/", {}),
    ]


def test_every_form_refuses_a_post_without_the_csrf_token(personas, csrf_client):
    forms = _csrf_forms(personas)
    for path, data in forms:
        response = csrf_client.post(path, data)
        assert response.status_code == 403, path
    # Nothing happened.
    tenant = Tenant.objects.get(external_id="c-1")
    assert (tenant.name, tenant.is_active) == ("Contoso", True)
    assert not Tenant.objects.filter(external_id="new-1").exists()
    assert ApiKey.objects.count() == 1 and not ApiKey.objects.get().is_revoked
    assert "_auth_user_id" in csrf_client.session


def test_every_form_accepts_a_post_with_the_csrf_token(personas, csrf_client):
    forms = _csrf_forms(personas)
    csrf_client.get("/settings/tenants/")
    token = csrf_client.cookies["csrftoken"].value
    for path, data in forms:
        response = csrf_client.post(path, {**data, "csrfmiddlewaretoken": token})
        assert response.status_code in (200, 302), path


def test_htmx_posts_send_the_token_in_a_header(personas, csrf_client):
    html = csrf_client.get("/settings/system/").content.decode()
    match = re.search(r"""hx-headers='\{"X-CSRFToken": "([^"]+)"\}'""", html)
    assert match
    response = csrf_client.post("/settings/system/ping/", HTTP_X_CSRFTOKEN=match.group(1), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'data-state="waiting"' in response.content.decode()


def test_sign_in_form_needs_the_csrf_token(personas):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": personas.admin.username, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


# Tenants ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(personas, page_client):
    return page_client(personas.admin)


def test_tenant_list_shows_the_account_active_tenants(personas, admin_client):
    make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    make_tenant(personas.account_a, name="Retired Co", external_id="r-1", is_active=False)
    make_tenant(personas.account_b, name="Outsider Co", external_id="o-1")
    html = admin_client.get("/settings/tenants/").content.decode()
    assert "Contoso" in html and ">Deactivate<" in html
    assert "Retired Co" not in html
    assert "Outsider Co" not in html
    assert "Add tenant" in html
    inactive = admin_client.get("/settings/tenants/", {"show": "inactive"}).content.decode()
    assert "Retired Co" in inactive and "Contoso" not in inactive
    everything = admin_client.get("/settings/tenants/", {"show": "all"}).content.decode()
    assert "Retired Co" in everything and "Contoso" in everything and "Outsider Co" not in everything


def test_tenant_search_plain_and_htmx(personas, admin_client):
    make_tenant(personas.account_a, name="Contoso", external_id="cust-100")
    make_tenant(personas.account_a, name="Fabrikam", external_id="cust-200")
    make_tenant(personas.account_b, name="Contoso of B", external_id="cust-300")
    plain = admin_client.get("/settings/tenants/", {"q": "contoso"})
    html = plain.content.decode()
    assert "<html" in html
    assert "Contoso" in html and "Fabrikam" not in html and "Contoso of B" not in html
    partial = admin_client.get("/settings/tenants/", {"q": "200"}, HTTP_HX_REQUEST="true")
    html = partial.content.decode()
    assert partial.status_code == 200
    assert "<html" not in html and "<table" in html
    assert "Fabrikam" in html and "Contoso" not in html
    nothing = admin_client.get("/settings/tenants/", {"q": "zzz"}, HTTP_HX_REQUEST="true").content.decode()
    assert "No tenant matches" in nothing


def test_add_tenant(personas, admin_client):
    assert admin_client.get("/settings/tenants/new/").status_code == 200
    response = admin_client.post("/settings/tenants/new/", {"name": "Contoso", "external_id": " cust-1 "})
    assert response.status_code == 302
    assert response["Location"] == "/settings/tenants/"
    tenant = Tenant.objects.get()
    assert (tenant.account, tenant.name, tenant.external_id, tenant.is_active) == (
        personas.account_a,
        "Contoso",
        "cust-1",
        True,
    )
    assert "Contoso" in admin_client.get("/settings/tenants/").content.decode()


@pytest.mark.parametrize(
    "external_id, message",
    [("", "required"), ("   ", "required"), ("x" * 300, "at most 200 characters"), ("a/b", "cannot contain")],
    ids=["empty", "blank", "300 characters", "slash"],
)
def test_add_tenant_shows_external_id_errors_beside_the_field(personas, admin_client, external_id, message):
    response = admin_client.post("/settings/tenants/new/", {"name": "Contoso", "external_id": external_id})
    assert response.status_code == 200
    html = response.content.decode()
    assert message in field_errors(html, "external_id")
    assert "has-error" not in field_block(html, "name")
    assert not Tenant.objects.exists()


def test_add_tenant_with_a_duplicate_external_id(personas, admin_client):
    make_tenant(personas.account_a, name="First", external_id="dup")
    response = admin_client.post("/settings/tenants/new/", {"name": "Second", "external_id": "dup"})
    assert response.status_code == 200
    assert "already has this external ID" in field_errors(response.content.decode(), "external_id")
    assert Tenant.objects.count() == 1


def test_add_tenant_with_an_id_used_in_another_account(personas, admin_client):
    make_tenant(personas.account_b, name="B's", external_id="shared")
    response = admin_client.post("/settings/tenants/new/", {"name": "A's", "external_id": "shared"})
    assert response.status_code == 302
    assert Tenant.objects.filter(external_id="shared").count() == 2


def test_add_tenant_without_a_name(personas, admin_client):
    response = admin_client.post("/settings/tenants/new/", {"name": "", "external_id": "x-1"})
    assert response.status_code == 200
    assert "required" in field_errors(response.content.decode(), "name")


def test_edit_tenant(personas, admin_client):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    other = make_tenant(personas.account_a, name="Other", external_id="o-1")
    page = admin_client.get(f"/settings/tenants/{tenant.pk}/").content.decode()
    assert 'value="Contoso"' in page and 'value="c-1"' in page
    # Keeping its own external id is not a duplicate.
    response = admin_client.post(f"/settings/tenants/{tenant.pk}/", {"name": "Contoso Ltd", "external_id": "c-1"})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.name == "Contoso Ltd"
    # Taking another tenant's is.
    response = admin_client.post(f"/settings/tenants/{tenant.pk}/", {"name": "Contoso Ltd", "external_id": "o-1"})
    assert response.status_code == 200
    assert "already has this external ID" in field_errors(response.content.decode(), "external_id")
    tenant.refresh_from_db()
    other.refresh_from_db()
    assert (tenant.external_id, other.external_id) == ("c-1", "o-1")


def test_deactivate_and_reactivate(personas, admin_client):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    response = admin_client.post(f"/settings/tenants/{tenant.pk}/active/", {"active": "0"}, follow=True)
    assert "deactivated" in response.content.decode()
    tenant.refresh_from_db()
    assert tenant.is_active is False
    admin_client.post(f"/settings/tenants/{tenant.pk}/active/", {"active": "1"})
    tenant.refresh_from_db()
    assert tenant.is_active is True
    assert admin_client.get(f"/settings/tenants/{tenant.pk}/active/").status_code == 405


# Account scoping through the pages ------------------------------------------------------------------


def test_outsider_gets_404_for_account_a_objects(personas, page_client):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    key, _ = make_api_key(personas.account_a)
    client = page_client(personas.outsider)
    assert client.get(f"/settings/tenants/{tenant.pk}/").status_code == 404
    assert client.post(f"/settings/tenants/{tenant.pk}/", {"name": "Hijacked", "external_id": "c-1"}).status_code == 404
    assert client.post(f"/settings/tenants/{tenant.pk}/active/", {"active": "0"}).status_code == 404
    assert client.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 404
    assert client.post("/accounts/switch/", {"account": personas.account_a.pk}).status_code == 404
    assert "Contoso" not in client.get("/settings/tenants/", {"show": "all"}).content.decode()
    tenant.refresh_from_db()
    key.refresh_from_db()
    assert (tenant.name, tenant.is_active, key.is_revoked) == ("Contoso", True, False)


def test_a_stale_session_account_falls_back_to_one_the_user_belongs_to(personas, page_client):
    client = page_client(personas.outsider)
    session = client.session
    session[SESSION_KEY] = personas.account_a.pk
    session.save()
    make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    html = client.get("/settings/tenants/", {"show": "all"}).content.decode()
    assert "Contoso" not in html
    assert client.session[SESSION_KEY] == personas.account_b.pk


# Roles ------------------------------------------------------------------------------------------


def test_support_sees_pages_but_cannot_post(personas, page_client):
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    client = page_client(personas.support)
    for path in ["/settings/integrations/", "/settings/tenants/", "/settings/ticketing/", "/settings/billing/",
                 "/settings/logs/", "/settings/system/"]:
        assert client.get(path).status_code == 200, path
    html = client.get("/settings/tenants/").content.decode()
    assert "Contoso" in html
    assert "Add tenant" not in html and ">Deactivate<" not in html and "/active/" not in html
    assert client.post("/settings/tenants/new/", {"name": "New", "external_id": "n-1"}).status_code == 403
    assert client.post(f"/settings/tenants/{tenant.pk}/", {"name": "X", "external_id": "c-1"}).status_code == 403
    assert client.post(f"/settings/tenants/{tenant.pk}/active/", {"active": "0"}).status_code == 403
    assert client.post("/settings/system/ping/").status_code == 403
    assert client.get("/settings/api-keys/").status_code == 403
    tenant.refresh_from_db()
    assert (tenant.name, tenant.is_active) == ("Contoso", True)
    assert Tenant.objects.count() == 1


def test_operator_writes_tenants_but_cannot_open_api_keys(personas, page_client):
    key, _ = make_api_key(personas.account_a)
    client = page_client(personas.operator)
    assert client.post("/settings/tenants/new/", {"name": "New", "external_id": "n-1"}).status_code == 302
    assert client.get("/settings/api-keys/").status_code == 403
    assert client.post("/settings/api-keys/", {"name": "Mine", "role": "admin"}).status_code == 403
    assert client.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 403
    assert "API keys" not in client.get("/settings/tenants/").content.decode()
    assert ApiKey.objects.count() == 1
    key.refresh_from_db()
    assert not key.is_revoked


# API keys ---------------------------------------------------------------------------------------


def test_admin_creates_a_key_shown_once(personas, admin_client):
    assert admin_client.get("/settings/api-keys/").status_code == 200
    response = admin_client.post("/settings/api-keys/", {"name": "Host product", "role": "support"})
    assert response.status_code == 200
    html = response.content.decode()
    match = re.search(r'id="new-key" type="text" readonly value="(hub_[^"]+)"', html)
    assert match, html
    full = match.group(1)
    key = ApiKey.objects.get()
    assert (key.account, key.name, key.role, key.created_by) == (personas.account_a, "Host product", SUPPORT, personas.admin)
    assert full.startswith(f"hub_{key.prefix}_")
    # The key works, with the role chosen.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {full}")
    assert api.get("/api/v1/tenants/").status_code == 200
    assert api.post("/api/v1/tenants/", {"external_id": "x", "name": "X"}, content_type="application/json").status_code == 403
    # Afterwards only the prefix is shown.
    later = admin_client.get("/settings/api-keys/").content.decode()
    assert full not in later
    assert full[len(f"hub_{key.prefix}_") :] not in later
    assert f"hub_{key.prefix}_…" in later
    assert 'id="new-key"' not in later


def test_api_key_form_errors_beside_the_field(personas, admin_client):
    response = admin_client.post("/settings/api-keys/", {"name": "  ", "role": "root"})
    html = response.content.decode()
    assert response.status_code == 200
    assert field_errors(html, "name")
    assert field_errors(html, "role")
    assert not ApiKey.objects.exists()


def test_admin_revokes_a_key(personas, admin_client):
    key, full = make_api_key(personas.account_a)
    response = admin_client.post(f"/settings/api-keys/{key.pk}/revoke/", follow=True)
    assert "revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.is_revoked
    assert Client(HTTP_AUTHORIZATION=f"Bearer {full}").get("/api/v1/tenants/").status_code == 401


# Account switcher and staff ----------------------------------------------------------------------


def test_a_user_in_two_accounts_switches(personas, page_client):
    user = make_user("two@msp.example", account=personas.account_a)
    Membership.objects.create(user=user, account=personas.account_b, role=SUPPORT)
    make_tenant(personas.account_a, name="A customer", external_id="a-1")
    make_tenant(personas.account_b, name="B customer", external_id="b-1")
    client = page_client(user)
    html = client.get("/settings/tenants/").content.decode()
    assert "A customer" in html and "B customer" not in html
    assert "Other MSP" in html  # offered in the switcher
    response = client.post("/accounts/switch/", {"account": personas.account_b.pk, "next": "/settings/tenants/"})
    assert response.status_code == 302
    assert response["Location"] == "/settings/tenants/"
    html = client.get("/settings/tenants/").content.decode()
    assert "B customer" in html and "A customer" not in html
    assert "Support (read-only)" in html
    # Their role there is support: read-only.
    assert client.post("/settings/tenants/new/", {"name": "N", "external_id": "n"}).status_code == 403


def test_switching_to_an_account_you_are_not_in_is_404(personas, page_client):
    client = page_client(personas.admin)
    assert client.post("/accounts/switch/", {"account": personas.account_b.pk}).status_code == 404
    assert client.post("/accounts/switch/", {"account": "junk"}).status_code == 404
    assert client.session[SESSION_KEY] == personas.account_a.pk


def test_switch_does_not_redirect_off_site(personas, page_client):
    client = page_client(personas.admin)
    response = client.post("/accounts/switch/", {"account": personas.account_a.pk, "next": "https://evil.example/"})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_staff_read_any_account_but_cannot_write(personas, page_client):
    tenant_a = make_tenant(personas.account_a, name="A customer", external_id="a-1")
    tenant_b = make_tenant(personas.account_b, name="B customer", external_id="b-1")
    client = page_client(personas.staff)
    assert "A customer" in client.get("/settings/tenants/").content.decode()
    assert client.post("/accounts/switch/", {"account": personas.account_b.pk}).status_code == 302
    html = client.get("/settings/tenants/").content.decode()
    assert "B customer" in html and "Vendor support (read-only)" in html
    assert "Add tenant" not in html
    assert client.get(f"/settings/tenants/{tenant_b.pk}/").status_code == 200
    assert client.post("/settings/tenants/new/", {"name": "N", "external_id": "n"}).status_code == 403
    assert client.post(f"/settings/tenants/{tenant_b.pk}/", {"name": "X", "external_id": "b-1"}).status_code == 403
    assert client.post(f"/settings/tenants/{tenant_b.pk}/active/", {"active": "0"}).status_code == 403
    assert client.post("/settings/api-keys/", {"name": "K", "role": "admin"}).status_code == 403
    tenant_b.refresh_from_db()
    tenant_a.refresh_from_db()
    assert (tenant_b.name, tenant_b.is_active, tenant_a.is_active) == ("B customer", True, True)
    assert Tenant.objects.count() == 2 and not ApiKey.objects.exists()


# Probes, schema and docs ------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_readyz(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"ready": True, "database": "ok", "broker": "ok"}


def test_openapi_schema(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/tenants/" in schema["paths"]
    assert "/api/v1/tenants/{external_id}/" in schema["paths"]
    assert "put" in schema["paths"]["/api/v1/tenants/{external_id}/"]
    assert "ApiKey" in schema["components"]["securitySchemes"]
    assert b"/api/v1/tenants/" in client.get("/api/schema/").content  # the default YAML too


def test_api_docs_render(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"/api/schema/" in response.content

"""Settings → Integrations pages against the in-memory PSA: linking, the status panel that
polls, the actions and who may use them, removal, company mapping, and account isolation."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from integrations import services
from integrations.models import CompanyMapping, Connection, IntegrationLog, PsaCompany
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db

SECRET = "page-secret-91c0ffee77"
BASE = "/settings/integrations/"


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache):
    """The in-memory PSA behind every vendor slug, and a private cache."""


@pytest.fixture
def admin_page(personas, page_client):
    return page_client(personas.admin)


def link_a(personas, status=Connection.Status.CONNECTED, **fields) -> Connection:
    """Account A linked to "ConnectWise" (the memory PSA), without running any task."""
    connection = services.save_connection(personas.account_a, "connectwise", {"site": "acme.example.com"}, {"api_key": SECRET})
    Connection.objects.filter(pk=connection.pk).update(status=status, **fields)
    connection.refresh_from_db()
    return connection


def field_errors(html: str, name: str) -> str:
    """The error list rendered beside one field (hub/_field.html)."""
    match = re.search(rf'<ul class="errors" id="id_{name}-errors">(.*?)</ul>', html, re.S)
    assert match, f"no errors beside {name!r}"
    return match.group(1)


def text(response) -> str:
    return response.content.decode()


# The Integrations page and the link form -------------------------------------------------------------


def test_admin_sees_a_link_action_for_each_psa(personas, admin_page):
    html = text(admin_page.get(BASE))
    for slug, label in (("connectwise", "Link ConnectWise"), ("autotask", "Link Autotask"), ("halo", "Link Halo PSA")):
        assert f'href="{BASE}link/{slug}/">{label}</a>' in html


@pytest.mark.parametrize("who", ["support", "operator"])
def test_others_see_no_link_action(personas, page_client, who):
    html = text(page_client(getattr(personas, who)).get(BASE))
    assert f"{BASE}link/" not in html
    assert html.count("An account admin can link") == 3


def test_link_form_page(personas, admin_page):
    response = admin_page.get(f"{BASE}link/connectwise/")
    assert response.status_code == 200
    html = text(response)
    assert "<h1>Link ConnectWise</h1>" in html
    assert 'name="site"' in html and 'name="api_key"' in html and 'type="password"' in html
    assert "Before you link ConnectWise" in html  # the vendor's help beside the form
    assert admin_page.get(f"{BASE}link/nosuchpsa/").status_code == 404


@pytest.mark.parametrize("who", ["support", "operator"])
def test_only_admins_open_the_link_form(personas, page_client, who):
    client = page_client(getattr(personas, who))
    assert client.get(f"{BASE}link/connectwise/").status_code == 403
    assert client.post(f"{BASE}link/connectwise/", {"site": "a.example.com", "api_key": SECRET}).status_code == 403
    assert not Connection.objects.exists()


def test_link_form_errors_are_shown_beside_the_fields(personas, admin_page, queued):
    response = admin_page.post(f"{BASE}link/connectwise/", {"site": "", "api_key": ""})
    assert response.status_code == 200
    html = text(response)
    assert "This field is required." in field_errors(html, "site")
    assert "Enter the API key." in field_errors(html, "api_key")
    response = admin_page.post(f"{BASE}link/connectwise/", {"site": "https://acme.example.com/v4_6_release", "api_key": SECRET})
    assert "Enter the host name only" in field_errors(text(response), "site")
    assert SECRET not in text(response)  # a secret is never rendered back
    assert not Connection.objects.exists() and queued == []


def test_linking_saves_queues_verification_and_shows_verifying(
    personas, admin_page, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_page.post(f"{BASE}link/connectwise/", {"site": "https://Acme.Example.com/", "api_key": SECRET})
    assert response.status_code == 302 and response["Location"] == BASE
    connection = Connection.objects.for_account(personas.account_a).get()
    assert connection.config == {"site": "acme.example.com"} and connection.secrets_set == ["api_key"]
    assert queued == [("verify_connection", (str(connection.pk), queued[0][1][1]))]
    html = text(admin_page.get(BASE))
    assert "Verifying…" in html
    assert f'hx-get="{BASE}status/" hx-trigger="every 2s"' in html
    assert "credentials saved. Verifying the connection" in html
    assert SECRET not in html


def test_update_credentials_keeps_the_secret_when_blank(personas, admin_page, queued):
    connection = link_a(personas)
    response = admin_page.get(f"{BASE}link/connectwise/")
    html = text(response)
    assert "<h1>Update ConnectWise credentials</h1>" in html
    assert 'value="acme.example.com"' in html
    assert SECRET not in html
    assert "Secret fields left blank keep the stored value. Mappings are kept." in html
    response = admin_page.post(f"{BASE}link/connectwise/", {"site": "new.example.com", "api_key": ""})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert services.load_credentials(connection) == {"api_key": SECRET}
    assert connection.config["site"] == "new.example.com"
    assert connection.status == Connection.Status.VERIFYING


def test_linking_a_second_psa_asks_to_remove_the_first(personas, admin_page):
    link_a(personas)
    response = admin_page.get(f"{BASE}link/autotask/", follow=True)
    assert response.redirect_chain[-1][0] == BASE
    assert "ConnectWise Manage is linked. Remove it first to link Autotask" in text(response)
    response = admin_page.post(f"{BASE}link/halo/", {"site": "h.example.com", "api_key": "x"}, follow=True)
    assert "Remove it first to link Halo PSA" in text(response)
    assert Connection.objects.get().vendor == "connectwise"


def test_a_failed_link_shows_the_message_and_never_the_secret(
    personas, admin_page, memory_psa, eager_tasks, django_capture_on_commit_callbacks
):
    memory_psa.mode = "auth_failed"
    with django_capture_on_commit_callbacks(execute=True):
        admin_page.post(f"{BASE}link/connectwise/", {"site": "acme.example.com", "api_key": SECRET})
    html = text(admin_page.get(BASE))
    assert '<span class="badge bad">Failed</span>' in html
    assert "Authentication failed: re-check the Site and the API key." in html
    assert "Update credentials" in html and "Try again" in html
    assert 'hx-trigger="every 2s"' not in html  # nothing to wait for
    for body in (html, text(admin_page.get(f"{BASE}status/")), text(admin_page.get(f"{BASE}link/connectwise/"))):
        assert SECRET not in body
    for log in IntegrationLog.objects.all():
        assert SECRET not in " ".join(str(value) for value in log.__dict__.values())


# The status partial -------------------------------------------------------------------------------------


def test_status_partial_polls_while_verifying_and_refreshes_when_done(personas, admin_page):
    connection = link_a(personas, status=Connection.Status.VERIFYING)
    response = admin_page.get(f"{BASE}status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in text(response) and "Verifying…" in text(response)
    assert "HX-Refresh" not in response.headers
    assert "<html" not in text(response)  # a partial

    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.CONNECTED)
    response = admin_page.get(f"{BASE}status/", HTTP_HX_REQUEST="true")
    assert response.headers["HX-Refresh"] == "true"
    assert "Connected" in text(response) and "every 2s" not in text(response)
    assert "HX-Refresh" not in admin_page.get(f"{BASE}status/").headers  # plain GET: no header


def test_connected_page_shows_the_panels(personas, admin_page, memory_psa):
    connection = link_a(personas)
    services.refresh_picklist(str(connection.pk), "priorities", "", "cid")
    html = text(admin_page.get(BASE))
    assert '<span class="badge ok">Connected</span>' in html
    assert "<td>priorities</td>" in html and "<td>2</td>" in html
    assert "Check permissions" in html and "Import customers" in html and "Remove integration" in html


def test_missing_permissions_are_listed_in_words(personas, admin_page, memory_psa):
    from tests.fakes.memory import missing_priority_report

    connection = link_a(personas)
    memory_psa.permission_report = missing_priority_report()
    services.check_permissions(str(connection.pk), "cid")
    html = text(admin_page.get(BASE))
    missing = re.search(r'<ul class="checklist" id="missing-permissions">(.*?)</ul>', html, re.S).group(1)
    assert "Service &gt; Priority" in missing
    assert "does not have permission to access Service &gt; Priority." in missing
    assert "System &gt; Security Roles" in missing



def test_the_page_polls_a_permission_check_until_its_log_row_is_written(personas, admin_page, memory_psa):
    connection = link_a(personas)
    page = text(admin_page.get(f"{BASE}?checking=abc123"))
    assert f'hx-get="{BASE}work/permissions/?id=abc123"' in page and 'id="permissions-checking"' in page
    poll = admin_page.get(f"{BASE}work/permissions/?id=abc123", HTTP_HX_REQUEST="true")
    assert poll.status_code == 204

    services.check_permissions(str(connection.pk), "abc123")

    done = admin_page.get(f"{BASE}work/permissions/?id=abc123", HTTP_HX_REQUEST="true")
    assert done.status_code == 200 and done["HX-Redirect"] == BASE
    assert 'id="permissions-checking"' not in text(admin_page.get(f"{BASE}?checking=abc123"))
    assert admin_page.get(f"{BASE}work/permissions/?id=not-hex").status_code == 404
    assert admin_page.get(f"{BASE}work/other/?id=abc123").status_code == 404


# Actions: roles and CSRF -----------------------------------------------------------------------------------

# (path, data, who may: "admin" or "operator")
ACTIONS = [
    ("verify/", {}, "admin"),
    ("permissions/", {}, "operator"),
    ("refresh/", {}, "operator"),
    ("import/", {}, "operator"),
    ("pause/", {"paused": "1"}, "admin"),
    ("remove/", {}, "admin"),
]


@pytest.mark.parametrize(("path", "data", "needs"), ACTIONS)
def test_actions_need_the_right_role(personas, page_client, queued, path, data, needs):
    link_a(personas)
    assert page_client(personas.support).post(BASE + path, data).status_code == 403
    operator = page_client(personas.operator).post(BASE + path, data).status_code
    assert operator == (302 if needs == "operator" else 403)
    assert page_client(personas.admin).post(BASE + path, data).status_code == 302


def test_actions_queue_their_task(personas, admin_page, queued, django_capture_on_commit_callbacks):
    connection = link_a(personas)
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_page.post(f"{BASE}verify/")["Location"] == BASE
        # The page polls until the queued work's correlation id shows in the log.
        checking = admin_page.post(f"{BASE}permissions/")["Location"]
        assert admin_page.post(f"{BASE}refresh/")["Location"] == BASE
        importing = admin_page.post(f"{BASE}import/")["Location"]
    names = [name for name, _ in queued]
    by_name = dict(queued)
    assert checking == f"{BASE}?checking={by_name['check_permissions'][1]}"
    assert importing == f"{BASE}companies/?importing={by_name['import_companies'][1]}"
    assert names == ["verify_connection", "check_permissions", "refresh_picklist", "refresh_picklist", "import_companies"]
    assert {args[1] for name, args in queued if name == "refresh_picklist"} == {"boards", "priorities"}
    assert all(args[0] == str(connection.pk) for _, args in queued)


def test_refresh_and_map_do_not_redirect_off_site(personas, admin_page, queued):
    link_a(personas)
    response = admin_page.post(f"{BASE}refresh/", {"next": "https://evil.example/phish"})
    assert response["Location"] == BASE
    response = admin_page.post(f"{BASE}refresh/", {"next": "/settings/ticketing/"})
    assert response["Location"] == "/settings/ticketing/"
    response = admin_page.post(f"{BASE}companies/map/", {"next": "//evil.example/"})
    assert response["Location"] == f"{BASE}companies/"


def test_posts_need_the_csrf_token(personas, queued):
    connection = link_a(personas)
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.admin)
    paths = [path for path, _, _ in ACTIONS] + ["companies/map/", "link/connectwise/"]
    for path in paths:
        assert client.post(BASE + path, {"paused": "1", "site": "x.example.com", "api_key": "k"}).status_code == 403, path
    assert Connection.objects.filter(pk=connection.pk, paused=False).exists()
    assert queued == []
    client.get(BASE)
    token = client.cookies["csrftoken"].value
    assert client.post(f"{BASE}pause/", {"paused": "1", "csrfmiddlewaretoken": token}).status_code == 302


def test_pause_resume_and_billing_only(personas, admin_page):
    connection = link_a(personas)
    admin_page.post(f"{BASE}pause/", {"paused": "1", "scope": "billing"})
    connection.refresh_from_db()
    assert (connection.paused, connection.billing_paused) == (False, True)
    html = text(admin_page.get(BASE))
    assert "Resume billing" in html and "Pause integration" in html and "Billing paused" in html
    response = admin_page.post(f"{BASE}pause/", {"paused": "1"}, follow=True)
    assert "The integration paused." in text(response) and "Resume integration" in text(response)
    admin_page.post(f"{BASE}pause/", {"paused": "0"})
    admin_page.post(f"{BASE}pause/", {"paused": "0", "scope": "billing"})
    connection.refresh_from_db()
    assert (connection.paused, connection.billing_paused) == (False, False)


def test_remove_confirms_what_is_deleted_then_removes(personas, admin_page, page_client, memory_psa):
    connection = link_a(personas)
    services.import_companies(str(connection.pk), "cid")
    services.refresh_picklist(str(connection.pk), "boards", "", "cid")
    tenant = make_tenant(personas.account_a, name="Acme Corp")
    services.map_tenant(personas.account_a, tenant, "1")

    assert page_client(personas.operator).get(f"{BASE}remove/").status_code == 403
    admin_page = page_client(personas.admin)
    html = text(admin_page.get(f"{BASE}remove/"))
    assert "Remove the ConnectWise Manage integration?" in html
    assert "the stored ConnectWise Manage credentials" in html
    assert "1 tenant-to-company mapping," in html
    assert "5 imported companies and 1 cached list." in html
    assert "The integration log keeps a record that the integration was removed." in html
    assert Connection.objects.filter(pk=connection.pk).exists()  # GET changes nothing

    response = admin_page.post(f"{BASE}remove/", follow=True)
    assert "ConnectWise Manage integration removed." in text(response)
    assert "Link ConnectWise" in text(response)
    assert not Connection.objects.exists() and not CompanyMapping.objects.exists() and not PsaCompany.objects.exists()
    assert IntegrationLog.objects.filter(action="connection.remove", connection__isnull=True).count() == 1


# Company import and mapping ------------------------------------------------------------------------------------


@pytest.fixture
def mapping_setup(personas, memory_psa):
    connection = link_a(personas)
    services.import_companies(str(connection.pk), "cid")
    tenants = {
        name: make_tenant(personas.account_a, name=name, external_id=f"t-{i}")
        for i, name in enumerate(["ACME Corp.", "Initeck", "Zeta Widgets", "Globex"])
    }
    return connection, tenants


def test_mapping_page_shows_suggestions(personas, admin_page, mapping_setup):
    _, tenants = mapping_setup
    html = text(admin_page.get(f"{BASE}companies/"))
    acme = re.search(r'<tr data-tenant="t-0">(.*?)</tr>', html, re.S).group(1)
    assert re.search(rf'<input type="checkbox" name="accept" value="{tenants["ACME Corp."].pk}" checked', acme)
    assert f'<input type="hidden" name="suggested-{tenants["ACME Corp."].pk}" value="1">' in acme
    assert "Acme Corp" in acme and "normalised match" in acme
    initeck = re.search(r'<tr data-tenant="t-1">(.*?)</tr>', html, re.S).group(1)
    assert "Initech LLC" in initeck and "close match" in initeck and "checked" not in initeck  # close: not pre-ticked
    zeta = re.search(r'<tr data-tenant="t-2">(.*?)</tr>', html, re.S).group(1)
    assert 'name="accept"' not in zeta


def test_mapping_page_without_imported_companies(personas, admin_page, page_client):
    link_a(personas)
    html = text(admin_page.get(f"{BASE}companies/"))
    assert "No customers imported yet." in html and "Import customers" in html
    html = text(page_client(personas.support).get(f"{BASE}companies/"))
    assert "An operator can import them." in html


def test_bulk_accept_and_unmap(personas, page_client, mapping_setup):
    _, tenants = mapping_setup
    operator = page_client(personas.operator)
    acme, initeck, globex = tenants["ACME Corp."], tenants["Initeck"], tenants["Globex"]
    response = operator.post(f"{BASE}companies/map/", {
        "accept": [acme.pk, initeck.pk, globex.pk],
        f"suggested-{acme.pk}": "1", f"suggested-{initeck.pk}": "3", f"suggested-{globex.pk}": "2",
        f"company-{acme.pk}": "", f"company-{initeck.pk}": "", f"company-{globex.pk}": "",
    }, follow=True)
    assert "Saved 3 mappings." in text(response)
    mapped = dict(CompanyMapping.objects.for_account(personas.account_a).values_list("tenant__name", "company_name"))
    assert mapped == {"ACME Corp.": "Acme Corp", "Initeck": "Initech LLC", "Globex": "Globex, Inc."}

    # Unmapping: the select's "Unmap" choice.
    response = operator.post(f"{BASE}companies/map/", {f"company-{globex.pk}": ""}, follow=True)
    assert "Saved 1 mapping." in text(response)
    assert not CompanyMapping.objects.filter(tenant=globex).exists()
    # Keeping the current company changes nothing.
    response = operator.post(f"{BASE}companies/map/", {f"company-{acme.pk}": "1"}, follow=True)
    assert "Saved 0 mappings." in text(response)


def test_an_explicit_choice_wins_over_a_ticked_suggestion(personas, admin_page, mapping_setup):
    _, tenants = mapping_setup
    acme = tenants["ACME Corp."]
    # The suggestion (Acme Corp) is ticked by default; the person picked Stark Industries instead.
    admin_page.post(f"{BASE}companies/map/", {"accept": [acme.pk], f"suggested-{acme.pk}": "1", f"company-{acme.pk}": "5"})
    assert CompanyMapping.objects.get(tenant=acme).company_name == "Stark Industries"


def test_mapping_to_an_unknown_company_is_refused(personas, admin_page, mapping_setup):
    _, tenants = mapping_setup
    zeta = tenants["Zeta Widgets"]
    response = admin_page.post(f"{BASE}companies/map/", {f"company-{zeta.pk}": "999"}, follow=True)
    assert "Company 999 is not among the imported customers; import again." in text(response)
    assert not CompanyMapping.objects.exists()


def test_support_cannot_map(personas, page_client, mapping_setup):
    _, tenants = mapping_setup
    acme = tenants["ACME Corp."]
    client = page_client(personas.support)
    html = text(client.get(f"{BASE}companies/"))
    assert "Save mappings" not in html and "disabled" in html
    assert client.post(f"{BASE}companies/map/", {"accept": [acme.pk], f"suggested-{acme.pk}": "1"}).status_code == 403
    assert not CompanyMapping.objects.exists()


def test_company_search_partial_and_table_search(personas, admin_page, mapping_setup):
    response = admin_page.get(f"{BASE}companies/search/", {"q": "glo"}, HTTP_HX_REQUEST="true")
    html = text(response)
    assert '<option value="2">Globex, Inc. (Globex)</option>' in html
    assert "Acme Corp" not in html
    assert '<option value="" selected>—</option>' in html
    html = text(admin_page.get(f"{BASE}companies/search/", {"q": "", "current": "1"}))
    assert '<option value="1" selected>(keep the current company)</option>' in html and "Unmap" in html

    response = admin_page.get(f"{BASE}companies/", {"q": "zeta"}, HTTP_HX_REQUEST="true")
    html = text(response)
    assert "<h1>" not in html and 'data-tenant="t-2"' in html and 'data-tenant="t-0"' not in html
    html = text(admin_page.get(f"{BASE}companies/", {"show": "unmapped"}))
    assert html.count("<tr data-tenant=") == 4


# Another account --------------------------------------------------------------------------------------------


def test_outsider_gets_404_for_every_integration_object(personas, page_client, mapping_setup, queued):
    connection, tenants = mapping_setup
    client = page_client(personas.outsider)
    for path in ("status/", "remove/", "companies/", "companies/search/"):
        assert client.get(BASE + path).status_code == 404, path
    for path in ("verify/", "permissions/", "refresh/", "pause/", "remove/", "import/", "companies/map/"):
        assert client.post(BASE + path, {"paused": "1"}).status_code == 404, path
    acme = tenants["ACME Corp."]
    assert client.post(f"{BASE}companies/map/", {"accept": [acme.pk], f"suggested-{acme.pk}": "1"}).status_code == 404
    # Its own page shows its own, empty, state.
    html = text(client.get(BASE))
    assert "Link ConnectWise" in html and "connection-status" not in html and "acme.example.com" not in html
    connection.refresh_from_db()
    assert not connection.paused and not CompanyMapping.objects.exists()
    assert queued == []


def test_outsider_with_its_own_link_still_cannot_touch_account_a_tenants(personas, page_client, mapping_setup):
    _, tenants = mapping_setup
    services.save_connection(personas.account_b, "halo", {"site": "b.example.com"}, {"api_key": "other"})
    client = page_client(personas.outsider)
    acme = tenants["ACME Corp."]
    assert client.post(f"{BASE}companies/map/", {f"company-{acme.pk}": "1"}).status_code == 404
    assert client.post(f"{BASE}companies/map/", {"company-abc": "1"}).status_code == 404
    html = text(client.get(f"{BASE}companies/"))
    assert "ACME Corp." not in html and "No customers imported yet." in html
    assert not CompanyMapping.objects.exists()


def test_unreadable_stored_credentials_can_be_re_entered(personas, admin_page, queued):
    """A retired encryption key (or a copied row) makes the stored bundle unreadable: the
    verification says "Update credentials", so the form must ask for every secret again."""
    connection = link_a(personas, status=Connection.Status.FAILED)
    Connection.objects.filter(pk=connection.pk).update(credentials="fernet:gone:not-a-token")
    assert "Leave blank to keep it" not in text(admin_page.get(f"{BASE}link/connectwise/"))
    response = admin_page.post(f"{BASE}link/connectwise/", {"site": "acme.example.com", "api_key": ""})
    assert response.status_code == 200
    assert "Enter the API key." in field_errors(text(response), "api_key")
    response = admin_page.post(f"{BASE}link/connectwise/", {"site": "acme.example.com", "api_key": "fresh-key"})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert services.load_credentials(connection) == {"api_key": "fresh-key"}


"""Settings → Billing against cached picklists and the in-memory PSA's billing lines (no HTTP):
per vendor the products and tenants' mappings (ConnectWise agreements of the mapped company,
Autotask's Customer → Contract → Service line item, Halo licences or "create it"), lists still
loading, runs (preview, sync, approve whole or per tenant, revert with a confirmation), the
progress partial, the paused banner, the settings, roles, CSRF, escaping and the SVG history."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils.html import escape

from billing import charts, services
from billing.models import BillingItem, BillingMapping, BillingRun, BillingSettings, Mode, ProductMapping
from integrations import services as integration_services
from integrations.base.errors import BlockedError
from integrations.connectwise.billing import MULTIPLE_AGREEMENTS
from integrations.models import CompanyMapping, Connection, Picklist, PsaCompany
from tests.factories import make_tenant
from tests.fakes.memory import BILLING_LISTS, billing_book, cache_billing_lists

pytestmark = pytest.mark.django_db

URL = "/settings/billing/"
HX = {"HTTP_HX_REQUEST": "true"}
PRODUCT_ID = {"connectwise": "701", "autotask": "1", "halo": "1"}
PRODUCT_LABEL = {"connectwise": "ConnectWise Catalog Item", "autotask": "Autotask Service", "halo": "Halo PSA Item"}
COMPANY = {"connectwise": ("250", "Acme Dental"), "autotask": ("1", "Acme Corp"), "halo": ("1", "Acme Corporation")}


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache, eager_tasks):
    billing_book.reset()
    yield
    billing_book.reset()


def connect(account, vendor="connectwise", lists=True, **fields) -> Connection:
    """A connected link to the in-memory PSA (credentials stored, so runs can build it)."""
    connection = integration_services.save_connection(account, vendor, {"site": "acme.example.com"}, {"api_key": "k-51c0"})
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.CONNECTED, **fields)
    connection.refresh_from_db()
    if lists:
        cache_billing_lists(connection)
    return connection


def product_of(account, vendor="connectwise", key="users", **fields) -> ProductMapping:
    return services.save_product(account, key, {"name": key.title(), "psa_product_id": PRODUCT_ID[vendor],
                                                "psa_product_name": "Mapped product", **fields})  # fmt: skip


def tenant_of(account, vendor="connectwise", name=None, external_id="acme", company=True):
    company_id, company_name = COMPANY[vendor]
    tenant = make_tenant(account, name or company_name, external_id)
    if company:
        CompanyMapping.objects.create(account=account, tenant=tenant, company_id=company_id, company_name=company_name)
    return tenant


def text(response) -> str:
    return response.content.decode()


def usage(account, tenant, units, key="users"):
    services.record_usage(account, [services.UsageReport(tenant, key, units)])


@pytest.fixture
def admin(personas, page_client):
    return page_client(personas.admin)


@pytest.fixture
def account(personas):
    return personas.account_a


# --- the page per vendor ------------------------------------------------------------------------------


def test_without_a_psa_the_page_says_link_one_first(admin):
    html = text(admin.get(URL))
    assert 'id="link-first"' in html and "Link a PSA first" in html
    assert "Sync now" not in html


@pytest.mark.parametrize("vendor", ["connectwise", "autotask", "halo"])
def test_products_come_from_the_cached_list_and_tenants_are_all_listed(admin, account, vendor):
    connect(account, vendor)
    product = product_of(account, vendor)
    mapped = tenant_of(account, vendor)
    make_tenant(account, "Zeta Unmapped", "zeta")  # no company mapping, no billing mapping
    usage(account, mapped, 17)

    html = text(admin.get(URL))

    [kind] = [k for (k, parent) in BILLING_LISTS[vendor] if k in ("catalog_items", "services", "items")]
    for item in BILLING_LISTS[vendor][(kind, "")]:
        assert f'<option value="{item["id"]}"' in html and escape(item["name"]) in html
    assert f'<label for="id_product-{product.pk}-psa_product_id">{PRODUCT_LABEL[vendor]}</label>' in html
    assert re.search(rf'<option value="{PRODUCT_ID[vendor]}" selected>', html)
    # Every tenant is listed, the unmapped ones as such (never silently left out).
    rows = re.findall(r'<tr class="tenant-row" data-tenant="([^"]+)"', html)
    assert rows == ["acme", "zeta"]
    assert "2 active tenants, 2 not mapped for billing" in html
    zeta = html[html.index('data-tenant="zeta"'):]
    assert "No company" in zeta[:1500] and "Unmapped" in zeta[:1500]
    acme = html[html.index('data-tenant="acme"'):html.index('data-tenant="zeta"')]
    assert ">17 <" in acme, "the tenant's latest usage"
    assert "Not mapped for billing: choose" in acme


def test_overrides_are_offered_for_connectwise_only(admin, account):
    connect(account, "connectwise")
    html = text(admin.get(URL))
    assert "Invoice description" in html and "Unit price" in html and "Unit cost" in html
    connection = Connection.objects.get(account=account)
    connection.vendor = "halo"
    connection.save()
    cache_billing_lists(connection)
    html = text(admin.get(URL))
    assert "Invoice description" not in html and "Halo PSA bills at its own price" in html


def test_a_list_not_cached_yet_loads_with_polling_and_a_refresh_is_queued(admin, account, django_capture_on_commit_callbacks,
                                                                          monkeypatch):  # fmt: skip
    from integrations import tasks

    sent = []
    monkeypatch.setattr(tasks.refresh_picklist, "delay", lambda *args: sent.append(args[1:3]))
    connect(account, "connectwise", lists=False)
    with django_capture_on_commit_callbacks(execute=True):
        html = text(admin.get(URL))
    assert "Loading from ConnectWise…" in html
    assert re.search(r'hx-get="/settings/billing/products/picker/\?" hx-trigger="every 2s"', html)
    assert ("catalog_items", "") in sent

    # The list arrives: the polled picker answers with the select and stops polling.
    cache_billing_lists(Connection.objects.get(account=account))
    picker = text(admin.get(f"{URL}products/picker/", HX))
    assert "every 2s" not in picker and "MDR-SEAT: M365 AI Powered MDR (per user)" in picker


def test_a_failed_list_says_why(admin, account):
    connection = connect(account, "connectwise", lists=False)
    Picklist.objects.create(connection=connection, kind="catalog_items", error="ConnectWise API user does not have "
                            "permission to access Procurement > Product Catalog.")  # fmt: skip
    html = text(admin.get(URL))
    assert "Could not load the catalog items from ConnectWise: ConnectWise API user does not have permission" in html


# --- products --------------------------------------------------------------------------------------------


def test_an_operator_adds_and_changes_a_product_with_seed_003_overrides(personas, page_client, account):
    connect(account, "connectwise")
    client = page_client(personas.operator)
    response = client.post(f"{URL}products/", {
        "new-product-key": "domains", "new-product-name": "Domains", "new-product-psa_product_id": "701",
        "new-product-invoice_description": "Monitored domains", "new-product-unit_price": "2.50",
        "new-product-unit_cost": "1.10",
    })  # fmt: skip
    assert response.status_code == 302
    product = ProductMapping.objects.get(account=account, key="domains")
    assert (product.psa_product_id, product.psa_product_name, product.vendor) == (
        "701", "MDR-SEAT: M365 AI Powered MDR (per user)", "connectwise")
    assert (product.invoice_description, str(product.unit_price), str(product.unit_cost)) == ("Monitored domains", "2.5000", "1.1000")

    response = client.post(f"{URL}products/{product.pk}/", {
        f"product-{product.pk}-name": "Domains", f"product-{product.pk}-psa_product_id": "702",
        f"product-{product.pk}-invoice_description": "", f"product-{product.pk}-unit_price": "",
        f"product-{product.pk}-unit_cost": "", f"product-{product.pk}-key": "renamed",
    })  # fmt: skip
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.key, product.psa_product_id, product.psa_product_name, product.unit_price) == (
        "domains", "702", "BACKUP-GB: Managed Backup (per GB)", None)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"key": "Users!"}, "Use lower-case letters, digits, &#x27;-&#x27; and &#x27;_&#x27; (e.g. users)."),
        ({"key": "users", "psa_product_id": "999"}, "Not in ConnectWise&#x27;s list of catalog items"),
        ({"key": "taken"}, "A product “taken” already exists"),
        ({"key": "gb", "unit_price": "-1"}, "Ensure this value is greater than or equal to 0."),
    ],
)
def test_a_bad_product_is_refused_beside_the_field(admin, account, values, error):
    connect(account, "connectwise")
    product_of(account, key="taken")
    response = admin.post(f"{URL}products/", {f"new-product-{k}": v for k, v in values.items()})
    assert response.status_code == 400
    assert error in text(response)
    assert ProductMapping.objects.filter(account=account).count() == 1


def test_removing_a_product_takes_its_mappings_keeps_usage(admin, account):
    connect(account, "connectwise")
    product = product_of(account)
    tenant = tenant_of(account)
    services.set_billing_mapping(account, tenant, product, {"agreement_id": "3001"})
    usage(account, tenant, 3)
    assert admin.post(f"{URL}products/{product.pk}/delete/").status_code == 302
    assert not ProductMapping.objects.exists() and not BillingMapping.objects.exists()
    assert tenant.usage.count() == 1


# --- tenants' mappings, per vendor ----------------------------------------------------------------------


def field_names(html: str) -> list[str]:
    return re.findall(r'<select name="([^"]+)"', html)


def options(html: str, name: str) -> list[tuple[str, str]]:
    select = re.search(rf'<select name="{re.escape(name)}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select {name}"
    return [(v, re.sub(r"\s+", " ", t).strip()) for v, t in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))]


def test_connectwise_agreement_is_chosen_from_the_mapped_company(personas, page_client, account):
    connect(account, "connectwise")
    product = product_of(account)
    tenant = tenant_of(account)
    client = page_client(personas.operator)
    html = text(client.get(f"{URL}tenants/{tenant.pk}/"))
    p = f"p{product.pk}"
    assert field_names(html) == [f"{p}-agreement_id", f"{p}-mode"], "the company is the tenant's mapping, not a choice"
    assert "Acme Dental <span class=\"help\">(the tenant's company mapping)" in html
    assert options(html, f"{p}-agreement_id") == [
        ("", "— choose the agreement —"), ("3001", "Managed Security · Managed Services"),
        ("3002", "Backup Services · Managed Services"),
    ]  # fmt: skip

    response = client.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/", {f"{p}-agreement_id": "3001", f"{p}-mode": ""})
    assert response.status_code == 302
    mapping = BillingMapping.objects.get(tenant=tenant, product=product)
    assert (mapping.company_id, mapping.company_name, mapping.agreement_id, mapping.agreement_name, mapping.mode) == (
        "250", "Acme Dental", "3001", "Managed Security", "")

    # Not one of the company's agreements: refused beside the field.
    response = client.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/", {f"{p}-agreement_id": "3004", f"{p}-mode": "monitor"})
    assert response.status_code == 400
    assert "Not among the company&#x27;s agreements in ConnectWise" in text(response)
    assert BillingMapping.objects.get(tenant=tenant).agreement_id == "3001"

    # A per-tenant mode override.
    client.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/", {f"{p}-agreement_id": "3002", f"{p}-mode": "monitor"})
    assert BillingMapping.objects.get(tenant=tenant).mode == Mode.MONITOR
    # And back out of billing.
    client.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/", {"remove": "1"})
    assert not BillingMapping.objects.filter(tenant=tenant).exists()


def test_a_company_without_agreements_and_a_tenant_without_company(admin, account):
    connect(account, "connectwise")
    product = product_of(account)
    stark = make_tenant(account, "Stark Industries", "stark")
    CompanyMapping.objects.create(account=account, tenant=stark, company_id="257", company_name="Stark Industries")
    html = text(admin.get(f"{URL}tenants/{stark.pk}/"))
    assert "Stark Industries has no active agreements in ConnectWise: create one there, then Refresh lists." in html
    lonely = make_tenant(account, "Lonely", "lonely")
    html = text(admin.get(f"{URL}tenants/{lonely.pk}/"))
    assert "Not mapped to a ConnectWise company" in html
    p = f"p{product.pk}"
    response = admin.post(f"{URL}tenants/{lonely.pk}/products/{product.pk}/", {f"{p}-agreement_id": "3001"})
    assert response.status_code == 400
    assert "Lonely is not mapped to a ConnectWise company: map it under Integrations › Map tenants." in text(response)


def test_autotask_customer_then_contract_then_service_line(personas, page_client, account):
    connect(account, "autotask")
    product = product_of(account, "autotask")
    tenant = tenant_of(account, "autotask")
    PsaCompany.objects.create(connection=Connection.objects.get(account=account), company_id="2", name="Globex Corporation")
    client = page_client(personas.operator)
    p = f"p{product.pk}"
    fields = f"{URL}tenants/{tenant.pk}/products/{product.pk}/fields/"

    # Step 1: the Customer defaults to the tenant's company mapping; its contracts are offered.
    html = text(client.get(f"{URL}tenants/{tenant.pk}/"))
    assert field_names(html) == [f"{p}-company_id", f"{p}-agreement_id", f"{p}-mode"]
    assert options(html, f"{p}-company_id")[1] == ("1", "Acme Corp (the tenant&#x27;s company mapping)")
    assert [v for v, _ in options(html, f"{p}-agreement_id")] == ["", "100", "105"]
    assert "Choose the contract first." in html
    assert f'hx-get="{fields}"' in html

    # Step 2: the contract; its service lines follow (this product's Service first).
    html = text(client.get(fields, {f"{p}-company_id": "1", f"{p}-agreement_id": "100"}, **HX))
    assert field_names(html) == [f"{p}-company_id", f"{p}-agreement_id", f"{p}-line_id", f"{p}-mode"]
    assert options(html, f"{p}-line_id") == [
        ("", "The product&#x27;s Service (Mapped product): added to the contract on the first sync"),
        ("5001", "Managed Security — per user (this product&#x27;s Service)"), ("5002", "Backup — per device"),
    ]  # fmt: skip

    # Another customer: the contract of the first one is dropped, Globex's (future-dated) offered.
    html = text(client.get(fields, {f"{p}-company_id": "2", f"{p}-agreement_id": "100", f"{p}-line_id": "5001"}, **HX))
    assert [v for v, _ in options(html, f"{p}-agreement_id")] == ["", "101"]
    assert re.search(r'<option value="" selected>— choose the contract —', html)
    assert "Globex Go-Live Contract · K101 · 2099-01-01 – 2099-12-31 (starts in the future)" in html
    html = text(client.get(fields, {f"{p}-company_id": "2", f"{p}-agreement_id": "101"}, **HX))
    assert "Starts on 2099-01-01, in the future: billing cannot be synced until the contract period has begun." in html

    # Step 3: save contract 100 and its line 5001: the line's Service becomes the mapping's product.
    response = client.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/",
                           {f"{p}-company_id": "1", f"{p}-agreement_id": "100", f"{p}-line_id": "5001", f"{p}-mode": ""})  # fmt: skip
    assert response.status_code == 302
    mapping = BillingMapping.objects.get(tenant=tenant)
    assert (mapping.company_id, mapping.company_name, mapping.agreement_id, mapping.agreement_name, mapping.line_id,
            mapping.line_name, mapping.psa_product_id) == (
        "1", "Acme Corp", "100", "Acme Managed Services", "5001", "Managed Security — per user", "1")  # fmt: skip


def test_autotask_customer_search_lists_imported_companies(admin, account):
    connection = connect(account, "autotask")
    PsaCompany.objects.create(connection=connection, company_id="2", name="Globex Corporation")
    PsaCompany.objects.create(connection=connection, company_id="3", name="Initech")
    html = text(admin.get(f"{URL}companies/", {"company_q": "glob", "current": "1"}, **HX))
    assert '<option value="2">Globex Corporation</option>' in html and "Initech" not in html
    assert '<option value="1" selected>' in html


def test_autotask_contracts_still_loading_poll_and_keep_the_value(admin, account):
    connect(account, "autotask")
    connection = Connection.objects.get(account=account)
    Picklist.objects.filter(connection=connection, kind="contract_services", parent_id="100").delete()
    product = product_of(account, "autotask")
    tenant = tenant_of(account, "autotask")
    services.set_billing_mapping(account, tenant, product, {"company_id": "1", "agreement_id": "100", "line_id": "5001"})
    html = text(admin.get(f"{URL}tenants/{tenant.pk}/"))
    p = f"p{product.pk}"
    assert 'data-polling="true"' in html and 'hx-trigger="every 2s"' in html
    assert f'<input type="hidden" name="{p}-line_id" value="5001">' in html
    assert "Loading from Autotask…" in html


def test_halo_licence_of_the_client_or_create_it(admin, account):
    connect(account, "halo")
    product = product_of(account, "halo")
    tenant = tenant_of(account, "halo")
    p = f"p{product.pk}"
    html = text(admin.get(f"{URL}tenants/{tenant.pk}/"))
    assert options(html, f"{p}-line_id") == [
        ("", "Create it: the client&#x27;s licence for Mapped product, made on the first sync if missing"),
        ("1", "Email Security · count 10 (this product&#x27;s item)"), ("4", "Domain Protection · count 2"),
    ]  # fmt: skip
    assert admin.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/", {f"{p}-line_id": ""}).status_code == 302
    mapping = BillingMapping.objects.get(tenant=tenant)
    assert (mapping.company_id, mapping.line_id, mapping.agreement_id) == ("1", "", "")
    assert admin.post(f"{URL}tenants/{tenant.pk}/products/{product.pk}/", {f"{p}-line_id": "1"}).status_code == 302
    mapping.refresh_from_db()
    assert (mapping.line_id, mapping.line_name) == ("1", "Email Security")


def test_refresh_on_the_tenant_page_queues_its_lists(admin, account, django_capture_on_commit_callbacks, monkeypatch):
    from integrations import tasks

    sent = []
    monkeypatch.setattr(tasks.refresh_picklist, "delay", lambda *args: sent.append(args[1:3]))
    connect(account, "autotask")
    product = product_of(account, "autotask")
    tenant = tenant_of(account, "autotask")
    services.set_billing_mapping(account, tenant, product, {"company_id": "1", "agreement_id": "100"})
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post(f"{URL}tenants/{tenant.pk}/refresh/").status_code == 302
    assert sorted(sent) == [("contract_services", "100"), ("contracts", "1")]


# --- runs -----------------------------------------------------------------------------------------------


@pytest.fixture
def cw_setup(account):
    """ConnectWise: Acme on agreement 3001 (15 in the PSA), Two Agreements Ltd blocked by seed 000."""
    connect(account, "connectwise")
    product = product_of(account, key="domains")
    acme = tenant_of(account)
    services.set_billing_mapping(account, acme, product, {"agreement_id": "3001", "agreement_name": "Managed Security"})
    two = make_tenant(account, "Two Agreements Ltd", "two")
    CompanyMapping.objects.create(account=account, tenant=two, company_id="254", company_name="Two Agreements Ltd")
    services.set_billing_mapping(account, two, product, {"agreement_id": "3004", "agreement_name": "MSA Primary"})
    make_tenant(account, "Unmapped Co", "unmapped")
    billing_book.set("250", "3001", "701", 15)
    billing_book.blocked[("254", "3004", "701")] = BlockedError(MULTIPLE_AGREEMENTS)
    usage(account, acme, 18, "domains")
    usage(account, two, 5, "domains")
    return product, acme, two


def start(client, capture, apply: bool, **more):
    with capture(execute=True):
        response = client.post(f"{URL}runs/", {"apply": "1" if apply else "0", **more})
    assert response.status_code == 302, text(response)
    run = BillingRun.objects.latest("id")
    assert response["Location"] == f"{URL}runs/{run.pk}/"
    return run


def test_preview_then_approve_per_tenant_then_the_whole_run(personas, page_client, account, cw_setup,
                                                            django_capture_on_commit_callbacks):  # fmt: skip
    product, acme, two = cw_setup
    services.update_settings(account, {"mode": Mode.APPROVE})
    client = page_client(personas.operator)

    run = start(client, django_capture_on_commit_callbacks, apply=False)
    run.refresh_from_db()
    assert run.state == BillingRun.State.PLANNED and billing_book.writes == []
    html = text(client.get(f"{URL}runs/{run.pk}/"))
    assert "Preview #" in html and "Approve the whole run (1 line)" in html
    assert escape(MULTIPLE_AGREEMENTS) in html, "the seed's message word for word"
    assert "15 → 18" in html and "Update: waiting for approval" in html
    assert "Unmapped Co" in html and "No billing mapping and no usage reported for this tenant." in html
    assert f'<input type="hidden" name="tenant" value="{acme.pk}">' in html

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{URL}runs/{run.pk}/approve/", {"tenant": str(acme.pk)})
    assert response.status_code == 302
    assert billing_book.quantity("250", "3001", "701") == 18
    html = text(client.get(f"{URL}runs/{run.pk}/"))
    assert "Updated" in html and "Approved by olga@acme.example" in html

    # Nothing left to approve: the whole-run button says so.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{URL}runs/{run.pk}/approve/")
    messages = text(client.get(f"{URL}runs/{run.pk}/"))
    assert f"Billing run #{run.pk} has no lines waiting for approval." in messages


def test_sync_now_in_automatic_mode_writes_and_the_tenants_show_their_results(admin, account, cw_setup,
                                                                              django_capture_on_commit_callbacks):  # fmt: skip
    product, acme, two = cw_setup
    services.update_settings(account, {"mode": Mode.AUTOMATIC})
    run = start(admin, django_capture_on_commit_callbacks, apply=True)
    run.refresh_from_db()
    assert run.state == BillingRun.State.DONE and billing_book.quantity("250", "3001", "701") == 18
    html = text(admin.get(f"{URL}runs/{run.pk}/"))
    assert re.search(r'class="count count-updated">1 updated', html)
    assert re.search(r'class="count count-blocked">1 blocked', html)
    # The main page: runs table and each tenant's last result, the seed message word for word.
    html = text(admin.get(URL))
    assert f'id="run-row-{run.pk}"' in html
    assert escape(MULTIPLE_AGREEMENTS) in html
    two_row = html[html.index('data-tenant="two"'):]
    assert "Blocked" in two_row[:3000]
    # Filters on the run page.
    html = text(admin.get(f"{URL}runs/{run.pk}/", {"show": "problems"}))
    assert re.findall(r'class="run-item" data-tenant="([^"]+)"', html) == ["two"]

    # The tenant page: history table and chart of what was written.
    html = text(admin.get(f"{URL}tenants/{acme.pk}/"))
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="units-chart"' in html
    assert "15 → 18" in html and "<circle" in html


def test_revert_asks_for_confirmation_then_writes_back(admin, account, cw_setup, django_capture_on_commit_callbacks):
    services.update_settings(account, {"mode": Mode.AUTOMATIC})
    run = start(admin, django_capture_on_commit_callbacks, apply=True)
    assert "Revert run" in text(admin.get(f"{URL}runs/{run.pk}/"))
    html = text(admin.get(f"{URL}runs/{run.pk}/revert/"))
    assert "Revert run #" in html and "15 → 18" in html and billing_book.quantity("250", "3001", "701") == 18
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"{URL}runs/{run.pk}/revert/")
    revert = BillingRun.objects.latest("id")
    assert revert.reverts_id == run.pk and response["Location"] == f"{URL}runs/{revert.pk}/"
    assert billing_book.quantity("250", "3001", "701") == 15
    assert "Revert of run #" in text(admin.get(f"{URL}runs/{revert.pk}/"))


def test_a_run_going_on_shows_progress_and_polls_until_it_is_done(admin, account, cw_setup):
    run = BillingRun.objects.create(account=account, trigger="manual", apply=True, state=BillingRun.State.PLANNING,
                                    total_items=4, processed_items=1, requested_by_label="alice@acme.example")  # fmt: skip
    html = text(admin.get(URL))
    assert re.search(r'id="billing-runs"[^>]*hx-get="/settings/billing/runs/active/\?following=\d+" hx-trigger="every 1s"', html)
    assert '<progress max="100" value="25"' in html and "reading 1 of 4 lines" in html
    body = text(admin.get(f"{URL}runs/{run.pk}/body/", **HX))
    assert 'hx-trigger="every 1s"' in body
    partial = admin.get(f"{URL}runs/active/", {"following": run.pk}, **HX)
    assert "HX-Trigger" not in partial and "every 1s" in text(partial)

    BillingRun.objects.filter(pk=run.pk).update(state=BillingRun.State.DONE, counts={"updated": 1, "blocked": 1})
    partial = admin.get(f"{URL}runs/active/", {"following": run.pk}, **HX)
    assert partial["HX-Trigger"] == "billing-run-finished" and "every 1s" not in text(partial)
    assert "1 updated" in text(partial)
    assert 'hx-trigger="every 1s"' not in text(admin.get(f"{URL}runs/{run.pk}/body/", **HX))
    table = admin.get(f"{URL}tenants/", **HX)
    assert 'hx-trigger="billing-run-finished from:body"' in text(table)


def test_a_single_tenant_can_be_previewed_from_its_page(admin, account, cw_setup, django_capture_on_commit_callbacks):
    product, acme, two = cw_setup
    run = start(admin, django_capture_on_commit_callbacks, apply=False, tenant=str(acme.pk))
    assert run.tenant_ids == [acme.pk]
    assert list(BillingItem.objects.filter(run=run).values_list("tenant__external_id", flat=True)) == ["acme"]


# --- pause, settings -------------------------------------------------------------------------------------


def test_paused_billing_shows_the_banner_and_admins_resume_it(personas, page_client, account, cw_setup):
    Connection.objects.filter(account=account).update(billing_paused=True)
    operator = page_client(personas.operator)
    html = text(operator.get(URL))
    assert 'id="billing-paused"' in html and "Billing is paused." in html
    assert ">Resume billing</button>" not in html and "An admin can resume it." in html
    assert re.search(r'<button type="submit" name="apply" value="1" class="primary" disabled>Sync now', html)
    assert operator.post(f"{URL}pause/", {"paused": "0"}).status_code == 403

    admin = page_client(personas.admin)
    html = text(admin.get(URL))
    assert ">Resume billing</button>" in html
    assert admin.post(f"{URL}pause/", {"paused": "0"}).status_code == 302
    assert Connection.objects.get(account=account).billing_paused is False
    assert 'id="billing-paused"' not in text(admin.get(URL))
    admin.post(f"{URL}pause/", {"paused": "1"})
    assert Connection.objects.get(account=account).billing_paused is True


def test_a_paused_integration_says_so_and_can_be_resumed_here(admin, account, cw_setup):
    Connection.objects.filter(account=account).update(paused=True)
    html = text(admin.get(URL))
    assert "The integration is paused, so billing sync is halted." in html and "Resume the integration" in html
    admin.post(f"{URL}pause/", {"scope": "integration", "paused": "0"})
    assert Connection.objects.get(account=account).paused is False


def test_sync_while_paused_is_refused_in_words(admin, account, cw_setup):
    Connection.objects.filter(account=account).update(billing_paused=True)
    response = admin.post(f"{URL}runs/", {"apply": "1"}, follow=True)
    assert "Billing is paused. Resume billing sync" in text(response)
    assert not BillingRun.objects.exists()


SETTINGS = {"mode": "automatic", "max_change_percent": "25", "max_change_units": "40", "schedule": "monthly",
            "time_of_day": "03:30", "day_of_month": "15", "auto_sync": "on", "auto_sync_delay_minutes": "10"}


def test_an_admin_sets_mode_guardrails_schedule_and_auto_sync(admin, account, cw_setup):
    account.time_zone = "Europe/Amsterdam"
    account.save()
    response = admin.post(f"{URL}settings/", SETTINGS)
    assert response.status_code == 302
    row = BillingSettings.objects.get(account=account)
    assert (row.mode, row.max_change_percent, row.max_change_units, row.schedule, row.time_of_day.strftime("%H:%M"),
            row.day_of_month, row.auto_sync, row.auto_sync_delay_minutes) == (
        "automatic", 25, 40, "monthly", "03:30", 15, True, 10)  # fmt: skip
    local = row.next_run_at.astimezone(services.account_zone(account))
    assert (local.day, local.hour, local.minute) == (15, 3, 30)
    html = text(admin.get(URL))
    assert "Times are in the account's time zone, Europe/Amsterdam." in html
    assert f"Next scheduled sync: {local:%Y-%m-%d %H:%M}." in html


def test_bad_settings_are_refused_beside_the_field(admin, account, cw_setup):
    response = admin.post(f"{URL}settings/", {**SETTINGS, "day_of_month": "31"})
    assert response.status_code == 400
    assert "Ensure this value is less than or equal to 28." in text(response)
    assert BillingSettings.objects.get(account=account).schedule == "daily"


def test_operators_and_support_cannot_change_settings(personas, page_client, account, cw_setup):
    for user in (personas.operator, personas.support):
        client = page_client(user)
        assert client.post(f"{URL}settings/", SETTINGS).status_code == 403
        assert "an admin can change them" in text(client.get(URL))
    assert BillingSettings.objects.get(account=account).mode == Mode.APPROVE


# --- roles, other accounts, CSRF, escaping ---------------------------------------------------------------


def test_support_and_staff_read_everything_and_write_nothing(personas, page_client, account, cw_setup,
                                                             django_capture_on_commit_callbacks):  # fmt: skip
    product, acme, two = cw_setup
    run = BillingRun.objects.create(account=account, trigger="manual", apply=True, state="done")
    for user in (personas.support, personas.staff):
        client = page_client(user)
        if user is personas.staff:
            session = client.session
            session["hub_account_id"] = account.pk
            session.save()
        for path in (URL, f"{URL}tenants/{acme.pk}/", f"{URL}runs/{run.pk}/", f"{URL}runs/"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "Sync now" not in text(response) and "Save users mapping" not in text(response)
        p = f"p{product.pk}"
        for path, data in (
            (f"{URL}runs/", {"apply": "1"}),
            (f"{URL}runs/{run.pk}/approve/", {}),
            (f"{URL}runs/{run.pk}/revert/", {}),
            (f"{URL}products/", {"new-product-key": "x"}),
            (f"{URL}products/{product.pk}/delete/", {}),
            (f"{URL}tenants/{acme.pk}/products/{product.pk}/", {f"{p}-agreement_id": "3002"}),
            (f"{URL}refresh/", {}),
            (f"{URL}pause/", {"paused": "1"}),
        ):
            assert client.post(path, data).status_code == 403, path
        assert client.get(f"{URL}runs/{run.pk}/revert/").status_code == 403
    assert BillingRun.objects.count() == 1 and ProductMapping.objects.count() == 1
    assert BillingMapping.objects.get(tenant=acme).agreement_id == "3001"


def test_an_outsider_gets_404_for_the_other_accounts_rows(personas, page_client, account, cw_setup):
    product, acme, two = cw_setup
    run = BillingRun.objects.create(account=account, trigger="manual", apply=True, state="planned")
    connect(personas.account_b, "connectwise")
    client = page_client(personas.outsider)
    p = f"p{product.pk}"
    for path in (f"{URL}tenants/{acme.pk}/", f"{URL}runs/{run.pk}/", f"{URL}runs/{run.pk}/body/",
                 f"{URL}tenants/{acme.pk}/products/{product.pk}/fields/"):  # fmt: skip
        assert client.get(path).status_code == 404, path
    for path, data in (
        (f"{URL}runs/{run.pk}/approve/", {}),
        (f"{URL}runs/{run.pk}/revert/", {}),
        (f"{URL}products/{product.pk}/", {f"product-{product.pk}-name": "x"}),
        (f"{URL}products/{product.pk}/delete/", {}),
        (f"{URL}tenants/{acme.pk}/products/{product.pk}/", {f"{p}-agreement_id": "3002"}),
        (f"{URL}runs/", {"apply": "1", "tenant": str(acme.pk)}),
    ):
        assert client.post(path, data).status_code == 404, path
    html = text(client.get(URL))
    assert "Acme Dental" not in html and "Two Agreements" not in html
    assert ProductMapping.objects.filter(account=account).count() == 1


def test_every_form_needs_the_csrf_token(personas, account, cw_setup):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.admin)
    html = text(client.get(URL))
    assert html.count('name="csrfmiddlewaretoken"') >= html.count('method="post"') > 3
    for path in (f"{URL}runs/", f"{URL}settings/", f"{URL}pause/", f"{URL}products/", f"{URL}refresh/"):
        assert client.post(path, {"apply": "1", "paused": "1"}).status_code == 403, path
    assert not BillingRun.objects.exists()


def test_names_and_psa_messages_are_escaped(admin, account, django_capture_on_commit_callbacks):
    connect(account, "connectwise")
    evil = '<script>alert("x")</script>'
    product = product_of(account, key="users", name=f"Users {evil}")
    tenant = tenant_of(account, name=f"Evil {evil}")
    services.set_billing_mapping(account, tenant, product, {"agreement_id": "3001", "agreement_name": f"Agr {evil}"})
    billing_book.blocked[("250", "3001", "701")] = BlockedError(f"PSA said {evil}")
    usage(account, tenant, 4)
    run = start(admin, django_capture_on_commit_callbacks, apply=False)
    for path in (URL, f"{URL}tenants/{tenant.pk}/", f"{URL}runs/{run.pk}/"):
        html = text(admin.get(path))
        assert evil not in html, path
        assert escape(evil) in html, path


# --- the chart ----------------------------------------------------------------------------------------------


def test_the_units_chart_is_a_step_line_with_a_tooltip_per_write():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    svg = charts.units_chart(
        [charts.Write(t0, 15, 18, "run #1"), charts.Write(t0 + timedelta(days=10), 18, 16, 'run #2 <b>')],
        [charts.Reading(t0 - timedelta(days=1), 18)],
        title='Acme <script>', until=t0 + timedelta(days=20),
    )  # fmt: skip
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="units-chart"')
    assert svg.count("<circle") == 2 and 'class="written"' in svg and 'class="usage"' in svg
    assert "<title>2026-01-01 00:00: 15 → 18 (run #1)</title>" in svg
    assert "run #2 &lt;b&gt;" in svg and "<b>" not in svg and "<script>" not in svg
    assert "2025-12-31" in svg and "2026-01-21" in svg  # the x axis' ends
    assert charts.units_chart([], []) == ""


def test_the_tenants_table_searches_filters_and_pages(admin, account, monkeypatch):
    from billing import views

    monkeypatch.setattr(views, "TENANTS_PER_PAGE", 2)
    connect(account, "connectwise")
    product = product_of(account)
    mapped = tenant_of(account)
    for n in range(3):
        make_tenant(account, f"B&B Hotel {n}", f"bb-{n}")
    services.set_billing_mapping(account, mapped, product, {"agreement_id": "3001"})

    html = text(admin.get(f"{URL}tenants/", {"q": "B&B", "show": "unmapped"}, **HX))
    assert re.findall(r'data-tenant="([^"]+)"', html) == ["bb-0", "bb-1"]
    assert "Page 1 of 2" in html and "?q=B%26B&amp;show=unmapped&page=2" in html
    html = text(admin.get(f"{URL}tenants/", {"show": "mapped"}, **HX))
    assert re.findall(r'data-tenant="([^"]+)"', html) == ["acme"]
    html = text(admin.get(f"{URL}tenants/", {"q": "nobody"}, **HX))
    assert "No tenant matches." in html


def test_all_runs_are_listed_newest_first(admin, account, cw_setup):
    older = BillingRun.objects.create(account=account, trigger="schedule", apply=True, state="done", counts={"unchanged": 2})
    newer = BillingRun.objects.create(account=account, trigger="manual", apply=False, state="planned",
                                      counts={"awaiting_approval": 1, "held": 1})  # fmt: skip
    html = text(admin.get(f"{URL}runs/"))
    assert html.index(f">#{newer.pk}<") < html.index(f">#{older.pk}<")
    assert "<td>2 unchanged</td>" in html
    assert "<td>1 held by the guardrails</td>" in html, "a held line is not counted again as waiting"

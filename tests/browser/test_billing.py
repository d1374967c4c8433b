"""Billing through the pages in a real browser, against each vendor's HTTP fake with a real worker
process: the lists load by themselves ("Loading from <PSA>…", then the choices), the operator
maps a product and the tenants (ConnectWise agreement of the mapped company; Autotask customer →
contract → service line; Halo licence or "create it"), previews (nothing written), syncs, and
sees the quantities in the fake and each tenant's result on the page — the seeds' messages for
the seeded bad agreements/contracts word for word — and the history chart of what was written.

The link itself is made through the API (tests/browser/test_link_psa.py covers its pages); the
worker verifies it, refreshes the lists and runs the billing runs.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from billing import services
from billing.models import BillingMapping, BillingRun, ProductMapping
from integrations import services as integration_services
from integrations.autotask.billing import DUPLICATE, EXPIRED, FUTURE_START
from integrations.connectwise.billing import MULTIPLE_AGREEMENTS
from tests.factories import make_tenant
from tests.flows import link_through_api
from tests.psa_log import assert_no_secret_recorded

pytestmark = pytest.mark.browser

WAIT = 60_000  # ms: background work (the worker, lists, runs) shows up by itself within this


def tenants(account, rows) -> dict:
    """rows: (external id, name, company id or None, units) -> {external id: tenant}."""
    made = {}
    for external_id, name, company_id, units in rows:
        tenant = make_tenant(account, name, external_id)
        if company_id:
            integration_services.map_tenant(account, tenant, company_id, name)
        made[external_id] = tenant
    return made


def report(account, made: dict, key: str, rows) -> None:
    reports = [services.UsageReport(made[external_id], key, units) for external_id, _, _, units in rows if units is not None]
    services.record_usage(account, reports)


def open_billing(page):
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Billing").click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()


def add_product(page, key: str, name: str, psa_label: str, psa_product: str, **fields) -> None:
    form = page.locator("#new-product")
    form.get_by_label("Hub product key").fill(key)
    form.get_by_label("Name").fill(name)
    picker = form.get_by_label(psa_label)
    expect(picker.locator("option", has_text=psa_product)).to_have_count(1, timeout=WAIT)  # after "Loading from …"
    picker.select_option(label=psa_product)
    for label, value in fields.items():
        form.get_by_label(label).fill(value)
    form.get_by_role("button", name="Add product").click()
    expect(page.get_by_role("status").filter(has_text=f"Product “{name}” saved: billed as {psa_product}.")).to_be_visible()


def set_mode_automatic(page) -> None:
    settings = page.locator("#billing-settings")
    settings.get_by_role("radio", name=re.compile(r"Automatic")).check()
    settings.get_by_role("button", name="Save billing settings").click()
    expect(page.get_by_role("status").filter(has_text="Billing settings saved.")).to_be_visible()


def open_tenant(page, name: str) -> None:
    open_billing(page)
    page.locator("#tenants-table").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(re.escape(name)))).to_be_visible()


def choose(page, label: str, option: str) -> None:
    """Pick an option once the list has come in from the PSA (the page polls until it has)."""
    select = page.get_by_label(label, exact=True)
    wanted = select.locator("option", has_text=re.compile("^" + re.escape(option)))
    expect(wanted).to_have_count(1, timeout=WAIT)
    select.select_option(label=wanted.inner_text().strip())


def save_mapping(page, product: str) -> None:
    page.get_by_role("button", name=f"Save {product} mapping").click()
    expect(page.get_by_role("status").filter(has_text=f": {product} billed to")).to_be_visible()


def run_and_wait(page, button: str, state: str):
    open_billing(page)
    page.locator("#billing-runs").get_by_role("button", name=button, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(rf"^{'Sync' if button == 'Sync now' else 'Preview'} #\d+$"))).to_be_visible()
    body = page.locator("#run-body")
    expect(body).to_have_attribute("data-state", state, timeout=WAIT)  # the progress is polled until then
    return BillingRun.objects.latest("id")


def result_row(page, external_id: str, product: str):
    return page.locator(f'tr.run-item[data-tenant="{external_id}"][data-product="{product}"]')


# --- ConnectWise (seeds 000, 003, 004) --------------------------------------------------------------------


def test_connectwise_map_preview_sync_and_the_seed_000_message(worker_process, page, sign_in, personas, api_for, restored):
    psas, cw, account = restored, restored.connectwise, personas.account_a
    link_through_api(api_for(account), account, psas, "connectwise", worker_process)
    rows = [("acme", "Acme Dental", "250", 18), ("two", "Two Agreements Ltd", "254", 5),
            ("globex", "Globex Corporation", "251", 7), ("nocompany", "No Company Yet", None, 3)]  # fmt: skip
    made = tenants(account, rows)
    sign_in(personas.operator)

    # A product, from the catalog items the worker fetched; seed 003's invoice description.
    open_billing(page)
    add_product(page, "domains", "Domains", "ConnectWise Catalog Item", "MDR-SEAT: M365 AI Powered MDR (per user)",
                **{"Invoice description": "Monitored domains (per domain)"})  # fmt: skip
    report(account, made, "domains", rows)
    # Every tenant is listed, the ones not mapped yet as such.
    table = page.locator("#tenants-table")
    open_billing(page)
    expect(table.locator('tr[data-tenant="nocompany"]')).to_contain_text("No company")
    expect(table.locator('tr[data-tenant="acme"]')).to_contain_text("Not mapped for billing: choose the ConnectWise agreement.")
    expect(table.locator('tr[data-tenant="acme"]')).to_contain_text("18")

    # Each tenant's Agreement, from its mapped company's active agreements.
    for external_id, agreement in (("acme", "Managed Security"), ("two", "MSA Primary"), ("globex", "Managed Services")):
        open_tenant(page, made[external_id].name)
        choose(page, "ConnectWise Agreement", agreement)
        save_mapping(page, "Domains")
    assert BillingMapping.objects.get(tenant=made["acme"]).agreement_id == "3001"

    # The mode is the admin's.
    page.get_by_role("button", name="Sign out").click()
    sign_in(personas.admin)
    open_billing(page)
    set_mode_automatic(page)

    # Preview: the plan, nothing written in ConnectWise.
    preview = run_and_wait(page, "Preview", "planned")
    expect(result_row(page, "acme", "domains")).to_contain_text("15 → 18")
    expect(result_row(page, "globex", "domains")).to_contain_text("0 → 7")
    expect(result_row(page, "two", "domains").locator(".item-message")).to_have_text(MULTIPLE_AGREEMENTS)
    expect(result_row(page, "nocompany", "domains")).to_contain_text("Unmapped")
    assert cw.additions[9001]["quantity"] == 15 and cw.api_requests("POST", "finance") == []
    assert preview.apply is False

    # Sync now: the quantities go into the fake; each tenant's result on the page.
    run_and_wait(page, "Sync now", "done")
    expect(result_row(page, "acme", "domains")).to_contain_text("Updated")
    expect(result_row(page, "acme", "domains")).to_contain_text("15 → 18")
    expect(result_row(page, "globex", "domains")).to_contain_text("Created")
    expect(result_row(page, "two", "domains")).to_contain_text("Blocked")
    expect(result_row(page, "two", "domains").locator(".item-message")).to_have_text(MULTIPLE_AGREEMENTS)
    assert cw.additions[9001]["quantity"] == 18, "seed 004: the one addition goes from 15 to 18"
    [created] = [a for a in cw.additions.values() if a["agreementId"] == 3003]
    assert (created["product"]["id"], created["quantity"], created["invoiceDescription"]) == (701, 7, "Monitored domains (per domain)")
    assert cw.additions[9003]["quantity"] == 10 and cw.additions[9004]["quantity"] == 3, "the blocked tenant: nothing written"

    # The Billing page: the run, and the seed message on the tenant's row.
    open_billing(page)
    expect(page.locator("#tenants-table tr[data-tenant='two']")).to_contain_text(MULTIPLE_AGREEMENTS)
    # The tenant's history: the quantity written, drawn and listed.
    open_tenant(page, "Acme Dental")
    card = page.locator("#product-card-domains")
    expect(card.locator("svg.units-chart circle")).to_have_count(1)
    expect(card.locator(".history-table")).to_contain_text("15 → 18")
    assert_no_secret_recorded(psas.secrets("connectwise"), [page.content()])


# --- Autotask (seed 001) -----------------------------------------------------------------------------------


def test_autotask_three_steps_and_the_seed_001_messages(worker_process, page, sign_in, personas, api_for, restored):
    psas, at, account = restored, restored.autotask, personas.account_a
    link_through_api(api_for(account), account, psas, "autotask", worker_process)
    rows = [("acme", "Acme Corp", "1", 14), ("globex", "Globex Corporation", "2", 3), ("initech", "Initech", "3", 3),
            ("umbrella", "Umbrella Corporation", "4", 6)]  # fmt: skip
    made = tenants(account, rows)
    contracts = at.tables["Contracts"]
    messages = {
        "globex": FUTURE_START.format(name="Globex Go-Live Contract", start=contracts[101]["startDate"][:10]),
        "initech": EXPIRED.format(name="Initech 2023 Contract", end=contracts[102]["endDate"][:10]),
        "umbrella": DUPLICATE.format(count=2),
    }
    [acme_line] = [cs["id"] for cs in at.tables["ContractServices"].values() if cs["contractID"] == 100]
    sign_in(personas.admin)
    open_billing(page)
    add_product(page, "users", "Users", "Autotask Service", "Managed Security — per user")
    report(account, made, "users", rows)
    set_mode_automatic(page)

    # Seed 001's three steps: the customer (the tenant's company mapping), its contracts, the line.
    for external_id, contract, line in (("acme", "Acme Managed Services", "Managed Security — per user"),
                                        ("globex", "Globex Go-Live Contract", None),
                                        ("initech", "Initech 2023 Contract", None),
                                        ("umbrella", "Umbrella Managed Services", None)):  # fmt: skip
        open_tenant(page, made[external_id].name)
        expect(page.get_by_label("Customer (Autotask Company)")).to_have_value(str(made[external_id].company_mapping.company_id))
        choose(page, "Autotask Contract", contract)
        if external_id == "globex":
            expect(page.locator(".agreement-warning")).to_contain_text("in the future", timeout=WAIT)
        if line:
            choose(page, "Service line item", line)
        save_mapping(page, "Users")
    mapping = BillingMapping.objects.get(tenant=made["acme"])
    assert (mapping.agreement_id, mapping.line_id, mapping.psa_product_id) == ("100", str(acme_line), "1")

    preview = run_and_wait(page, "Preview", "planned")
    expect(result_row(page, "acme", "users")).to_contain_text("10 → 14")
    for external_id, message in messages.items():
        expect(result_row(page, external_id, "users").locator(".item-message")).to_have_text(message)
    assert at.requests_to("ContractServiceAdjustments") == [] and preview.apply is False

    run_and_wait(page, "Sync now", "done")
    expect(result_row(page, "acme", "users")).to_contain_text("Updated")
    for external_id, message in messages.items():
        expect(result_row(page, external_id, "users")).to_contain_text("Blocked")
        expect(result_row(page, external_id, "users").locator(".item-message")).to_have_text(message)
    assert at.units_today(acme_line) == 14
    assert [r.body["unitChange"] for r in at.requests_to("ContractServiceAdjustments", "POST")] == [4]
    assert_no_secret_recorded(psas.secrets("autotask"), [page.content()])


# --- Halo (seed 002) -----------------------------------------------------------------------------------------


def test_halo_licences_are_chosen_or_created(worker_process, page, sign_in, personas, api_for, restored):
    psas, halo, account = restored, restored.halo, personas.account_a
    link_through_api(api_for(account), account, psas, "halo", worker_process)
    rows = [("acme", "Acme Corporation", "1", 12), ("globex", "Globex Ltd", "2", 6), ("initech", "Initech", "3", 7)]
    made = tenants(account, rows)
    sign_in(personas.admin)
    open_billing(page)
    add_product(page, "users", "Users", "Halo PSA Item", "Email Security (per user)")
    report(account, made, "users", rows)
    set_mode_automatic(page)

    open_tenant(page, "Acme Corporation")
    choose(page, "Software Licence", "Email Security · count 10")
    save_mapping(page, "Users")
    for name in ("Globex Ltd", "Initech"):  # "create it": the client's licence for the item
        open_tenant(page, name)
        expect(page.get_by_label("Software Licence", exact=True).locator("option").first).to_contain_text(
            "Create it: the client's licence for Email Security (per user)", timeout=WAIT)
        save_mapping(page, "Users")
    assert BillingMapping.objects.get(tenant=made["acme"]).line_id == "1"

    run_and_wait(page, "Sync now", "done")
    expect(result_row(page, "acme", "users")).to_contain_text("10 → 12")
    expect(result_row(page, "initech", "users")).to_contain_text("Created")
    expect(result_row(page, "globex", "users").locator(".item-message")).to_contain_text(
        "Two or more Halo software licences for this client use the mapped item")
    assert halo.licences[1]["count"] == 12
    [created] = [lic for lic in halo.licences.values() if lic["client_id"] == 3 and not lic.get("deleted")]
    assert (created["item_id"], created["count"]) == (1, 7)
    assert ProductMapping.objects.get(account=account).vendor == "halo"
    assert_no_secret_recorded(psas.secrets("halo"), [page.content()])

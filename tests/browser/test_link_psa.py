"""Linking each PSA through the pages, in a real browser, against the HTTP fake PSAs and a real
worker process: the admin links it, watches "Verifying…" turn into Connected by itself, reads a
missing permission in words, imports customers and maps tenants (suggestions in bulk, one by
search), updates the credentials keeping the secret, pauses and resumes, and removes the link.
Every request the fake answered must be in the integration log, and no secret may be in the
log or in any page or partial the browser received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

from integrations.models import CompanyMapping, Connection, IntegrationLog, PsaCompany
from tests.factories import make_tenant
from tests.psa_log import assert_every_request_logged, assert_no_secret_recorded, wait_until_idle

pytestmark = pytest.mark.browser

WAIT = 30_000  # ms: background work shows up by itself within this


@dataclass(frozen=True)
class Vendor:
    slug: str
    name: str  # as on the pages
    full_name: str  # Connection.get_vendor_display()
    fields: tuple[tuple[str, str], ...]  # (form label, key of FakePsas.link_values)
    secret_labels: tuple[str, ...]
    help_heading: str
    help_text: str  # a field's help text, from the seeds
    keep_text: str  # what the update form says about a blank secret
    tenants: tuple[tuple[str, str, str], ...]  # (tenant, suggested company, how)
    by_hand: tuple[str, str]  # (what the admin types, the company picked)


VENDORS = {
    "connectwise": Vendor(
        "connectwise", "ConnectWise", "ConnectWise Manage",
        (("Company ID", "company_id"), ("Site URL", "site"), ("Public Key", "public_key"),
         ("Private Key", "private_key")),
        ("Private Key",),
        "Before you link ConnectWise",
        "Generated with the Public Key and shown only once: copy it right away.",
        "Leave blank to keep the stored Private Key.",
        (("Acme Dental", "Acme Dental", "exact"), ("Globex Corp.", "Globex Corporation", "normalised")),
        ("Client 0042", "Client 0042 Pty"),
    ),
    "autotask": Vendor(
        "autotask", "Autotask", "Autotask",
        (("Username", "username"), ("Password", "secret"), ("Tracking Identifier", "integration_code")),
        ("Password", "Tracking Identifier"),
        "Before you link Autotask",
        "The Password generated for that API user when you created it (Autotask calls it the Secret).",
        "Leave blank to keep the saved value.",
        (("Acme Corp", "Acme Corp", "exact"), ("Initech, Inc.", "Initech", "normalised")),
        ("Customer 0042", "Customer 0042"),
    ),
    "halo": Vendor(
        "halo", "Halo PSA", "Halo PSA",
        (("Tenant", "tenant"), ("Resource Server URL", "resource_server"), ("Client ID", "client_id"),
         ("Client Secret", "client_secret")),
        ("Client Secret",),
        "Before you link Halo PSA",
        "Omit the trailing /api if present.",
        "Leave blank to keep the saved value.",
        (("Acme Corporation", "Acme Corporation", "exact"), ("Umbrella Corp", "Umbrella Corp.", "normalised")),
        ("Customer 0042", "Customer 0042 Pty"),
    ),
}  # fmt: skip


@pytest.fixture
def html_seen(page, live_server):
    """Every HTML document and partial the hub sent the browser, for the secrets sweep."""
    seen: list[str] = []

    def keep(route):
        response = route.fetch(max_redirects=0)
        if "text/html" in response.headers.get("content-type", ""):
            seen.append(response.text())
        route.fulfill(response=response)

    page.context.route(re.compile(re.escape(live_server.url) + r"/(?!static/).*"), keep)
    return seen


def status_panel(page):
    return page.locator("#connection-status")


def slow_verification(psas, slug: str) -> None:
    """Slow the fake down for a moment, so that "Verifying…" is on the page before the worker
    is done; `fast_again` restores it once it has been seen."""
    getattr(psas, slug).latency_ms = 1000


def fast_again(psas, slug: str) -> None:
    getattr(psas, slug).latency_ms = 0


@pytest.mark.parametrize("slug", list(VENDORS))
def test_an_admin_links_checks_maps_updates_pauses_and_removes(
    slug, worker_process, page, html_seen, sign_in, personas, psas
):
    vendor = VENDORS[slug]
    account = personas.account_a
    for n, (tenant, _, _) in enumerate(vendor.tenants):
        make_tenant(account, name=tenant, external_id=f"{slug}-{n}")
    make_tenant(account, name="Contoso", external_id=f"{slug}-contoso")
    values = psas.link_values(slug)
    sign_in(personas.admin)

    # Settings → Integrations: one Link action per PSA, as the seeds call them.
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Integrations").click()
    expect(page.get_by_role("heading", name="Integrations", exact=True)).to_be_visible()
    for label in ("Link ConnectWise", "Link Autotask", "Link Halo PSA"):
        expect(page.get_by_role("link", name=label, exact=True)).to_be_visible()

    # The link form, with the seeds' help beside it.
    page.get_by_role("link", name=f"Link {vendor.name}", exact=True).click()
    expect(page.get_by_role("heading", name=f"Link {vendor.name}", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name=vendor.help_heading)).to_be_visible()
    expect(page.get_by_text(vendor.help_text)).to_be_visible()
    for label, key in vendor.fields:
        page.get_by_label(label, exact=True).fill(values[key])
    slow_verification(psas, slug)
    page.get_by_role("button", name="Save").click()

    # "Verifying…", then Connected without reloading by hand (HTMX polls the status).
    expect(page.get_by_role("status")).to_contain_text(f"{vendor.name} credentials saved. Verifying the connection…")
    expect(status_panel(page)).to_contain_text("Verifying…")
    fast_again(psas, slug)
    expect(status_panel(page)).to_have_attribute("data-status", "connected", timeout=WAIT)
    expect(status_panel(page).locator(".badge.ok")).to_have_text("Connected")
    connection = Connection.objects.get(account=account)
    if slug == "halo":
        assert connection.config["resource_server"] == psas.halo.url, "the trailing /api was stripped"
    if slug == "autotask":
        assert connection.config["zone_url"] == psas.autotask.zone_url, "the zone was discovered"

    # Check permissions with one refused in the PSA: named in words, with where to fix it.
    expected = psas.deny_one_permission(slug)
    page.get_by_role("button", name="Check permissions").click()
    expect(page.locator("#permissions-checking")).to_be_visible()
    missing = page.locator("#missing-permissions")
    expect(missing).to_contain_text(expected, timeout=WAIT)
    expect(missing.locator("li")).to_have_count(1)
    if slug == "connectwise":
        expect(missing).to_contain_text(
            "ConnectWise API user does not have permission to access Service > Priority."
        )
        expect(missing).to_contain_text("System > Security Roles")
    expect(page.locator("#permissions-checking")).to_have_count(0)
    psas.allow_all()

    # Import customers: the mapping page waits for the import, then suggests companies.
    page.get_by_role("button", name="Import customers").click()
    expect(page.get_by_role("heading", name=f"Map tenants to {vendor.full_name} companies")).to_be_visible()
    table = page.locator("#mapping-table")
    expect(table).to_be_visible(timeout=WAIT)
    for tenant, company, how in vendor.tenants:
        row = table.get_by_role("row").filter(has_text=tenant)
        expect(row).to_contain_text(company)
        expect(row).to_contain_text(f"{how} match")
        expect(row.get_by_role("checkbox")).to_be_checked()

    # Accept the suggestions in bulk and map Contoso by searching for its company.
    typed, picked = vendor.by_hand
    company = PsaCompany.objects.get(connection=connection, name=picked)
    page.get_by_label("Find a company for Contoso").fill(typed)
    choice = page.get_by_label("Company for Contoso", exact=True)
    expect(choice.locator(f'option[value="{company.company_id}"]')).to_have_count(1)
    choice.select_option(company.company_id)
    page.get_by_role("button", name="Save mappings").click()
    expect(page.get_by_role("status")).to_contain_text(f"Saved {len(vendor.tenants) + 1} mappings.")
    expect(table.get_by_role("row").filter(has_text="Contoso")).to_contain_text(picked)
    mapped = dict(CompanyMapping.objects.for_account(account).values_list("tenant__name", "company_name"))
    assert mapped == {**{tenant: company for tenant, company, _ in vendor.tenants}, "Contoso": picked}

    # Update credentials: the secret left blank keeps the stored one; it verifies again.
    wait_until_idle(psas, slug, account)
    verified_before = Connection.objects.get(pk=connection.pk).verified_at
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Integrations").click()
    page.get_by_role("link", name="Update credentials").click()
    expect(page.get_by_role("heading", name=f"Update {vendor.name} credentials")).to_be_visible()
    expect(page.get_by_text("Secret fields left blank keep the stored value. Mappings are kept.")).to_be_visible()
    for label in vendor.secret_labels:
        expect(page.get_by_label(label, exact=True)).to_have_value("")
    expect(page.get_by_text(vendor.keep_text).first).to_be_visible()
    slow_verification(psas, slug)
    page.get_by_role("button", name="Save").click()
    expect(status_panel(page)).to_contain_text("Verifying…")
    fast_again(psas, slug)
    expect(status_panel(page)).to_have_attribute("data-status", "connected", timeout=WAIT)
    assert Connection.objects.get(pk=connection.pk).verified_at > verified_before
    assert CompanyMapping.objects.for_account(account).count() == len(vendor.tenants) + 1

    # Pause and resume the integration.
    page.get_by_role("button", name="Pause integration").click()
    expect(page.get_by_role("status")).to_contain_text("The integration paused.")
    expect(status_panel(page)).to_contain_text("Paused")
    assert Connection.objects.get(pk=connection.pk).paused
    page.get_by_role("button", name="Resume integration").click()
    expect(page.get_by_role("status")).to_contain_text("The integration resumed.")
    expect(status_panel(page)).not_to_contain_text("Paused")

    # Remove: the confirmation says what goes; then the three Link actions are back.
    wait_until_idle(psas, slug, account)
    page.get_by_role("link", name="Remove integration").click()
    expect(page.get_by_role("heading", name=f"Remove the {vendor.full_name} integration?")).to_be_visible()
    confirmation = page.locator(".card").filter(has_text="This deletes")
    expect(confirmation).to_contain_text(f"the stored {vendor.full_name} credentials")
    expect(confirmation).to_contain_text(f"{len(vendor.tenants) + 1} tenant-to-company mappings")
    expect(confirmation).to_contain_text(re.compile(r"\d+ imported companies and \d+ cached lists"))
    page.get_by_role("button", name="Remove integration").click()
    expect(page.get_by_role("status")).to_contain_text(f"{vendor.full_name} integration removed.")
    for label in ("Link ConnectWise", "Link Autotask", "Link Halo PSA"):
        expect(page.get_by_role("link", name=label, exact=True)).to_be_visible()
    assert not Connection.objects.filter(account=account).exists()
    assert not CompanyMapping.objects.for_account(account).exists()
    assert IntegrationLog.objects.for_account(account).filter(action="connection.remove").exists()

    # Every PSA request of the flow is in the log; no secret in the log or any page.
    assert_every_request_logged(psas, slug, account, worker_process)
    html_seen.append(page.content())
    assert len(html_seen) > 15
    assert_no_secret_recorded(psas.secrets(), html_seen)

"""Sign in and manage tenants through the pages, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from hub.models import Tenant
from tests.factories import make_tenant

pytestmark = pytest.mark.browser


def test_an_admin_signs_in_and_adds_a_tenant(page, sign_in, personas):
    sign_in(personas.admin)
    expect(page.get_by_text(personas.admin.email)).to_be_visible()

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Tenants").click()
    expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    page.get_by_role("link", name="Add tenant").click()
    page.get_by_label("Name", exact=True).fill("Globex Corporation")
    page.get_by_label("External ID").fill("globex-001")
    page.get_by_role("button", name="Save tenant").click()

    expect(page).to_have_url(re.compile(r"/settings/tenants/$"))
    expect(page.get_by_role("status")).to_contain_text("Tenant “Globex Corporation” saved.")
    row = page.get_by_role("row").filter(has_text="Globex Corporation")
    expect(row).to_contain_text("globex-001")
    expect(row).to_contain_text("Active")
    tenant = Tenant.objects.get(external_id="globex-001")
    assert tenant.account == personas.account_a and tenant.name == "Globex Corporation"


def test_a_duplicate_external_id_is_named_beside_its_field(page, sign_in, personas):
    make_tenant(personas.account_a, name="Initech", external_id="acme-42")
    sign_in(personas.admin)

    page.goto("/settings/tenants/new/")
    page.get_by_label("Name", exact=True).fill("Initech again")
    page.get_by_label("External ID").fill("acme-42")
    page.get_by_role("button", name="Save tenant").click()

    field = page.locator(".field").filter(has=page.get_by_label("External ID"))
    expect(field).to_have_class(re.compile(r"\bhas-error\b"))
    expect(field.locator(".errors")).to_have_text("Another tenant in this account already has this external ID.")
    expect(page.get_by_label("External ID")).to_have_value("acme-42")
    expect(page.locator(".field").filter(has=page.get_by_label("Name", exact=True)).locator(".errors")).to_have_count(0)
    assert Tenant.objects.filter(account=personas.account_a, external_id="acme-42").count() == 1

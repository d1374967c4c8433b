"""Support staff find, read and share the log entries of a failed ticket and of a failed
billing sync, in a real browser (the rows are made directly, as the ticketing and billing
services would write them)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from integrations.models import IntegrationLog
from tests.factories import make_tenant
from tests.log_rows import link, make_log, make_request_log

pytestmark = pytest.mark.browser

TICKET_FAILURE = ("Incident #42: ConnectWise could not create the ticket: the Service Board has no Default Team "
                  "(Cannot find default team for board specified). In ConnectWise go to System > Setup Tables > "
                  "Service Board, open the board, set an active Default Team, then retry.")
BILLING_FAILURE = ("Globex: Multiple agreements contain the mapped product for this company. Only one agreement per "
                   "company should have the product. Resolve in ConnectWise.")


@pytest.fixture
def failures(personas):
    a = personas.account_a
    link(a)
    globex = make_tenant(a, name="Globex", external_id="globex")
    for n in range(70):  # a busy log: the failures are not on the first screen by chance
        make_log(a, "ticket.create", ago=timedelta(minutes=n), message=f"Created ticket {1000 + n} for incident #{n}")
    make_request_log(a, "ticket.sync", method="POST", path="/v4_6_release/apis/3.0/service/tickets", status=400,
                     correlation_id="tkt0042corr00001", ago=timedelta(hours=2, seconds=1),
                     request_excerpt='{"summary": "Phishing <b>reported</b>", "board": {"id": 1}}',
                     response_excerpt='{"code": "InvalidObject", "message": "Cannot find default team for board '
                                      'specified", "errors": [{"field": "board"}]}')
    ticket = make_log(a, "ticket.sync", outcome="error", error_kind="invalid", correlation_id="tkt0042corr00001",
                      subject="incident:42", tenant=globex, ago=timedelta(hours=2), message=TICKET_FAILURE)
    make_request_log(a, "billing.sync", method="GET", path="/v4_6_release/apis/3.0/finance/agreements", status=200,
                     correlation_id="bil0007corr00001", ago=timedelta(hours=3, seconds=2), response_excerpt="[...]")
    billing = make_log(a, "billing.sync", outcome="error", error_kind="blocked", correlation_id="bil0007corr00001",
                       subject="billing_run:7", tenant=globex, ago=timedelta(hours=3), message=BILLING_FAILURE)
    make_log(personas.account_b, "billing.sync", outcome="error", message="Another MSP's billing failure")
    return {"ticket": ticket, "billing": billing}


def grant_clipboard(page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])


def test_a_support_user_finds_reads_and_copies_the_failed_ticket_and_billing_sync(page, sign_in, personas, failures):
    grant_clipboard(page)
    sign_in(personas.support)

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Logs").click()
    expect(page.get_by_role("heading", name="Integration logs")).to_be_visible()
    expect(page.locator("tr[data-entry]")).to_have_count(50)  # a page of 50, newest first
    expect(page.get_by_text("Incident #42: ConnectWise")).to_have_count(0)

    # Find the failed ticket: errors of ticket actions.
    search = page.get_by_role("search", name="Filter the logs")
    search.get_by_label("Action", exact=True).select_option("ticket")
    search.get_by_label("Outcome", exact=True).select_option("error")
    search.get_by_role("button", name="Filter").click()
    rows = page.locator("tr[data-entry]")
    expect(rows).to_have_count(2)  # the action and its refused PSA request
    row = rows.filter(has_text="Incident #42")
    expect(row).to_contain_text("ticket.sync")
    expect(row).to_contain_text("Globex")

    # Read it.
    row.get_by_role("link", name=re.compile("Details")).click()
    expect(page.get_by_role("heading", name=re.compile(f"Log entry #{failures['ticket'].pk}"))).to_be_visible()
    expect(page.locator("#entry-message")).to_have_text(TICKET_FAILURE)
    expect(page.locator("#entry-doing")).to_have_text("Sending an incident to the PSA for incident #42 (tenant “Globex”).")
    expect(page.locator("#correlation-id")).to_have_text("tkt0042corr00001")
    expect(page.locator("#entry-fix")).to_contain_text("Set the board's Default Team")
    psa = page.locator("#psa-requests")
    expect(psa).to_contain_text("POST /v4_6_release/apis/3.0/service/tickets")
    expect(psa).to_contain_text("400")
    expect(psa.locator("pre").first).to_have_text('{"summary": "Phishing <b>reported</b>", "board": {"id": 1}}')
    expect(psa.locator("pre").nth(1)).to_contain_text("Cannot find default team for board specified")
    expect(page.get_by_role("link", name="Incident #42")).to_have_attribute("href", "/settings/incidents/42/")
    expect(page.get_by_role("button", name="Delete this entry")).to_have_count(0)  # support reads, never deletes

    # Copy it for support.
    page.get_by_role("link", name="Copy for support").click()
    text = page.locator("#support-text")
    expect(text).to_contain_text("Incident #42: ConnectWise could not create the ticket")
    expect(text).to_contain_text("Correlation id: tkt0042corr00001")
    expect(text).to_contain_text("POST /v4_6_release/apis/3.0/service/tickets -> 400")
    page.get_by_role("button", name="Copy to clipboard").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "Incident #42" in copied and "Account: Acme IT" in copied and copied == text.input_value()

    # The failed billing sync: a search, then both failures ticked and copied together.
    page.get_by_role("link", name="« Logs").click()
    search = page.get_by_role("search", name="Filter the logs")
    search.get_by_label("Search", exact=True).fill("multiple agreements")
    search.get_by_role("button", name="Filter").click()
    rows = page.locator("tr[data-entry]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("billing.sync")
    expect(page.get_by_text("Another MSP")).to_have_count(0)
    rows.first.get_by_role("link", name=re.compile("Details")).click()
    expect(page.locator("#entry-message")).to_have_text(BILLING_FAILURE)
    expect(page.locator("#psa-requests")).to_contain_text("GET /v4_6_release/apis/3.0/finance/agreements")
    expect(page.get_by_text("Billing run #7", exact=True)).to_be_visible()  # a link once billing has its page

    page.goto("/settings/logs/?outcome=error&level=actions")
    rows = page.locator("tr[data-entry]")
    expect(rows).to_have_count(2)
    for entry in (failures["ticket"], failures["billing"]):
        page.get_by_label(f"Select entry {entry.pk}").check()
    page.get_by_role("button", name="Copy for support").click()
    expect(page.get_by_role("heading", name="Copy for support")).to_be_visible()
    expect(page.get_by_text("2 entries as plain text")).to_be_visible()
    block = page.locator("#support-text").input_value()
    assert TICKET_FAILURE in block and BILLING_FAILURE in block
    assert "About: Incident #42" in block and "About: Billing run #7" in block
    assert "Another MSP" not in block
    page.get_by_role("button", name="Copy to clipboard").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == block

    # CSV of the filtered view, for a longer history.
    page.get_by_role("link", name="« Logs").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    content = open(download.value.path(), encoding="utf-8").read()
    assert content.splitlines()[0].startswith("id,created_at,account,tenant,action,outcome")
    assert str(failures["ticket"].pk) in content and "Multiple agreements" in content and "Another MSP" not in content


def test_vendor_staff_find_the_entries_across_accounts(page, sign_in, personas, failures):
    sign_in(personas.staff)
    page.goto("/settings/logs/?account=all&outcome=error&level=actions")
    rows = page.locator("tr[data-entry]")
    expect(rows).to_have_count(3)
    expect(page.get_by_role("columnheader", name="Account")).to_be_visible()

    search = page.get_by_role("search", name="Filter the logs")
    search.get_by_label("Account", exact=True).select_option(label="Acme IT")
    search.get_by_label("Search", exact=True).fill("default team")
    search.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name=re.compile("Details")).click()
    expect(page.locator("#entry-message")).to_have_text(TICKET_FAILURE)
    expect(page.get_by_role("button", name="Delete this entry")).to_have_count(0)

    # A bad filter is named, never an error page.
    page.goto("/settings/logs/?status=teapot&since=last+tuesday")
    expect(page.get_by_role("alert")).to_contain_text("PSA HTTP status “teapot” was ignored")
    expect(page.get_by_role("alert")).to_contain_text("“last tuesday” is not a date or time")
    assert IntegrationLog.objects.count() > 70

"""Configure ticketing for a ConnectWise connection in a real browser, from cached picklists:
choose a board (the page re-renders its statuses and checks its Default Team), map statuses
and priorities, save, see where a ticket would land, and send a test ticket that the page
follows until it is in the PSA."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from integrations.models import CompanyMapping, Connection
from ticketing.models import Incident, Ticket, TicketingConfig
from tests.factories import make_tenant
from tests.fakes.memory import cache_ticketing_lists

pytestmark = pytest.mark.browser

STATUSES = {"Open": "New", "Pending": "Waiting Customer", "Done": "Completed", "Snoozed": "Scheduled",
            "Canceled": "Cancelled", "Dismissed": "Cancelled"}
PRIORITIES = {"Critical": "Priority 1 - Emergency Response", "High": "Priority 2 - Quick Response",
              "Medium": "Priority 3 - Normal Response", "Low": "Priority 4 - Schedule Maintenance"}


@pytest.fixture
def deliveries(monkeypatch):
    """Deliveries are recorded, not sent: no worker may race the test for the incident."""
    from ticketing import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.deliver_incident, "delay", lambda incident_id, correlation_id: sent.append(incident_id))
    return sent


def test_an_admin_configures_connectwise_ticketing_and_previews_a_ticket(page, sign_in, personas, deliveries):
    connection = Connection.objects.create(account=personas.account_a, vendor="connectwise",
                                           status=Connection.Status.CONNECTED, config={"site": "na.myconnectwise.net"})
    cache_ticketing_lists(connection)
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="contoso-1")
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250", company_name="Contoso Ltd")
    sign_in(personas.admin)

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Ticketing").click()
    expect(page.get_by_role("heading", name="Ticketing", exact=True)).to_be_visible()
    expect(page.locator("#field-status_Open")).to_contain_text("Choose the Service Board first.")

    # A board without a Default Team is flagged before any ticket fails (seed 000 step 3.5).
    page.get_by_role("combobox", name="Service Board").select_option(label="Projects")
    expect(page.locator("#default-team-warning")).to_contain_text("This board has no Default Team")
    expect(page.get_by_label("Status for Open").locator("option")).to_have_text(["—", "Open", "Done"])

    page.get_by_role("combobox", name="Service Board").select_option(label="Help Desk")
    expect(page.locator("#default-team-warning")).to_have_count(0)
    expect(page.locator("#default-team-check")).to_have_text("The board has an active Default Team.")
    for status, name in STATUSES.items():
        page.get_by_label(f"Status for {status}").select_option(label=name)
    for severity, name in PRIORITIES.items():
        page.get_by_label(f"Priority for {severity}").select_option(label=name)
    page.get_by_label("Type", exact=True).select_option(label="Security")
    page.get_by_label("Source").select_option(label="Email")
    page.get_by_role("button", name="Save settings").click()

    expect(page.get_by_role("status").filter(has_text="Ticketing settings saved")).to_be_visible()
    expect(page.locator("#missing-statuses")).to_have_text("All six statuses are mapped.")
    expect(page.get_by_label("Status for Done")).to_have_value("14")
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert (config.board_id, config.board_name, config.type_id, config.source_id) == ("1", "Help Desk", "40", "30")
    assert config.status_map == {"Open": "10", "Pending": "12", "Done": "14", "Snoozed": "13", "Canceled": "15",
                                 "Dismissed": "15"}
    assert config.priority_map == {"Critical": "8", "High": "7", "Medium": "6", "Low": "5"}

    # Where a High incident for Contoso would land; nothing is written.
    page.get_by_label("Tenant", exact=True).select_option(label="Contoso (contoso-1)")
    page.get_by_label("Severity").select_option("High")
    expect(page.locator("#preview-company")).to_contain_text("Contoso Ltd")
    expect(page.locator("#preview-company")).to_contain_text("from the tenant's mapping")
    expect(page.locator("#preview-board")).to_have_text("Help Desk")
    expect(page.locator("#preview-status")).to_have_text("New")
    expect(page.locator("#preview-priority")).to_have_text("Priority 2 - Quick Response")
    expect(page.locator("#preview-type")).to_have_text("Security")
    assert not Incident.objects.exists()

    # The test ticket: a real incident, followed until the worker has made the ticket.
    page.get_by_role("button", name="Send test ticket").click()
    expect(page.locator("#test-ticket-status")).to_contain_text("Sending the test ticket to ConnectWise…")
    incident = Incident.objects.get()
    assert incident.title == "Test ticket from the PSA hub" and deliveries == [incident.pk]
    ticket = Ticket.objects.create(account=personas.account_a, vendor="connectwise", reference=incident.reference,
                                   ticket_id="5123", number="5123", url="https://na.myconnectwise.net/ticket/5123")
    Incident.objects.filter(pk=incident.pk).update(ticket=ticket, sync_state=Incident.Sync.SYNCED)
    link = page.get_by_role("link", name="ticket 5123")
    expect(link).to_have_attribute("href", "https://na.myconnectwise.net/ticket/5123")
    expect(page.locator("#test-ticket-status")).to_have_attribute("data-state", "synced")

    # Another board: its statuses must be mapped again; existing tickets stay.
    page.get_by_role("combobox", name="Service Board").select_option(label="Projects")
    expect(page.locator("#board-change-notice")).to_have_text(
        "Each board has its own statuses: map them again. Existing tickets stay on their board; "
        "the change applies to new tickets."
    )
    expect(page.get_by_label("Status for Open")).to_have_value("")
    expect(page.get_by_label("Priority for High")).to_have_value("7")  # priorities are not per board
    expect(page.locator("#missing-statuses")).to_contain_text("choose a status for Open, Pending, Done")

    # The incident is on the Incidents page with its ticket.
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Incidents").click()
    row = page.get_by_role("row").filter(has_text="Test ticket from the PSA hub")
    expect(row).to_contain_text("Synced")
    expect(row.get_by_role("link", name="5123")).to_have_attribute("href", re.compile(r"ticket/5123$"))

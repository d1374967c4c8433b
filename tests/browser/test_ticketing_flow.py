"""Issue 4's whole flow in a real browser, against each vendor's HTTP fake with a real worker:
the ticketing settings are chosen on the page from the lists the worker loads from the PSA
("Loading from …", then the choices), the preview says where a ticket would land, "Send test
ticket" makes one real ticket and links to it, incidents
posted through the API become tickets in the fake on the chosen board/queue with the mapped
status, priority and company, the Incidents page links each to its PSA ticket, and a status
change of the incident is followed by the ticket (closed through the mapped status).

The link itself is made through the API (tests/browser/test_link_psa.py covers its pages).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ticketing.fields import VENDOR_TICKETING
from ticketing.models import Incident, TicketingConfig
from tests.fakes.tickets import VENDORS, fake_tickets, forget_earlier_tickets
from tests.flows import WAIT, link_through_api, map_fake_company, wait_for

pytestmark = pytest.mark.browser

def choose(page, label: str, option: str) -> None:
    """Pick an option once the worker has brought the list in from the PSA (the page polls)."""
    select = page.get_by_role("combobox", name=re.compile(rf"^{re.escape(label)}( \(required\))?$"))
    expect(select.locator("option", has_text=option)).not_to_have_count(0, timeout=WAIT * 1000)
    select.select_option(label=option)


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_ticketing_set_up_in_the_page_makes_tickets_that_follow_the_incident(
    vendor, worker_process, page, sign_in, personas, api_for, restored
):
    psas, account, words = restored, personas.account_a, VENDORS[vendor]
    forget_earlier_tickets(psas)
    api = api_for(account)
    connection = link_through_api(api, account, psas, vendor, worker_process)
    company = map_fake_company(account, connection, vendor)

    # The settings, chosen from the PSA's own lists.
    sign_in(personas.admin)
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Ticketing").click()
    expect(page.get_by_role("heading", name="Ticketing", exact=True)).to_be_visible()
    choose(page, VENDOR_TICKETING[vendor].board.label, words.board)
    for status, name in words.statuses.items():
        choose(page, "Status for new tickets" if status == "new" else f"Status for {status}", name)
    for severity, name in words.priorities.items():
        choose(page, f"Priority for {severity}", name)
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").filter(has_text="Ticketing settings saved")).to_be_visible()
    expect(page.locator("#missing-statuses")).to_have_text("All six statuses are mapped.")
    config = TicketingConfig.objects.get(account=account)
    assert (config.vendor, config.board_name) == (vendor, words.board)

    # Where a Critical incident for Globex lands; nothing is written.
    page.get_by_label("Tenant", exact=True).select_option(label=f"Globex (globex-{vendor})")
    page.get_by_label("Severity").select_option("Critical")
    expect(page.locator("#preview-company")).to_contain_text(words.company)
    expect(page.locator("#preview-board")).to_have_text(words.board)
    expect(page.locator("#preview-status")).to_have_text(words.statuses.get("new") or words.statuses["Open"])
    expect(page.locator("#preview-priority")).to_have_text(words.priorities["Critical"])
    assert not Incident.objects.exists()

    # The test ticket: one real ticket in the PSA, linked from the page once the worker made it.
    page.get_by_role("button", name="Send test ticket").click()
    expect(page.locator("#test-ticket-status")).to_have_attribute("data-state", "synced", timeout=WAIT * 1000)
    test_incident = Incident.objects.select_related("ticket").get()
    expect(page.locator("#test-ticket-link")).to_have_attribute("href", test_incident.ticket.url)
    [test_ticket] = fake_tickets(psas, vendor)[f"hub-{account.pk}-{test_incident.pk}"]
    assert (test_ticket.board, test_ticket.company) == (config.board_id, company.id)

    # Incidents from the host product become tickets where the page said.
    posted = []
    for severity in ("Critical", "Low"):
        response = api.post("/api/v1/incidents/", {"tenant": f"globex-{vendor}", "title": f"{severity} alert",
                                                   "severity": severity, "dedupe_key": f"alert-{severity}"}, format="json")
        assert response.status_code == 201, response.content
        posted.append(response.json())
    first_status = config.status_map.get("new") or config.status_map["Open"]
    for incident in posted:
        reference = f"hub-{account.pk}-{incident['id']}"
        [ticket] = wait_for(lambda r=reference: fake_tickets(psas, vendor).get(r), f"the ticket {reference}", worker_process)
        assert (ticket.board, ticket.company, ticket.status) == (config.board_id, company.id, first_status)
        assert ticket.priority == config.priority_map[incident["severity"]]

    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Incidents").click()
    critical = Incident.objects.select_related("ticket").get(pk=posted[0]["id"])
    row = page.get_by_role("row").filter(has_text="Critical alert")
    expect(row).to_contain_text("Synced", timeout=WAIT * 1000)
    expect(row.get_by_role("link", name=critical.ticket.number)).to_have_attribute("href", critical.ticket.url)

    # The ticket follows the incident: Pending, then Done closes it through the mapped status.
    reference = f"hub-{account.pk}-{critical.pk}"
    for status in ("Pending", "Done"):
        response = api.patch(f"/api/v1/incidents/{critical.pk}/", {"status": status}, format="json")
        assert response.status_code == 200, response.content
        wait_for(lambda s=status: fake_tickets(psas, vendor)[reference][0].status == config.status_map[s],
                 f"the ticket's status follows to {status}", worker_process)
    assert fake_tickets(psas, vendor)[reference][0].closed
    page.reload()
    expect(row).to_contain_text("Done")
    assert sum(len(tickets) for tickets in fake_tickets(psas, vendor).values()) == 3  # the test ticket and two; no duplicate

"""Settings → Ticketing and the Incidents pages, against cached picklists (no PSA call): the form
per PSA, board changes, the default team check, validation beside the fields, roles, the
routing preview, the test ticket, and the incidents list, detail and retry."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from django.utils.html import escape

from integrations.models import CompanyMapping, Connection, IntegrationLog, Picklist, PsaCompany
from ticketing.forms import NO_DEFAULT_TEAM, TEST_TICKET_TITLE
from ticketing.models import Incident, IncidentNote, Ticket, TicketingConfig
from tests.factories import make_tenant
from tests.fakes.memory import cache_ticketing_lists

pytestmark = pytest.mark.django_db

URL = "/settings/ticketing/"
INCIDENTS = "/settings/incidents/"
HX = {"HTTP_HX_REQUEST": "true"}
BOARD_CHANGE = ("Each board has its own statuses: map them again. Existing tickets stay on their board; "
                "the change applies to new tickets.")

# A complete ConnectWise setting on the Help Desk board (ids of TICKETING_LISTS["connectwise"]).
CW_POST = {
    "board_id": "1",
    "status_Open": "10", "status_Pending": "12", "status_Done": "14", "status_Snoozed": "13",
    "status_Canceled": "15", "status_Dismissed": "15",
    "priority_Critical": "8", "priority_High": "7", "priority_Medium": "6", "priority_Low": "5",
    "default_priority_id": "", "type_id": "40", "subtype_id": "50", "item_id": "", "source_id": "30",
    "default_company_id": "", "reopen_within_hours": "24",
}


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache):
    """The in-memory PSA behind every vendor slug (nothing here may call it), a private cache."""


@pytest.fixture
def deliveries(monkeypatch):
    """Incident deliveries queued (after commit): [incident_id, ...]."""
    from ticketing import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.deliver_incident, "delay", lambda incident_id, correlation_id: sent.append(incident_id))
    return sent


def connect(account, vendor="connectwise", status=Connection.Status.CONNECTED, lists=True, **fields) -> Connection:
    connection = Connection.objects.create(account=account, vendor=vendor, status=status,
                                           config={"site": "acme.example.com"}, **fields)
    if lists:
        cache_ticketing_lists(connection)
    return connection


def configure(account, vendor="connectwise", **fields) -> TicketingConfig:
    values = {
        "connectwise": {"board_id": "1", "board_name": "Help Desk",
                        "status_map": {"Open": "10", "Pending": "12", "Done": "14", "Snoozed": "13", "Canceled": "15",
                                       "Dismissed": "15"},
                        "priority_map": {"Critical": "8", "High": "7", "Medium": "6", "Low": "5"}, "type_id": "40"},
        "autotask": {"board_id": "29683", "board_name": "Level I Support",
                     "status_map": {"new": "1", "Open": "8", "Pending": "7", "Done": "5", "Snoozed": "9",
                                    "Canceled": "10", "Dismissed": "5"},
                     "priority_map": {"Critical": "4", "High": "1", "Medium": "2", "Low": "3"}, "type_id": "2"},
        "halo": {"board_id": "1", "board_name": "Incident",
                 "status_map": {"Open": "1", "Pending": "4", "Done": "9", "Snoozed": "8", "Canceled": "20",
                                "Dismissed": "9"},
                 "priority_map": {"Critical": "1", "High": "2", "Medium": "3", "Low": "4"}, "team_id": "5"},
    }[vendor]
    return TicketingConfig.objects.create(account=account, vendor=vendor, **{**values, **fields})


def text(response) -> str:
    return response.content.decode()


def field_html(html: str, name: str) -> str:
    """The block of one choice field (ticketing/_choice.html)."""
    match = re.search(rf'<div class="field[^"]*" id="field-{name}".*?</div>', html, re.S)
    assert match, f"no field {name!r}"
    return match.group(0)


def field_errors(html: str, name: str) -> str:
    match = re.search(rf'<ul class="errors" id="id_{name}-errors">(.*?)</ul>', html, re.S)
    assert match, f"no errors beside {name!r}"
    return match.group(1)


def selected(html: str, name: str) -> str:
    """The value selected in one select, or ""."""
    block = field_html(html, name)
    match = re.search(r'<option value="([^"]*)"[^>]*selected', block)
    return match.group(1) if match else ""


def options(html: str, name: str) -> list[str]:
    return [value for value in re.findall(r'<option value="([^"]*)"', field_html(html, name)) if value]


@pytest.fixture
def admin_page(personas, page_client):
    return page_client(personas.admin)


# No PSA yet ----------------------------------------------------------------------------------------


def test_without_a_psa_the_page_says_link_one_first(personas, admin_page):
    html = text(admin_page.get(URL))
    assert "Link a PSA first" in html and 'href="/settings/integrations/"' in html
    assert "Save settings" not in html


def test_a_psa_not_connected_yet_is_not_configured(personas, admin_page):
    connect(personas.account_a, status=Connection.Status.VERIFYING)
    html = text(admin_page.get(URL))
    assert "Link a PSA first: ConnectWise Manage is linked but not connected (Verifying…)" in html
    assert 'name="board_id"' not in html
    assert admin_page.get(f"{URL}fields/").status_code == 404


def test_the_side_navigation_has_ticketing_and_incidents(personas, admin_page):
    html = text(admin_page.get(INCIDENTS))
    assert re.search(rf'<a href="{URL}"\s*>Ticketing</a>', html)
    assert re.search(rf'<a href="{INCIDENTS}"\s+aria-current="page">Incidents</a>', html)


# The form per PSA ---------------------------------------------------------------------------------------


def test_connectwise_page_offers_the_cached_lists(personas, admin_page):
    connect(personas.account_a)
    html = text(admin_page.get(URL))
    assert "<h2 id=\"board-heading\">Service Board</h2>" in html
    assert options(html, "board_id") == ["1", "2"]  # the inactive board is not offered
    # Statuses, types, subtypes and items need a board first; priorities and sources do not.
    assert "Choose the Service Board first." in field_html(html, "status_Open")
    assert "Choose the Service Board first." in field_html(html, "type_id")
    assert options(html, "priority_Critical") == ["8", "7", "6", "5"]
    assert options(html, "default_priority_id") == ["8", "7", "6", "5"]
    assert options(html, "source_id") == ["30", "31"]
    for label in ("Status for Open", "Status for Dismissed", "Priority for Low", "Default priority", "Type", "Subtype",
                  "Item", "Source", "Default company", "Reopen a closed ticket when the incident recurs within (hours)"):
        assert f">{label}" in html, label
    assert "Status for new tickets" not in html  # Autotask only
    assert 'name="reopen_within_hours" value="24"' in html
    assert "The status mapping is incomplete: choose a status for Open, Pending, Done, Snoozed, Canceled, Dismissed." in html


def test_connectwise_page_with_a_saved_board(personas, admin_page):
    connect(personas.account_a)
    configure(personas.account_a)
    html = text(admin_page.get(URL))
    assert selected(html, "board_id") == "1"
    assert options(html, "status_Open") == ["10", "11", "12", "13", "14", "15"]
    assert selected(html, "status_Open") == "10" and selected(html, "status_Done") == "14"
    assert selected(html, "priority_High") == "7" and selected(html, "type_id") == "40"
    assert options(html, "subtype_id") == ["50", "51"]
    assert "All six statuses are mapped." in html
    assert "The board has an active Default Team." in html
    assert escape(NO_DEFAULT_TEAM) not in html


def test_autotask_page(personas, admin_page):
    connect(personas.account_a, vendor="autotask")
    configure(personas.account_a, vendor="autotask", extra={"issue_type_id": "10"})
    html = text(admin_page.get(URL))
    assert '<h2 id="board-heading">Queue</h2>' in html
    assert options(html, "board_id") == ["29683", "29684"]
    # Autotask statuses do not depend on the queue; "Status for new tickets" comes first (seed 001).
    assert html.index("Status for new tickets") < html.index("Status for Open")
    assert selected(html, "status_new") == "1" and selected(html, "status_Open") == "8"
    assert options(html, "type_id") == ["1", "2"] and selected(html, "type_id") == "2"
    assert options(html, "source_id") == ["2", "4", "8"]
    assert selected(html, "extra_issue_type_id") == "10"
    assert options(html, "extra_sub_issue_type_id") == ["100", "101"]  # the sub-issue types of Security
    assert "Default priority" not in html and "Subtype" not in html
    assert "Default Team" not in html


def test_halo_page(personas, admin_page):
    connect(personas.account_a, vendor="halo")
    configure(personas.account_a, vendor="halo", extra={"note_outcome_id": "7"})
    html = text(admin_page.get(URL))
    assert '<h2 id="board-heading">Ticket Type</h2>' in html
    assert options(html, "status_Open") == ["1", "2", "4", "8", "9", "20"]
    assert options(html, "priority_Critical") == ["1", "2", "3", "4"]  # the ticket type's SLA priorities
    assert selected(html, "team_id") == "5" and selected(html, "extra_note_outcome_id") == "7"
    assert ">Team" in html and ">Outcome for notes" in html
    assert "Default priority" not in html and "Status for new tickets" not in html


def test_lists_not_cached_yet_are_loading_and_queued(personas, admin_page, queued, django_capture_on_commit_callbacks):
    connection = connect(personas.account_a, lists=False)
    with django_capture_on_commit_callbacks(execute=True):
        html = text(admin_page.get(URL))
    assert "Loading from ConnectWise…" in field_html(html, "board_id")
    assert "Loading from ConnectWise…" in field_html(html, "priority_Critical")
    assert 'data-polling="true"' in html and f'hx-get="{URL}fields/" hx-trigger="every 2s"' in html
    asked = {args[1:3] for name, args in queued if name == "refresh_picklist"}
    assert asked == {("boards", ""), ("priorities", ""), ("sources", "")}
    assert all(args[0] == str(connection.pk) for _, args in queued)
    # When the lists arrive, the polled fields show them and stop polling.
    cache_ticketing_lists(connection)
    html = text(admin_page.get(f"{URL}fields/", HX))
    assert options(html, "board_id") == ["1", "2"] and 'data-polling="false"' in html and "every 2s" not in html


def test_a_list_that_failed_shows_its_error(personas, admin_page):
    connection = connect(personas.account_a)
    Picklist.objects.filter(connection=connection, kind="priorities").update(
        items=[], fetched_at=None,
        error="Could not refresh priorities: ConnectWise API user does not have permission to access Service > Priority.",
    )
    html = text(admin_page.get(URL))
    assert "ConnectWise API user does not have permission to access Service &gt; Priority." in field_html(html, "priority_High")


def test_refresh_lists_queues_every_list_the_page_uses(personas, page_client, queued, django_capture_on_commit_callbacks):
    connect(personas.account_a)
    configure(personas.account_a)
    client = page_client(personas.operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{URL}refresh/")
    assert response.status_code == 302 and response["Location"] == URL
    asked = {args[1:3] for name, args in queued if name == "refresh_picklist"}
    assert asked == {("boards", ""), ("statuses", "1"), ("priorities", ""), ("types", "1"), ("subtypes", "1"),
                     ("items", "1"), ("sources", ""), ("teams", "1")}
    html = text(client.get(URL))
    assert "Refreshing the lists from ConnectWise…" in html
    assert "Refreshing from ConnectWise…" in field_html(html, "priority_Low")
    assert page_client(personas.support).post(f"{URL}refresh/").status_code == 403


# Board change -------------------------------------------------------------------------------------------


def test_changing_the_board_rerenders_its_statuses_and_clears_the_old_ones(personas, admin_page):
    connect(personas.account_a)
    configure(personas.account_a)
    values = {**CW_POST, "board_id": "2"}
    html = text(admin_page.get(f"{URL}fields/", values, **HX))
    assert html.startswith('<div id="config-fields"')
    assert BOARD_CHANGE in html
    assert options(html, "status_Open") == ["20", "21"]
    for status in ("Open", "Pending", "Done", "Snoozed", "Canceled", "Dismissed"):
        assert selected(html, f"status_{status}") == "", status
    assert selected(html, "type_id") == "" and options(html, "type_id") == ["42"]
    assert selected(html, "priority_Critical") == "8"  # priorities do not depend on the board
    assert "choose a status for Open, Pending, Done, Snoozed, Canceled, Dismissed" in html
    # Seed 000 step 3.5: the Projects board has no default team: said before any ticket fails.
    assert escape(NO_DEFAULT_TEAM) in html
    # Back on the saved board: no notice.
    html = text(admin_page.get(f"{URL}fields/", CW_POST, **HX))
    assert BOARD_CHANGE not in html and escape(NO_DEFAULT_TEAM) not in html


def test_the_board_select_asks_for_the_rerender(personas, admin_page):
    connect(personas.account_a)
    page = text(admin_page.get(URL))
    assert 'data-reloads-fields="true"' in field_html(page, "board_id")
    # The form, which is never swapped, listens: a select's own listener came only after htmx settled.
    form = re.search(r'<form[^>]*id="ticketing-form"[^>]*>', page).group(0)
    assert f'hx-get="{URL}fields/"' in form and "data-reloads-fields" in form and 'hx-target="#config-fields"' in form


def test_a_new_boards_statuses_not_cached_yet_are_loading(personas, admin_page, queued, django_capture_on_commit_callbacks):
    connection = connect(personas.account_a)
    Picklist.objects.filter(connection=connection, kind__in=["statuses", "teams"], parent_id="2").delete()
    with django_capture_on_commit_callbacks(execute=True):
        html = text(admin_page.get(f"{URL}fields/", {**CW_POST, "board_id": "2"}, **HX))
    assert "Loading from ConnectWise…" in field_html(html, "status_Open")
    assert "Checking the board&#x27;s Default Team…" in html
    assert 'hx-trigger="every 2s"' in html
    assert {("statuses", "2"), ("teams", "2")} <= {args[1:3] for name, args in queued if name == "refresh_picklist"}


def test_saving_a_new_board_applies_to_new_tickets_only(personas, admin_page):
    connection = connect(personas.account_a)
    configure(personas.account_a)
    tenant = make_tenant(personas.account_a)
    old = Ticket.objects.create(account=personas.account_a, vendor="connectwise", reference="hub-x-1", ticket_id="900",
                                board_id="1", status_map={"Open": "10"})
    response = admin_page.post(URL, {**CW_POST, "board_id": "2", "status_Open": "20", "status_Pending": "",
                                     "status_Done": "21", "status_Snoozed": "", "status_Canceled": "",
                                     "status_Dismissed": "", "type_id": "42", "subtype_id": ""})
    assert response.status_code == 302
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert (config.board_id, config.board_name) == ("2", "Projects")
    assert config.status_map == {"Open": "20", "Done": "21"}
    old.refresh_from_db()
    assert old.board_id == "1"  # existing tickets stay where they are
    entry = IntegrationLog.objects.get(action="ticketing.config")
    assert "was “Help Desk”; new tickets only" in entry.message
    assert entry.connection == connection and tenant  # (the tenant is unused; nothing was sent)


# Saving, completeness and validation ----------------------------------------------------------------------


def test_saving_a_complete_setting(personas, admin_page):
    connect(personas.account_a)
    response = admin_page.post(URL, {**CW_POST, "reopen_within_hours": "6"}, follow=True)
    html = text(response)
    assert "Ticketing settings saved. Changes apply to new tickets." in html
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert config.vendor == "connectwise" and (config.board_id, config.board_name) == ("1", "Help Desk")
    assert config.status_map == {"Open": "10", "Pending": "12", "Done": "14", "Snoozed": "13", "Canceled": "15",
                                 "Dismissed": "15"}
    assert config.priority_map == {"Critical": "8", "High": "7", "Medium": "6", "Low": "5"}
    assert (config.type_id, config.subtype_id, config.source_id, config.reopen_within_hours) == ("40", "50", "30", 6)
    assert config.missing_statuses() == []


def test_an_incomplete_status_mapping_is_saved_and_named(personas, admin_page):
    connect(personas.account_a)
    response = admin_page.post(URL, {**CW_POST, "status_Snoozed": "", "status_Dismissed": ""}, follow=True)
    html = text(response)
    assert "The status mapping is incomplete: choose a status for Snoozed, Dismissed." in html
    assert 'id="missing-statuses"' in html
    assert TicketingConfig.objects.get(account=personas.account_a).missing_statuses() == ["Snoozed", "Dismissed"]


def test_ids_not_in_the_cached_lists_are_refused_beside_their_fields(personas, admin_page):
    connect(personas.account_a)
    response = admin_page.post(URL, {**CW_POST, "board_id": "", "priority_High": "99"})
    assert response.status_code == 400
    html = text(response)
    assert "Nothing was saved: fix the settings marked below." in html
    assert "Service Board: choose one; tickets are created there." in field_errors(html, "board_id")
    error = field_errors(html, "priority_High")
    assert "Priority for High: “99” is not in ConnectWise&#x27;s list." in error and "Refresh lists" in error
    assert "has-error" in field_html(html, "priority_High")
    assert "errors" not in field_html(html, "priority_Low")
    assert not TicketingConfig.objects.exists()

    response = admin_page.post(URL, {**CW_POST, "status_Open": "20", "subtype_id": "51"})
    html = text(response)
    assert "Status for Open: “20” is not in ConnectWise&#x27;s list of Service Board “Help Desk”." in field_errors(html, "status_Open")
    assert "“Patching” is not a subtype of Type “Security”" in field_errors(html, "subtype_id")
    response = admin_page.post(URL, {**CW_POST, "reopen_within_hours": "-1"})
    assert "Reopen within: enter 0 or more hours." in field_errors(text(response), "reopen_within_hours")
    assert not TicketingConfig.objects.exists()


def test_a_value_whose_list_is_loading_must_wait(personas, admin_page):
    connection = connect(personas.account_a)
    Picklist.objects.filter(connection=connection, kind="sources").delete()
    html = text(admin_page.post(URL, CW_POST))
    assert "Source: the list is still loading from ConnectWise; save again in a moment." in field_errors(html, "source_id")
    # A saved value whose list is being fetched again is kept as it is.
    configure(personas.account_a, source_id="30")
    assert admin_page.post(URL, CW_POST).status_code == 302


def test_autotask_and_halo_save_their_own_fields(personas, admin_page):
    connect(personas.account_a, vendor="autotask")
    response = admin_page.post(URL, {
        "board_id": "29684", "status_new": "1", "status_Open": "8", "status_Pending": "7", "status_Done": "5",
        "status_Snoozed": "9", "status_Canceled": "10", "status_Dismissed": "5", "priority_Critical": "4",
        "priority_High": "1", "priority_Medium": "2", "priority_Low": "3", "type_id": "2", "source_id": "8",
        "extra_issue_type_id": "10", "extra_sub_issue_type_id": "101", "reopen_within_hours": "24",
    })
    assert response.status_code == 302, text(response)
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert config.vendor == "autotask" and config.board_name == "Security Operations"
    assert config.status_map["new"] == "1" and config.extra == {"issue_type_id": "10", "sub_issue_type_id": "101"}
    # A sub-issue type of another issue type is refused.
    html = text(admin_page.post(URL, {"board_id": "29684", "extra_issue_type_id": "11", "extra_sub_issue_type_id": "101",
                                      "reopen_within_hours": "24"}))
    assert "Sub-issue Type: “101” is not in Autotask&#x27;s list of Issue Type “Network”." in field_errors(html, "extra_sub_issue_type_id")


def test_halo_saves_team_and_note_outcome(personas, admin_page):
    connect(personas.account_a, vendor="halo")
    response = admin_page.post(URL, {"board_id": "1", "status_Open": "1", "priority_Critical": "1", "team_id": "6",
                                     "extra_note_outcome_id": "7", "reopen_within_hours": "24"})
    assert response.status_code == 302
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert (config.board_name, config.team_id, config.extra) == ("Incident", "6", {"note_outcome_id": "7"})
    assert config.priority_map == {"Critical": "1"}


def test_settings_of_another_psa_are_not_carried_over(personas, admin_page):
    connect(personas.account_a)  # ConnectWise now
    configure(personas.account_a, vendor="autotask")
    html = text(admin_page.get(URL))
    assert "The saved settings were for another PSA: choose them again for ConnectWise." in html
    assert selected(html, "board_id") == ""
    assert admin_page.post(URL, CW_POST).status_code == 302
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert config.vendor == "connectwise" and config.board_id == "1" and "new" not in config.status_map


# Default company ------------------------------------------------------------------------------------------


def test_default_company_from_imported_customers_releases_waiting_incidents(
    personas, admin_page, deliveries, django_capture_on_commit_callbacks
):
    connection = connect(personas.account_a)
    PsaCompany.objects.create(connection=connection, company_id="250", name="Acme Corp", identifier="AcmeCorp")
    PsaCompany.objects.create(connection=connection, company_id="251", name="Globex", identifier="Globex")
    tenant = make_tenant(personas.account_a)
    waiting = Incident.objects.create(account=personas.account_a, tenant=tenant, title="Disk full", severity="High",
                                      sync_state=Incident.Sync.NEEDS_MAPPING, sync_error="not mapped")
    html = text(admin_page.get(f"{URL}companies/", {"company_q": "glob"}))
    assert '<option value="251">Globex (Globex)</option>' in html and "Acme" not in html
    assert "No default company" in html

    html = text(admin_page.post(URL, {**CW_POST, "default_company_id": "999"}))
    assert "Default company: “999” is not among the customers imported from ConnectWise." in field_errors(html, "default_company_id")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_page.post(URL, {**CW_POST, "default_company_id": "250"}, follow=True)
    assert "1 incident waiting for a company is being sent to the default company." in text(response)
    config = TicketingConfig.objects.get(account=personas.account_a)
    assert (config.default_company_id, config.default_company_name) == ("250", "Acme Corp")
    waiting.refresh_from_db()
    assert waiting.sync_state == Incident.Sync.PENDING and deliveries == [waiting.pk]
    # Saving again with the same company releases nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        admin_page.post(URL, {**CW_POST, "default_company_id": "250"})
    assert deliveries == [waiting.pk]


def test_without_imported_customers_the_page_says_import_them(personas, admin_page):
    connect(personas.account_a)
    html = text(admin_page.get(URL))
    assert "No customers imported yet" in html and 'href="/settings/integrations/companies/"' in html


# Roles and accounts ---------------------------------------------------------------------------------------


def test_support_reads_the_settings_but_cannot_change_them(personas, page_client):
    connect(personas.account_a)
    configure(personas.account_a)
    client = page_client(personas.support)
    html = text(client.get(URL))
    assert selected(html, "board_id") == "1"
    assert re.search(r'<select name="board_id"[^>]*disabled', html)
    assert "Save settings" not in html and "Refresh lists" not in html and "Send test ticket" not in html
    assert "Your role can read these settings" in html
    assert client.post(URL, {**CW_POST, "board_id": "2"}).status_code == 403
    assert client.post(f"{URL}test-ticket/", {"tenant": "1", "severity": "High"}).status_code == 403
    assert TicketingConfig.objects.get(account=personas.account_a).board_id == "1"
    # The polled fields fall back to the saved values when the page sends none (disabled selects).
    assert selected(text(client.get(f"{URL}fields/", HX)), "status_Open") == "10"


def test_vendor_staff_read_only(personas, page_client):
    connect(personas.account_a)
    client = page_client(personas.staff)
    assert client.get(URL).status_code == 200
    assert client.post(URL, CW_POST).status_code == 403


def test_operator_saves(personas, page_client):
    connect(personas.account_a)
    assert page_client(personas.operator).post(URL, CW_POST).status_code == 302


def test_an_outsider_sees_only_their_own_account(personas, page_client):
    connect(personas.account_a)
    configure(personas.account_a)
    tenant = make_tenant(personas.account_a)
    incident = Incident.objects.create(account=personas.account_a, tenant=tenant, title="A's incident", severity="Low")
    client = page_client(personas.outsider)
    html = text(client.get(URL))
    assert "Link a PSA first" in html and "Help Desk" not in html
    assert client.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "Low"}).status_code == 404
    assert client.get(f"{INCIDENTS}{incident.pk}/").status_code == 404
    assert client.get(f"{INCIDENTS}{incident.pk}/sync/").status_code == 404
    assert client.post(f"{INCIDENTS}{incident.pk}/retry/").status_code == 404
    assert client.get(f"{URL}test-ticket/{incident.pk}/").status_code == 404
    assert "A&#x27;s incident" not in text(client.get(INCIDENTS))
    # Even with a PSA of its own, account B cannot preview A's tenant.
    connect(personas.account_b)
    configure(personas.account_b)
    assert client.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "Low"}).status_code == 404


# Routing preview and test ticket ------------------------------------------------------------------------


def test_preview_shows_where_a_mapped_tenants_ticket_lands(personas, admin_page):
    connect(personas.account_a)
    configure(personas.account_a)
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="contoso-1")
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250", company_name="Contoso Ltd")
    html = text(admin_page.get(URL))
    assert f'<option value="{tenant.pk}" >Contoso (contoso-1)</option>' in html
    before = (Incident.objects.count(), IntegrationLog.objects.count(), Picklist.objects.count())
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "Critical"}, **HX))
    assert 'data-ready="true"' in html
    assert re.search(r'id="preview-company">Contoso Ltd\s*<span class="badge ok">from the tenant\'s mapping', html)
    assert '<dt>Service Board</dt><dd id="preview-board">Help Desk</dd>' in html
    assert 'id="preview-status">New</dd>' in html
    assert 'id="preview-priority">Priority 1 - Emergency Response</dd>' in html
    assert '<dt>Type</dt><dd id="preview-type">Security</dd>' in html
    assert (Incident.objects.count(), IntegrationLog.objects.count(), Picklist.objects.count()) == before
    # Without JavaScript the whole page comes back with the preview in it.
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "Low"}))
    assert "<h1>Ticketing</h1>" in html and 'id="preview-priority">Priority 4 - Schedule Maintenance</dd>' in html


def test_preview_of_an_unmapped_tenant(personas, admin_page):
    connection = connect(personas.account_a)
    config = configure(personas.account_a)
    tenant = make_tenant(personas.account_a, name="Initech", external_id="initech")
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "High"}, **HX))
    assert 'data-ready="false"' in html
    assert "Tenant “Initech” is not mapped to a PSA company and no default company is set." in html
    assert 'href="/settings/integrations/companies/?q=initech"' in html
    PsaCompany.objects.create(connection=connection, company_id="250", name="Acme Corp")
    config.default_company_id, config.default_company_name = "250", "Acme Corp"
    config.save()
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "High"}, **HX))
    assert re.search(r'id="preview-company">Acme Corp\s*<span class="badge pending">default company', html)


def test_preview_says_what_is_missing(personas, admin_page):
    connect(personas.account_a)
    tenant = make_tenant(personas.account_a)
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250")
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "High"}, **HX))
    assert "Ticketing is not set up: choose the board or queue on the Ticketing page." in html
    configure(personas.account_a, status_map={"Open": "10"})
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "High"}, **HX))
    assert ("The status mapping for Help Desk is incomplete: choose a status for Pending, Done, Snoozed, Canceled, "
            "Dismissed on the Ticketing page") in html
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "Severe"}, **HX))
    assert "Choose a severity: Critical, High, Medium, Low." in html


def test_autotask_preview_uses_the_status_for_new_tickets(personas, admin_page):
    connect(personas.account_a, vendor="autotask")
    configure(personas.account_a, vendor="autotask")
    tenant = make_tenant(personas.account_a)
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="0", company_name="Zero")
    html = text(admin_page.get(f"{URL}preview/", {"tenant": tenant.pk, "severity": "Critical"}, **HX))
    assert '<dt>Queue</dt><dd id="preview-board">Level I Support</dd>' in html
    assert 'id="preview-status">New</dd>' in html and 'id="preview-priority">Critical</dd>' in html
    assert '<dt>Ticket Type</dt><dd id="preview-type">Incident</dd>' in html


def test_send_test_ticket_queues_a_real_incident_and_polls(personas, page_client, deliveries, django_capture_on_commit_callbacks):
    connect(personas.account_a)
    configure(personas.account_a)
    tenant = make_tenant(personas.account_a)
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250", company_name="Acme")
    client = page_client(personas.operator)
    with django_capture_on_commit_callbacks(execute=True):
        html = text(client.post(f"{URL}test-ticket/", {"tenant": tenant.pk, "severity": "Medium"}, **HX))
    incident = Incident.objects.get()
    assert (incident.title, incident.severity, incident.status, incident.tenant) == (TEST_TICKET_TITLE, "Medium", "Open", tenant)
    assert incident.dedupe_key.startswith("hub-test-ticket-") and deliveries == [incident.pk]
    assert f'hx-get="{URL}test-ticket/{incident.pk}/" hx-trigger="every 2s"' in html
    assert "Sending the test ticket to ConnectWise…" in html
    # A second test ticket is another incident (its dedupe key is its own), not a repeat.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{URL}test-ticket/", {"tenant": tenant.pk, "severity": "Medium"}, **HX)
    assert Incident.objects.count() == 2 and len(deliveries) == 2

    ticket = Ticket.objects.create(account=personas.account_a, vendor="connectwise", reference=incident.reference,
                                   ticket_id="5123", number="5123", url="https://na.myconnectwise.net/ticket?id=5123")
    Incident.objects.filter(pk=incident.pk).update(ticket=ticket, sync_state=Incident.Sync.SYNCED)
    html = text(client.get(f"{URL}test-ticket/{incident.pk}/", **HX))
    assert 'data-state="synced"' in html and "every 2s" not in html
    assert '<a href="https://na.myconnectwise.net/ticket?id=5123" target="_blank" rel="noopener" id="test-ticket-link">ticket 5123</a>' in html

    Incident.objects.filter(pk=incident.pk).update(
        ticket=None, sync_state=Incident.Sync.FAILED, sync_error="ConnectWise could not create the ticket: <b>no team</b>")
    html = text(client.get(f"{URL}test-ticket/{incident.pk}/", **HX))
    assert "The test ticket failed: ConnectWise could not create the ticket: &lt;b&gt;no team&lt;/b&gt;" in html


def test_a_test_ticket_that_could_not_land_is_not_sent(personas, admin_page, deliveries, django_capture_on_commit_callbacks):
    connect(personas.account_a)
    configure(personas.account_a)
    tenant = make_tenant(personas.account_a, name="Initech")
    with django_capture_on_commit_callbacks(execute=True):
        html = text(admin_page.post(f"{URL}test-ticket/", {"tenant": tenant.pk, "severity": "Low"}, **HX))
    assert "Tenant “Initech” is not mapped to a PSA company" in html and 'data-state="refused"' in html
    Connection.objects.filter(account=personas.account_a).update(paused=True)
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250")
    html = text(admin_page.post(f"{URL}test-ticket/", {"tenant": tenant.pk, "severity": "Low"}, **HX))
    assert "The integration is paused: resume it under Integrations to send a test ticket." in html
    assert not Incident.objects.exists() and deliveries == []


def test_send_test_ticket_without_javascript_goes_to_the_incident(personas, admin_page, deliveries):
    connect(personas.account_a)
    configure(personas.account_a)
    tenant = make_tenant(personas.account_a)
    CompanyMapping.objects.create(account=personas.account_a, tenant=tenant, company_id="250")
    response = admin_page.post(f"{URL}test-ticket/", {"tenant": tenant.pk, "severity": "High"})
    incident = Incident.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{INCIDENTS}{incident.pk}/"


def test_tenant_search_for_the_preview(personas, admin_page):
    connect(personas.account_a)
    make_tenant(personas.account_a, name="Contoso", external_id="c-1")
    make_tenant(personas.account_a, name="Globex", external_id="g-1")
    html = text(admin_page.get(f"{URL}tenants/", {"tenant_q": "glob"}))
    assert "Globex (g-1)" in html and "Contoso" not in html


# Incidents ---------------------------------------------------------------------------------------------


def incident(account, tenant, **fields) -> Incident:
    return Incident.objects.create(account=account, tenant=tenant, **{"title": "Disk full", "severity": "High", **fields})


def test_incidents_list_newest_first_with_ticket_links_and_badges(personas, admin_page):
    connect(personas.account_a)
    tenant = make_tenant(personas.account_a, name="Contoso", external_id="contoso-1")
    now = timezone.now()
    ticket = Ticket.objects.create(account=personas.account_a, vendor="connectwise", reference="r1", ticket_id="5123",
                                   number="5123", url="https://psa.example.com/t/5123")
    first = incident(personas.account_a, tenant, title="Older", created_at=now - timezone.timedelta(hours=2),
                     ticket=ticket, sync_state=Incident.Sync.SYNCED)
    second = incident(personas.account_a, tenant, title="Newer", created_at=now - timezone.timedelta(hours=1),
                      sync_state=Incident.Sync.FAILED,
                      sync_error="ConnectWise refused the ticket: Cannot find default team for board specified")
    third = incident(personas.account_a, tenant, title="Newest", sync_state=Incident.Sync.NEEDS_MAPPING,
                     sync_error="Tenant “Contoso” is not mapped")
    html = text(admin_page.get(INCIDENTS))
    assert html.index("Newest") < html.index("Newer") < html.index("Older")
    assert '<a href="https://psa.example.com/t/5123" target="_blank" rel="noopener" class="ticket-link">5123</a>' in html
    row = re.search(rf'<tr data-incident="{second.pk}".*?</tr>', html, re.S).group(0)
    assert '<span class="badge bad">Failed</span>' in row
    assert "Cannot find default team for board specified" in row
    row = re.search(rf'<tr data-incident="{third.pk}".*?</tr>', html, re.S).group(0)
    assert '<span class="badge pending">Needs mapping</span>' in row
    assert 'href="/settings/integrations/companies/?q=contoso-1"' in row
    row = re.search(rf'<tr data-incident="{first.pk}".*?</tr>', html, re.S).group(0)
    assert '<span class="badge ok">Synced</span>' in row


def test_incident_titles_are_escaped(personas, admin_page):
    tenant = make_tenant(personas.account_a, name="<b>Evil</b> Corp")
    bad = incident(personas.account_a, tenant, title='<script>alert("x")</script>', details="<img src=x onerror=alert(1)>",
                   sync_state=Incident.Sync.FAILED, sync_error="<i>oops</i>")
    for html in (text(admin_page.get(INCIDENTS)), text(admin_page.get(f"{INCIDENTS}{bad.pk}/"))):
        assert "<script>alert" not in html and "<img src=x" not in html and "<i>oops" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
        assert "&lt;b&gt;Evil&lt;/b&gt; Corp" in html


def test_incidents_filters(personas, admin_page):
    contoso = make_tenant(personas.account_a, name="Contoso", external_id="contoso-1")
    globex = make_tenant(personas.account_a, name="Globex", external_id="globex-1")
    incident(personas.account_a, contoso, title="Alpha", severity="Critical", status="Open", sync_state="synced")
    incident(personas.account_a, contoso, title="Bravo", severity="Low", status="Done", sync_state="failed")
    incident(personas.account_a, globex, title="Charlie", severity="Low", status="Open", sync_state="pending")

    def titles(**params) -> set[str]:
        html = text(admin_page.get(INCIDENTS, params, **HX))
        return {t for t in ("Alpha", "Bravo", "Charlie") if f">{t}</a>" in html}

    assert titles() == {"Alpha", "Bravo", "Charlie"}
    assert titles(tenant="globex") == {"Charlie"}
    assert titles(tenant="contoso-1") == {"Alpha", "Bravo"}
    assert titles(status="Open") == {"Alpha", "Charlie"}
    assert titles(severity="Low") == {"Bravo", "Charlie"}
    assert titles(sync="failed") == {"Bravo"}
    assert titles(tenant="contoso", severity="Low", status="Done") == {"Bravo"}
    assert titles(status="Nonsense") == {"Alpha", "Bravo", "Charlie"}  # an unknown value is no filter
    assert "No incident matches these filters." in text(admin_page.get(INCIDENTS, {"sync": "held"}, **HX))
    html = text(admin_page.get(INCIDENTS, {"severity": "Low"}))
    assert '<option value="Low" selected>Low</option>' in html


def test_incident_detail_shows_sync_history_newest_first_and_notes(personas, admin_page):
    connection = connect(personas.account_a)
    tenant = make_tenant(personas.account_a)
    item = incident(personas.account_a, tenant, sync_state=Incident.Sync.SYNCED)
    other = incident(personas.account_a, tenant, title="Other")
    now = timezone.now()
    IntegrationLog.objects.create(account=personas.account_a, connection=connection, action="ticket.create",
                                  message="Created ticket 5123", subject=f"incident:{item.pk}",
                                  created_at=now - timezone.timedelta(minutes=5))
    IntegrationLog.objects.create(account=personas.account_a, connection=connection, action="ticket.sync",
                                  outcome="ok", message="POST /v4_6_release/apis/3.0/service/tickets → 201",
                                  http_method="POST", http_path="/service/tickets", http_status=201, duration_ms=80,
                                  subject=f"incident:{item.pk}", created_at=now - timezone.timedelta(minutes=6))
    IntegrationLog.objects.create(account=personas.account_a, connection=connection, action="ticket.update",
                                  message="Ticket 5123: status → Done.", subject=f"incident:{item.pk}", created_at=now)
    IntegrationLog.objects.create(account=personas.account_a, action="ticket.create", message="Not this one",
                                  subject=f"incident:{other.pk}")
    IncidentNote.objects.create(incident=item, text="Seen again at 10:00 UTC, count 2.", delivered_at=now)
    html = text(admin_page.get(f"{INCIDENTS}{item.pk}/"))
    history = re.search(r'<table class="table compact" id="sync-history">.*?</table>', html, re.S).group(0)
    assert history.index("status → Done") < history.index("Created ticket 5123") < history.index("→ 201")
    assert "POST /service/tickets → 201 in 80 ms" in history
    assert "Not this one" not in history
    assert "Seen again at 10:00 UTC, count 2." in html and "added to the ticket" in html
    assert "Retry" not in html


def test_retry_a_failed_incident(personas, page_client, deliveries, django_capture_on_commit_callbacks):
    connect(personas.account_a)
    tenant = make_tenant(personas.account_a)
    failed = incident(personas.account_a, tenant, sync_state=Incident.Sync.FAILED, sync_error="PSA said no")
    support = page_client(personas.support)
    assert ">Retry</button>" not in text(support.get(f"{INCIDENTS}{failed.pk}/"))
    assert support.post(f"{INCIDENTS}{failed.pk}/retry/").status_code == 403
    client = page_client(personas.operator)
    html = text(client.get(f"{INCIDENTS}{failed.pk}/"))
    assert f'action="{INCIDENTS}{failed.pk}/retry/"' in html and ">Retry</button>" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{INCIDENTS}{failed.pk}/retry/", follow=True)
    assert f"Incident #{failed.pk} queued again" in text(response)
    failed.refresh_from_db()
    assert (failed.sync_state, failed.sync_error) == (Incident.Sync.PENDING, "") and deliveries == [failed.pk]
    # While it is on its way the sync panel polls; retrying it again says there is nothing to retry.
    assert f'hx-get="{INCIDENTS}{failed.pk}/sync/" hx-trigger="every 2s"' in text(client.get(f"{INCIDENTS}{failed.pk}/"))
    response = client.post(f"{INCIDENTS}{failed.pk}/retry/", follow=True)
    assert "has not failed (waiting to sync); there is nothing to retry." in text(response)
    assert deliveries == [failed.pk]

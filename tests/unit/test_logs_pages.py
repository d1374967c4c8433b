"""Settings → Logs: the list with its filters and keyset pages, an entry's detail, "Copy for
support", CSV export, deletion, who may see what, and bad input on each of them."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html import unescape

import pytest
import responses
from django.db.models import QuerySet
from django.utils import timezone

from integrations import logs, services
from integrations.base.client import HttpClient, Transport
from integrations.models import IntegrationLog
from tests.factories import make_tenant
from tests.log_rows import link, make_log, make_request_log

pytestmark = pytest.mark.django_db

BASE = "/settings/logs/"
SECRET = "sk_live_9f8e7d6c5b4a3210"


def text(response) -> str:
    return response.content.decode()


def shown_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-entry="(\d+)"', html)]


def warnings_of(html: str) -> str:
    match = re.search(r'<div class="notice warn" role="alert" id="filter-warnings">(.*?)</div>', html, re.S)
    return unescape(match.group(1)) if match else ""


@pytest.fixture
def linked(personas):
    return link(personas.account_a)


@pytest.fixture
def admin_page(personas, page_client):
    return page_client(personas.admin)


# The list ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "operator", "support"])
def test_every_role_reads_its_accounts_log_newest_first(personas, page_client, linked, who):
    old = make_log(personas.account_a, "ticket.create", ago=timedelta(hours=2), message="Created ticket 1")
    new = make_log(personas.account_a, "billing.sync", ago=timedelta(minutes=5), message="Synced billing")
    make_log(personas.account_b, "ticket.create", message="Another MSP's ticket")

    response = page_client(getattr(personas, who)).get(BASE)

    assert response.status_code == 200
    html = text(response)
    assert shown_ids(html) == [new.pk, old.pk]
    assert "Another MSP" not in html
    assert "All accounts" not in html  # members get no account filter


def test_an_empty_log_says_so(personas, admin_page):
    html = text(admin_page.get(BASE))
    assert "Nothing has happened yet" in html


def test_keyset_pages_walk_every_entry_once_even_with_equal_times(personas, admin_page, linked):
    same = timezone.now() - timedelta(minutes=30)
    made = [make_log(personas.account_a, at=same if n % 3 == 0 else None, ago=timedelta(seconds=n)) for n in range(125)]
    seen, url, pages = [], BASE, 0
    while url:
        html = text(admin_page.get(url))
        seen += shown_ids(html)
        pages += 1
        older = re.search(r'<a href="([^"]+)" rel="next"', html)
        url = unescape(older.group(1)) if older else ""
    assert pages == 3
    assert len(seen) == len(set(seen)) == 125
    expected = sorted(made, key=lambda e: (e.created_at, e.pk), reverse=True)
    assert seen == [e.pk for e in expected]


def test_each_filter(personas, admin_page, linked):
    a = personas.account_a
    globex = make_tenant(a, name="Globex", external_id="globex-1")
    t_ok = make_log(a, "ticket.create", tenant=globex, message="Created ticket 77 on board Security")
    t_err = make_log(a, "ticket.sync", outcome="error", message="Incident #5: Cannot find default team")
    b_err = make_log(a, "billing.sync", outcome="error", message="Multiple agreements contain the mapped product")
    req = make_request_log(a, "ticket.sync", status=401, message="POST /service/tickets → 401")
    old = make_log(a, "connection.verify", ago=timedelta(days=3), message="Connected to ConnectWise")

    def ids(query: str) -> set[int]:
        html = text(admin_page.get(BASE + "?" + query))
        assert not warnings_of(html), warnings_of(html)
        return set(shown_ids(html))

    assert ids("tenant=globex-1") == {t_ok.pk}
    assert ids("group=ticket") == {t_ok.pk, t_err.pk, req.pk}
    assert ids("group=billing") == {b_err.pk}
    assert ids("action=connection.verify") == {old.pk}
    assert ids("outcome=error") == {t_err.pk, b_err.pk, req.pk}
    assert ids("status=401") == {req.pk}
    assert ids("q=DEFAULT+team") == {t_err.pk}  # case-insensitive
    assert ids("level=actions") == {t_ok.pk, t_err.pk, b_err.pk, old.pk}
    assert ids("level=requests") == {req.pk}
    assert ids("range=24h") == {t_ok.pk, t_err.pk, b_err.pk, req.pk}
    day = (timezone.now() - timedelta(days=3)).date().isoformat()
    assert ids(f"since={day}&until={day}") == {old.pk}
    assert ids("group=ticket&outcome=error&level=actions") == {t_err.pk}


BAD_FILTERS = [
    ("range", "forever", "Time range “forever” was ignored"),
    ("since", "yesterday", "“yesterday” is not a date or time"),
    ("since", "2024-13-45", "is not a date or time"),
    ("until", "2024-02-30T25:61", "is not a date or time"),
    ("since", "99999-01-01", "is not a date or time"),
    ("tenant", "no-such-tenant", "no tenant with that external ID"),
    ("group", "tickets; DROP TABLE", "was ignored: use one of connection, ticket"),
    ("action", "ticket.<script>", "was ignored"),
    ("outcome", "maybe", "Outcome “maybe” was ignored"),
    ("status", "abc", "PSA HTTP status “abc” was ignored"),
    ("status", "99999", "PSA HTTP status “99999” was ignored"),
    ("status", "-1", "was ignored"),
    ("q", "ab", "type at least 3 characters"),
    ("q", "abc\x00def", "NUL character"),
    ("level", "everything", "Show “everything” was ignored"),
    ("cursor", "not-a-cursor", "The page link was not valid"),
    ("cursor", "MjAyNC0wMS0wMXxhYmM", "The page link was not valid"),  # "2024-01-01|abc"
    ("account", "abc", "not an account number"),
]


@pytest.mark.parametrize("name,value,message", BAD_FILTERS)
def test_bad_filter_values_are_ignored_with_a_message(personas, admin_page, linked, name, value, message):
    entry = make_log(personas.account_a, message="Still listed")
    response = admin_page.get(BASE, {name: value})
    assert response.status_code == 200
    html = text(response)
    assert message in warnings_of(html)
    assert shown_ids(html) == [entry.pk]  # the filter was dropped, not applied


def test_a_range_that_ends_before_it_starts_drops_its_end(personas, admin_page, linked):
    entry = make_log(personas.account_a)
    html = text(admin_page.get(BASE, {"since": "2030-01-02", "until": "2030-01-01"}))
    assert "ends before it starts" in warnings_of(html)
    assert shown_ids(html) == []  # the start still applies
    html = text(admin_page.get(BASE, {"since": "2000-01-01", "until": "1999-01-01"}))
    assert shown_ids(html) == [entry.pk]
    assert 'name="since" value="2000-01-01T00:00"' in html  # shown back in the form


def test_a_very_long_search_is_shortened(personas, admin_page, linked):
    html = text(admin_page.get(BASE, {"q": "x" * 5000}))
    assert "shortened to its first 200 characters" in warnings_of(html)


@pytest.mark.parametrize("value", ["{b}", "all"])
def test_a_member_asking_for_another_account_gets_404(personas, page_client, linked, value):
    make_log(personas.account_b, message="B's secret business")
    client = page_client(personas.support)
    value = value.format(b=personas.account_b.pk)
    assert client.get(BASE, {"account": value}).status_code == 404
    assert client.get(BASE + "export.csv", {"account": value}).status_code == 404
    # Naming their own account is fine.
    assert client.get(BASE, {"account": personas.account_a.pk}).status_code == 200


def test_vendor_staff_read_every_account_and_filter_by_account(personas, page_client, linked):
    a = make_log(personas.account_a, message="From A")
    b = make_log(personas.account_b, message="From B")
    client = page_client(personas.staff)

    html = text(client.get(BASE, {"account": "all"}))
    assert set(shown_ids(html)) >= {a.pk, b.pk}
    assert "<th>Account</th>" in html and "Acme IT" in html and "Other MSP" in html
    assert shown_ids(text(client.get(BASE, {"account": personas.account_b.pk}))) == [b.pk]
    html = text(client.get(BASE, {"account": "all", "tenant": "x-1"}))
    assert "choose an account first" in warnings_of(html)
    html = text(client.get(BASE, {"account": "987654"}))
    assert "there is no such account" in warnings_of(html)


def test_signed_out_people_are_sent_to_sign_in(client):
    response = client.get(BASE)
    assert response.status_code == 302 and response.url.startswith("/login/")


# An entry --------------------------------------------------------------------------------------------


def test_entry_detail_shows_the_action_and_every_psa_request(personas, admin_page, linked):
    a = personas.account_a
    tenant = make_tenant(a, name="Initech", external_id="initech")
    cid = "c0ffee0123456789"
    first = make_request_log(a, "ticket.sync", method="GET", path="/service/tickets?conditions=summary", status=200,
                             correlation_id=cid, response_excerpt='[]', ago=timedelta(seconds=3))
    second = make_request_log(a, "ticket.sync", method="POST", path="/service/tickets", status=400, correlation_id=cid,
                              request_excerpt='{"summary": "Phishing"}',
                              response_excerpt='{"code": "InvalidObject", "message": "Cannot find default team"}',
                              ago=timedelta(seconds=2))
    action = make_log(a, "ticket.sync", outcome="error", tenant=tenant, correlation_id=cid, subject="incident:42",
                      message="Incident #42: ConnectWise could not create the ticket: the Service Board has no "
                              "Default Team.")
    # Same correlation id in another account: never shown here.
    make_request_log(personas.account_b, "ticket.sync", path="/other-account", correlation_id=cid)

    html = text(admin_page.get(f"{BASE}{action.pk}/"))

    assert "Incident #42: ConnectWise could not create the ticket" in html
    assert "Sending an incident to the PSA for incident #42 (tenant “Initech”)." in html
    assert cid in html
    assert "/other-account" not in html
    assert html.count('class="psa-request') == 2
    assert "GET /service/tickets?conditions=summary" in html and "POST /service/tickets" in html
    assert "&quot;InvalidObject&quot;" in html  # the body, escaped in a <pre>
    assert "in 42 ms" in html
    assert f'href="/settings/tenants/{tenant.pk}/"' in html
    assert 'href="/settings/incidents/42/"' in html  # the ticketing pages' incident_detail
    assert "Likely fix — Set the board&#x27;s Default Team" in html
    # From a request row, the action it belongs to is one click away.
    html = text(admin_page.get(f"{BASE}{second.pk}/"))
    assert "Entries of this action" in html and f'href="{BASE}{action.pk}/"' in html
    assert first.pk and second.pk


def test_an_unknown_subject_or_a_page_not_built_yet_gives_no_link(personas, admin_page, linked):
    entry = make_log(personas.account_a, "billing.sync", subject="billing_run:7")
    html = text(admin_page.get(f"{BASE}{entry.pk}/"))
    assert "Billing run #7" in html
    assert logs.subject_url("billing_run:7") in ("", "/settings/billing/runs/7/")
    assert logs.subject_url("nonsense") == "" and logs.subject_url("incident:abc") == ""


def test_html_in_a_message_is_escaped_everywhere(personas, admin_page, linked):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    entry = make_log(personas.account_a, message=f"Incident title {evil}", response_excerpt=evil,
                     http_method="POST", http_path="/x", http_status=500, outcome="error")
    for url in (BASE, f"{BASE}{entry.pk}/", f"{BASE}copy/?id={entry.pk}"):
        html = text(admin_page.get(url))
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(" in html


def test_secrets_are_redacted_when_the_request_is_logged(personas, admin_page, linked):
    """A PSA request carrying the key in a header, the query and the body, and a PSA echoing
    it back: the row request_logger writes holds none of it, so no page can show it."""
    transport = Transport(allow_private=True, on_request=services.request_logger(linked, "ticket.create", "cid-secret"))
    client = HttpClient("https://psa.example.com/api", transport=transport, secrets=[SECRET])
    with responses.RequestsMock() as mock:
        mock.post("https://psa.example.com/api/tickets", status=400,
                  json={"message": f"bad key {SECRET}", "password": "hunter2-other"})
        with pytest.raises(Exception):
            client.request("POST", "tickets", params={"api_key": SECRET},
                           json={"summary": "x", "private_key": SECRET, "note": f"key is {SECRET}"},
                           headers={"Authorization": f"Basic {SECRET}"})
    row = IntegrationLog.objects.get(correlation_id="cid-secret")
    stored = " ".join([row.message, row.http_path, row.request_excerpt, row.response_excerpt])
    assert SECRET not in stored and "hunter2-other" not in stored
    assert "[redacted]" in row.request_excerpt and "[redacted]" in row.response_excerpt
    for url in (BASE, f"{BASE}{row.pk}/", f"{BASE}copy/?id={row.pk}", f"{BASE}export.csv"):
        body = b"".join(admin_page.get(url).streaming_content) if url.endswith(".csv") else admin_page.get(url).content
        assert SECRET.encode() not in body
    assert "[redacted]" in text(admin_page.get(f"{BASE}{row.pk}/"))


@pytest.mark.parametrize("who", ["support", "outsider"])
def test_another_accounts_entry_is_404(personas, page_client, linked, who):
    entry = make_log(personas.account_b if who == "support" else personas.account_a)
    assert page_client(getattr(personas, who)).get(f"{BASE}{entry.pk}/").status_code == 404


def test_staff_open_any_accounts_entry(personas, page_client, linked):
    entry = make_log(personas.account_b, message="From B")
    html = text(page_client(personas.staff).get(f"{BASE}{entry.pk}/"))
    assert "From B" in html and "Delete this entry" not in html


# Copy for support ------------------------------------------------------------------------------------


def test_copy_for_support_gives_a_plain_text_block_of_the_chosen_entries(personas, admin_page, linked):
    a = personas.account_a
    cid = "feedfacecafe0001"
    make_request_log(a, "ticket.sync", status=400, correlation_id=cid, response_excerpt='{"message": "no team"}')
    chosen = make_log(a, "ticket.sync", outcome="error", correlation_id=cid, subject="incident:9",
                      message="Incident #9: Cannot find default team")
    other = make_log(a, "billing.sync", outcome="error", message="Multiple agreements contain the product")
    not_chosen = make_log(a, message="Not chosen")
    foreign = make_log(personas.account_b, message="B's entry")

    html = text(admin_page.get(f"{BASE}copy/", {"id": [chosen.pk, other.pk, foreign.pk]}))

    block = unescape(re.search(r'<textarea id="support-text"[^>]*>(.*?)</textarea>', html, re.S).group(1))
    assert "Account: Acme IT" in block and "PSA: ConnectWise Manage (company_id=acme, site=acme.example.com)" in block
    assert f"#{chosen.pk}" in block and "Incident #9: Cannot find default team" in block
    assert "Correlation id: feedfacecafe0001" in block and "POST /service/tickets -> 400" in block
    assert "About: Incident #9" in block and "Multiple agreements" in block
    assert "Not chosen" not in block and "B's entry" not in block
    assert "Some entries were not found" in html
    assert 'id="copy-button"' in html
    assert not_chosen.pk


def test_copy_with_bad_ids_says_so(personas, admin_page, linked):
    entry = make_log(personas.account_a, message="Kept")
    html = text(admin_page.get(f"{BASE}copy/", {"id": [entry.pk, "abc", "1; DROP"]}))
    assert "ids must be numbers" in html and "Kept" in html
    html = text(admin_page.get(f"{BASE}copy/"))
    assert "No entries chosen" in html


# CSV export --------------------------------------------------------------------------------------------


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("who", ["admin", "support"])
def test_export_is_the_filtered_view(personas, page_client, linked, who):
    a = personas.account_a
    make_log(a, "ticket.create", message="ok one")
    bad = make_log(a, "billing.sync", outcome="error", message="=HYPERLINK(\"http://evil\")")
    make_log(personas.account_b, "billing.sync", outcome="error", message="B's")

    response = page_client(getattr(personas, who)).get(f"{BASE}export.csv", {"outcome": "error"})

    rows = csv_rows(response)
    assert "attachment;" in response["Content-Disposition"]
    assert rows[0] == logs.CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == [str(bad.pk)]
    assert rows[1][logs.CSV_COLUMNS.index("message")] == "'=HYPERLINK(\"http://evil\")"  # not a formula


def test_export_is_capped(personas, admin_page, linked, settings):
    settings.HUB_LOG_EXPORT_MAX_ROWS = 7
    for n in range(10):
        make_log(personas.account_a, ago=timedelta(seconds=n))
    rows = csv_rows(admin_page.get(f"{BASE}export.csv"))
    assert len(rows) == 1 + 7 + 1 and rows[-1][0].startswith("# Stopped at 7 rows")
    settings.HUB_LOG_EXPORT_MAX_ROWS = 10
    rows = csv_rows(admin_page.get(f"{BASE}export.csv"))
    assert len(rows) == 11 and not rows[-1][0].startswith("#")


def test_export_with_bad_filters_still_exports(personas, admin_page, linked):
    make_log(personas.account_a)
    response = admin_page.get(f"{BASE}export.csv", {"status": "lots", "since": "then"})
    assert len(csv_rows(response)) == 2 and response["X-Hub-Filter-Warnings"] == "2"


def test_staff_may_export_any_account(personas, page_client, linked):
    b = make_log(personas.account_b, message="B's")
    rows = csv_rows(page_client(personas.staff).get(f"{BASE}export.csv", {"account": personas.account_b.pk}))
    assert [r[0] for r in rows[1:]] == [str(b.pk)]


# Deleting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["support", "operator", "staff"])
def test_only_admins_delete_entries(personas, page_client, linked, who):
    entry = make_log(personas.account_a)
    assert page_client(getattr(personas, who)).post(f"{BASE}{entry.pk}/delete/").status_code == 403
    assert IntegrationLog.objects.filter(pk=entry.pk).exists()


def test_a_support_user_cannot_delete_another_accounts_entry(personas, page_client, linked):
    entry = make_log(personas.account_b)
    assert page_client(personas.support).post(f"{BASE}{entry.pk}/delete/").status_code == 403
    assert page_client(personas.outsider).get(f"{BASE}{entry.pk}/").status_code == 200  # B's admin reads it
    assert IntegrationLog.objects.filter(pk=entry.pk).exists()


def test_an_admin_cannot_delete_another_accounts_entry(personas, admin_page, linked):
    entry = make_log(personas.account_b)
    assert admin_page.post(f"{BASE}{entry.pk}/delete/").status_code == 404
    assert IntegrationLog.objects.filter(pk=entry.pk).exists()


def test_an_admin_deletes_an_entry_and_the_log_says_so(personas, admin_page, linked):
    entry = make_log(personas.account_a, "ticket.create", message="Oops, a secret")
    assert admin_page.get(f"{BASE}{entry.pk}/delete/").status_code == 405
    response = admin_page.post(f"{BASE}{entry.pk}/delete/")
    assert response.status_code == 302
    assert not IntegrationLog.objects.filter(pk=entry.pk).exists()
    tombstone = IntegrationLog.objects.for_account(personas.account_a).get(action="log.delete")
    assert f"Log entry #{entry.pk} (ticket.create, ok," in tombstone.message and "alice@acme.example" in tombstone.message


# Health at a glance on the Integrations page ---------------------------------------------------------------


def test_the_integrations_page_shows_health_at_a_glance(personas, page_client, linked):
    a = personas.account_a
    make_log(a, "ticket.create", ago=timedelta(hours=3), message="Created ticket 1")
    for n in range(5):
        make_log(a, "ticket.sync", outcome="error", ago=timedelta(minutes=50 - n),
                 message=f"Incident #{n}: ConnectWise could not create the ticket: Cannot find default team for board")
    make_log(a, "connection.verify", ago=timedelta(days=2), message="Connected")

    html = text(page_client(personas.support).get("/settings/integrations/"))

    panel = re.search(r'<div class="card health".*?</table>', html, re.S).group(0)
    tickets = re.search(r'<tr data-kind="tickets">(.*?)</tr>', panel, re.S).group(1)
    assert "3\xa0hours ago" in tickets and "5 failures" in tickets
    link_to_failures = unescape(re.search(r'<a href="([^"]+)" class="failures-link"', tickets).group(1))
    assert link_to_failures.startswith(BASE) and "group=ticket" in link_to_failures and "outcome=error" in link_to_failures
    assert 'data-streak="tickets"' in panel and "The last 5 tickets actions all failed" in panel
    assert "Set the board&#x27;s Default Team" in panel
    verification = re.search(r'<tr data-kind="verification">(.*?)</tr>', panel, re.S).group(1)
    assert "2\xa0days ago" in verification
    # The link leads to exactly those failures.
    listed = shown_ids(text(page_client(personas.support).get(link_to_failures)))
    assert len(listed) == 5


@pytest.mark.parametrize("window,fallback,timeout", [(5, 0, False), (1000, 0, False), (5, 100, True), (5, 8, True)])
def test_the_search_path_gives_the_same_pages_as_a_plain_scan(personas, linked, monkeypatch, window, fallback, timeout):
    """PostgreSQL's search path (logs._search_page): newest rows first, then every match
    through the trigram index, or past its time limit a bounded scan; each path gives the
    plain query's pages (the bounded scan only as far back as it looked, and says so)."""
    from django.db import OperationalError
    from django.http import QueryDict

    a = personas.account_a
    for n in range(40):
        make_log(a, ago=timedelta(minutes=n), message=f"{'Cannot find default team' if n % 7 == 3 else 'Created'} #{n}")
    monkeypatch.setattr(logs, "SEARCH_WINDOW", window)
    monkeypatch.setattr(logs, "SEARCH_FALLBACK", fallback)
    if timeout:
        real_sorted = sorted

        def too_slow(rows, **kwargs):
            if isinstance(rows, QuerySet):
                raise OperationalError("canceling statement due to statement timeout")
            return real_sorted(rows, **kwargs)

        monkeypatch.setattr(logs, "sorted", too_slow, raising=False)

    class Member:
        is_staff = False

    filters = logs.parse_filters(QueryDict("q=default+team"), user=Member(), account=a)
    filters.page_size = 2
    walked, expected = [], list(logs.filtered(filters).values_list("id", flat=True))
    while True:
        rows = logs._search_page(filters)
        walked += [r.pk for r in rows[: filters.page_size]]
        if len(rows) <= filters.page_size:
            break
        filters.cursor = (rows[filters.page_size - 1].created_at, rows[filters.page_size - 1].pk)
    assert len(expected) == 6
    if fallback == 8:  # looked only 8 rows back from each cursor: the walk stops early, with a warning
        assert walked == expected[: len(walked)] and len(walked) < 6
        assert "looked through the newest 8 entries" in " ".join(filters.warnings)
    else:
        assert walked == expected


def test_the_trigram_index_exists_on_postgresql_only():
    from django.db import connection

    with connection.cursor() as cursor:
        names = {index for index in connection.introspection.get_constraints(cursor, "integrations_integrationlog")}
    assert ("log_message_trgm" in names) == (connection.vendor == "postgresql")
    assert "log_account_created" in names and "log_account_group" in names

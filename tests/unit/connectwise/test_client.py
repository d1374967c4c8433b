"""ConnectWiseClient: the exact headers, CW's error bodies turned into the hub's errors, retries,
paging, and secrets kept out of every message and request record."""

from __future__ import annotations

import pytest
import requests

from integrations.base import netguard
from integrations.base.errors import (
    AuthFailedError,
    InvalidError,
    PermissionMissingError,
    RateLimitedError,
    UnavailableError,
)
from integrations.connectwise.client import ConnectWiseClient
from tests.unit.connectwise.support import (
    API,
    CLIENT_ID,
    CONFIG,
    PRIVATE_KEY,
    assert_no_secret,
    auth,
    fixture,
    query,
    unauthenticated,
)


def make_client(recorder, **kwargs) -> ConnectWiseClient:
    return ConnectWiseClient(
        api_url="https://api-na.myconnectwise.net",
        company_id="acme",
        public_key=CONFIG["public_key"],
        private_key=PRIVATE_KEY,
        client_id=CLIENT_ID,
        codebase="v2025_1/",
        transport=recorder.transport(**kwargs),
    )


def test_every_request_carries_basic_auth_the_client_id_and_the_pinned_version(mocked_responses, recorder):
    mocked_responses.get(API + "system/info", json=fixture("system_info.json"), match=[auth()])

    info = make_client(recorder).system_info()

    assert info["version"].startswith("v2025.1")
    sent = mocked_responses.calls[0].request
    assert sent.url == "https://api-na.myconnectwise.net/v2025_1/apis/3.0/system/info"
    assert sent.headers["Accept"] == "application/vnd.connectwise.com+json; version=2025.1"


def test_companyinfo_is_sent_without_credentials(mocked_responses, recorder):
    mocked_responses.get(
        "https://na.myconnectwise.net/login/companyinfo/acme", json=fixture("companyinfo.json"), match=[unauthenticated]
    )

    info = make_client(recorder).company_info("https://na.myconnectwise.net", "acme")

    assert info["Codebase"] == "v2025_1/"


def test_wrong_keys_become_authentication_failed_naming_what_to_check(mocked_responses, recorder):
    mocked_responses.get(API + "system/info", status=401, json=fixture("error_unauthenticated.json"))

    with pytest.raises(AuthFailedError) as caught:
        make_client(recorder).system_info()

    assert str(caught.value) == (
        "Authentication failed: Verify Company ID, Site URL, Public and Private keys. Regenerate keys if needed. "
        "ConnectWise said: ConnectWiseApi: UserNotAuthenticated"
    )
    assert caught.value.permanent
    assert len(mocked_responses.calls) == 1  # a refused login is never retried
    assert_no_secret(str(caught.value), caught.value.vendor_message, recorder.text())


def test_a_secret_echoed_by_connectwise_is_redacted_everywhere(mocked_responses, recorder):
    echo = {"code": "Unauthorized", "message": f"Key {PRIVATE_KEY} for client {CLIENT_ID} is not valid"}
    mocked_responses.get(API + "system/info", status=401, json=echo)

    with pytest.raises(AuthFailedError) as caught:
        make_client(recorder).system_info()

    assert "[redacted]" in str(caught.value)
    assert_no_secret(str(caught.value), caught.value.vendor_message, recorder.text())
    assert recorder.records[0].status == 401
    assert recorder.records[0].path == "/v2025_1/apis/3.0/system/info"


def test_403_on_priorities_names_the_permission_in_the_seed_words(mocked_responses, recorder):
    mocked_responses.get(API + "service/priorities", status=403, json=fixture("error_security.json"))

    with pytest.raises(PermissionMissingError) as caught:
        list(make_client(recorder).priorities())

    error = caught.value
    assert str(error) == (
        "ConnectWise API user does not have permission to access Service > Priority. In ConnectWise: System > "
        "Security Roles > your API role > Table Setup (customize): allow Service / Priority."
    )
    assert error.which == "Service > Priority"
    assert error.vendor_message == "Security: You do not have security permission to perform this action."


@pytest.mark.parametrize(
    "method, path, which, fix_part",
    [
        ("GET", "service/boards/1/teams", "Service > Service Board", "allow Service / Service Board"),
        ("GET", "service/boards", "Service > Service Board", "allow Service / Service Board"),
        ("GET", "service/sources", "Service > Source", "allow Service / Source"),
        ("GET", "company/companies", "Companies > Company Maintenance", "Company Maintenance Inquire Level to All"),
        ("GET", "company/contacts", "Companies > Contacts", "Contacts Inquire Level to All"),
        ("GET", "service/tickets", "Service Desk > Service Tickets", "Service Tickets Inquire Level to All"),
        ("POST", "service/tickets", "Service Desk > Service Tickets (Add)", "Service Tickets Add Level to All"),
        ("PATCH", "service/tickets/5", "Service Desk > Service Tickets (Edit)", "Close service tickets"),
        ("POST", "service/tickets/5/notes", "Service Desk > Service Tickets (Edit)", "Edit Level to All"),
        ("GET", "finance/agreements", "Finance > Agreements", "Agreements Inquire Level to All"),
        ("PATCH", "finance/agreements/3/additions/9", "Finance > Agreements (Add, Edit)", "Add and Edit Level"),
        ("GET", "procurement/catalog/701", "Procurement > Product Catalog", "Product Catalog Inquire Level to All"),
        ("POST", "system/callbacks", "System > Callbacks", "Table Setup"),
    ],
)
def test_permission_names_and_menu_paths(recorder, method, path, which, fix_part):
    got_which, fix = make_client(recorder).permission_for(method, f"/v2025_1/apis/3.0/{path}")
    assert got_which == which
    assert fix.startswith("In ConnectWise: System > Security Roles > your API role > ")
    assert fix_part in fix


def test_validation_errors_read_code_message_errors_and_field(mocked_responses, recorder):
    mocked_responses.post(API + "service/tickets", status=400, json=fixture("error_default_team.json"))

    with pytest.raises(InvalidError) as caught:
        make_client(recorder).create_ticket({"summary": "x", "company": {"id": 250}})

    assert caught.value.vendor_message == (
        "InvalidObject: ticket object is invalid - Cannot find default team for board specified (field: board)"
    )
    assert caught.value.field == "board"


def test_ssl_required_means_the_api_prefix_is_missing(mocked_responses, recorder):
    mocked_responses.get(API + "system/info", status=403, json=fixture("error_ssl_required.json"))

    with pytest.raises(InvalidError) as caught:
        make_client(recorder).system_info()

    assert caught.value.field == "site"
    assert "api- host" in str(caught.value)


@pytest.mark.parametrize(
    "content_type, text, expected",
    [
        (
            "text/html",
            "<!DOCTYPE html><html><body>ConnectWise Login</body></html>",
            "answered with a web page (HTTP 200)",
        ),
        ("application/json", "{not json", "answered with something that is not JSON (HTTP 200)"),
    ],
)
def test_an_answer_that_is_not_api_json(mocked_responses, recorder, content_type, text, expected):
    mocked_responses.get(API + "system/info", body=text, content_type=content_type)

    with pytest.raises(UnavailableError) as caught:
        make_client(recorder).system_info()

    assert expected in str(caught.value)
    assert "Check the Site URL/region" in str(caught.value)


def test_timeouts_are_retried_then_say_to_check_the_region(mocked_responses, recorder):
    mocked_responses.get(API + "system/info", body=requests.exceptions.ConnectTimeout("timed out"))

    with pytest.raises(UnavailableError) as caught:
        make_client(recorder).system_info()

    assert str(caught.value).startswith(
        "Could not reach ConnectWise at api-na.myconnectwise.net: the connection timed out. Check the region/URL"
    )
    assert len(mocked_responses.calls) == 4 and len(recorder.sleeps) == 3
    assert not caught.value.permanent


def test_a_host_name_that_does_not_resolve(mocked_responses, recorder):
    failure = requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='api-xx.myconnectwise.net', port=443): NameResolutionError: Name or service not known"
    )
    mocked_responses.get(API + "system/info", body=failure)

    with pytest.raises(UnavailableError) as caught:
        make_client(recorder).system_info()

    assert "the host name could not be found. Check the region/URL" in str(caught.value)


def test_the_guard_refuses_before_sending_when_the_host_cannot_be_found(recorder):
    def resolver(host, port):
        raise netguard.UnavailableError(f"Could not find the host {host}: check the region/URL for typing mistakes.")

    client = make_client(recorder)
    client.transport.resolver = resolver

    with pytest.raises(UnavailableError) as caught:
        client.system_info()

    assert "check the region/URL" in str(caught.value)
    assert recorder.records == []


def test_a_429_storm_backs_off_as_told_and_finishes(mocked_responses, recorder):
    for _ in range(3):
        mocked_responses.get(
            API + "service/priorities", status=429, json=fixture("error_too_many.json"), headers={"Retry-After": "2"}
        )
    mocked_responses.get(API + "service/priorities", json=fixture("priorities.json"), match=[query(pageSize=1000)])

    items = list(make_client(recorder).priorities())

    assert [p["id"] for p in items] == [1, 3]
    assert recorder.sleeps == [2.0, 2.0, 2.0]
    assert [r.status for r in recorder.records] == [429, 429, 429, 200]


def test_a_429_storm_longer_than_the_retries_gives_rate_limited(mocked_responses, recorder):
    mocked_responses.get(
        API + "service/priorities", status=429, json=fixture("error_too_many.json"), headers={"Retry-After": "5"}
    )

    with pytest.raises(RateLimitedError) as caught:
        list(make_client(recorder).priorities())

    assert caught.value.retry_after == 5.0
    assert "ConnectWiseAPI: Too many requests" in caught.value.vendor_message
    assert len(mocked_responses.calls) == 4


def test_a_500_is_reported_with_connectwise_words_and_is_not_permanent(mocked_responses, recorder):
    mocked_responses.get(API + "system/info", status=500, json=fixture("error_server.json"))

    with pytest.raises(UnavailableError) as caught:
        make_client(recorder).system_info()

    assert str(caught.value) == (
        "ConnectWise failed (HTTP 500). ConnectWise said: ConnectWiseApi: A timeout has occured. Please try again."
    )
    assert not caught.value.permanent


def test_a_create_whose_answer_is_lost_is_not_sent_twice(mocked_responses, recorder):
    mocked_responses.post(API + "service/tickets", status=503, body="")

    with pytest.raises(UnavailableError) as caught:
        make_client(recorder).create_ticket({"summary": "x", "company": {"id": 250}})

    assert caught.value.outcome_unknown
    assert len(mocked_responses.calls) == 1


def test_paging_follows_the_link_header(mocked_responses, recorder):
    first = API + "company/companies?conditions=deletedFlag%3Dfalse&pageSize=2&page=1"
    page2 = API + "company/companies?conditions=deletedFlag%3Dfalse&pageSize=2&page=2"
    mocked_responses.get(
        API + "company/companies",
        json=fixture("companies.json"),
        headers={"Link": f'<{first}>; rel="first", <{page2}>; rel="next", <{page2}>; rel="last"'},
        match=[query(conditions="deletedFlag=false", pageSize=2), auth()],
    )
    mocked_responses.get(
        API + "company/companies",
        json=fixture("companies_page2.json"),
        headers={"Link": f'<{first}>; rel="first", <{first}>; rel="prev", <{page2}>; rel="last"'},
        match=[query(conditions="deletedFlag=false", pageSize=2, page=2), auth()],
    )

    ids = [c["id"] for c in make_client(recorder).companies(conditions="deletedFlag=false", page_size=2)]

    assert ids == [250, 251, 252]
    assert mocked_responses.calls[1].request.url == page2


def test_paging_never_follows_a_link_to_another_host(mocked_responses, recorder):
    elsewhere = "https://attacker.example/v2025_1/apis/3.0/company/companies?pageSize=2&page=2"
    mocked_responses.get(
        API + "company/companies",
        json=fixture("companies.json"),
        headers={"Link": f'<{elsewhere}>; rel="next"'},
        match=[query(pageSize=2)],
    )
    mocked_responses.get(API + "company/companies", json=[], match=[query(pageSize=2, page=2), auth()])

    ids = [c["id"] for c in make_client(recorder).companies(page_size=2)]

    assert ids == [250, 251]
    assert all("attacker" not in call.request.url for call in mocked_responses.calls)


def test_ids_in_paths_must_be_numbers(recorder):
    with pytest.raises(InvalidError):
        make_client(recorder).ticket("5000/../../system/members")


def test_request_records_keep_the_query_but_no_secret(mocked_responses, recorder):
    mocked_responses.get(API + "service/tickets", json=[], match=[query(conditions='externalXRef="hub-1"', pageSize=1)])

    list(make_client(recorder).tickets(conditions='externalXRef="hub-1"', page_size=1))

    record = recorder.records[0]
    assert record.method == "GET" and record.status == 200
    assert "externalXRef" in record.path
    assert_no_secret(recorder.text())

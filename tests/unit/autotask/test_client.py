"""Zone discovery and the Autotask client against strict `responses`: exact requests, and every
way Autotask says no (401, 500 with an errors array, HTML, timeouts, 429 storms)."""

from __future__ import annotations

import json

import pytest
import requests
from responses import matchers

from integrations.autotask import zones
from integrations.autotask.client import AUTH_HINT, AutotaskClient, query_all, query_body
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    PermissionMissingError,
    RateLimitedError,
    UnavailableError,
)
from tests.unit.autotask.conftest import (
    API,
    CODE,
    DISCOVERY,
    SECRET,
    USERNAME,
    ZONE,
    assert_no_secret,
    assert_request,
    fixture,
)

ALL = {"op": "gte", "field": "id", "value": 0}


@pytest.fixture
def client(transport) -> AutotaskClient:
    return AutotaskClient(API, username=USERNAME, secret=SECRET, integration_code=CODE, transport=transport)


# --- zone discovery ------------------------------------------------------------------------------


def test_zone_discovery_asks_with_the_username_only(mocked_responses, transport, records):
    mocked_responses.get(
        DISCOVERY + "v1.0/zoneInformation",
        match=[matchers.query_param_matcher({"user": USERNAME})],
        json=fixture("zone_information.json"),
    )
    zone = zones.discover(USERNAME, discovery_url=DISCOVERY, transport=transport)
    assert zone == zones.Zone(name="America West 3", url=ZONE, web_url="https://ww14.autotask.net/", ci=3)
    assert zone.api_url == API
    request = mocked_responses.calls[0].request
    assert request.url == DISCOVERY + "v1.0/zoneInformation?user=hubapi%40acme-msp.example"
    # No credentials travel to discovery: it needs none.
    assert not {"Secret", "ApiIntegrationCode", "UserName"} & set(request.headers)
    assert [r.status for r in records] == [200]


def test_zone_url_without_trailing_slash_still_gives_the_versioned_base(mocked_responses, transport):
    body = {**fixture("zone_information.json"), "url": "https://webservices2.autotask.net/ATServicesRest"}
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", json=body)
    zone = zones.discover(USERNAME, discovery_url=DISCOVERY, transport=transport)
    assert zone.api_url == "https://webservices2.autotask.net/ATServicesRest/V1.0/"


def test_unknown_username_names_it(mocked_responses, transport):
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", status=500, json=fixture("zone_unknown_user.json"))
    with pytest.raises(AuthFailedError) as caught:
        zones.discover("nobody@acme.example", discovery_url=DISCOVERY, transport=transport)
    assert str(caught.value).startswith("Authentication failed: Autotask does not know the Username “nobody@acme.example”.")
    assert len(mocked_responses.calls) == 1  # never retried


def test_blank_username_is_refused_without_a_call(mocked_responses, transport):
    with pytest.raises(AuthFailedError, match="enter the Username"):
        zones.discover("  ", discovery_url=DISCOVERY, transport=transport)


def test_zone_discovery_answering_html(mocked_responses, transport):
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", body="<html><body>Maintenance</body></html>", status=200)
    with pytest.raises(UnavailableError, match="answered with a web page"):
        zones.discover(USERNAME, discovery_url=DISCOVERY, transport=transport)


def test_zone_discovery_without_url(mocked_responses, transport):
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", json={"zoneName": "x"})
    with pytest.raises(UnavailableError, match="without an API address"):
        zones.discover(USERNAME, discovery_url=DISCOVERY, transport=transport)


# --- headers and reads ---------------------------------------------------------------------------


def test_every_call_carries_the_three_headers(mocked_responses, client, records):
    mocked_responses.get(API + "ThresholdInformation", json=fixture("threshold_information.json"))
    assert client.threshold_information()["externalRequestThreshold"] == 10000
    assert_request(mocked_responses.calls[0], method="GET", url=API + "ThresholdInformation")
    assert_no_secret(records)


def test_query_is_a_post_with_the_filter_body(mocked_responses, client):
    body = query_body([ALL], max_records=1, include_fields=["companyName"])
    mocked_responses.post(API + "Companies/query", json={"items": [], "pageDetails": {"count": 0, "nextPageUrl": None}})
    client.query("Companies", body)
    assert_request(
        mocked_responses.calls[0],
        method="POST",
        url=API + "Companies/query",
        body={"filter": [ALL], "MaxRecords": 1, "IncludeFields": ["id", "companyName"]},
    )


def test_a_query_is_retried_like_a_read(mocked_responses, client, records):
    mocked_responses.post(API + "Companies/query", status=503)
    mocked_responses.post(API + "Companies/query", json={"items": [{"id": 1}], "pageDetails": {"nextPageUrl": None}})
    assert client.query("Companies", query_body([ALL]))["items"] == [{"id": 1}]
    assert [r.status for r in records] == [503, 200]


def test_impersonation_only_on_writes(mocked_responses, transport):
    client = AutotaskClient(
        API, username=USERNAME, secret=SECRET, integration_code=CODE, transport=transport, impersonation_resource_id="29682885"
    )
    mocked_responses.post(API + "Tickets/query", json={"items": [], "pageDetails": {"nextPageUrl": None}})
    mocked_responses.get(API + "Tickets/7", json={"item": {"id": 7}})
    mocked_responses.patch(API + "Tickets", json={"itemId": 7})
    client.query("Tickets", query_body([ALL]))
    client.item("Tickets", 7)
    client.patch_ticket({"id": 7, "status": 5})
    sent = [call.request.headers.get("ImpersonationResourceId") for call in mocked_responses.calls]
    assert sent == [None, None, "29682885"]


def test_missing_item_is_none_either_way(mocked_responses, client):
    mocked_responses.get(API + "Contracts/1", json={"item": None})
    mocked_responses.get(API + "Contracts/2", status=404, json={"Message": "No HTTP resource was found."})
    assert client.item("Contracts", 1) is None
    assert client.item("Contracts", "2") is None


def test_bucket_is_the_entity_endpoint(client):
    assert client.bucket_for("POST", "/ATServicesRest/V1.0/Tickets/query") == "tickets"
    assert client.bucket_for("POST", "/atservicesrest/v1.0/tickets/42/Notes") == "ticketnotes"
    assert client.bucket_for("POST", "/ATServicesRest/V1.0/Contracts/9/ServiceAdjustments") == "contractserviceadjustments"
    assert client.bucket_for("GET", "/ATServicesRest/V1.0/Companies/query/next") == "companies"
    assert client.bucket_for("GET", "/ATServicesRest/V1.0/ThresholdInformation") == "thresholdinformation"


# --- errors ------------------------------------------------------------------------------------


def test_wrong_secret_is_authentication_failed_and_never_retried(mocked_responses, client, records):
    mocked_responses.post(API + "Companies/query", status=401, body="")
    with pytest.raises(AuthFailedError) as caught:
        client.query("Companies", query_body([ALL], max_records=1))
    assert str(caught.value) == f"Authentication failed: {AUTH_HINT}"
    assert str(caught.value) == (
        "Authentication failed: Re-enter the Username, Password, and Tracking Identifier. "
        "Confirm the user’s Security Level is “API User (system)” in Autotask."
    )
    assert len(mocked_responses.calls) == 1 and records.sleeps == []
    assert_no_secret(records, str(caught.value), caught.value.vendor_message)


def test_wrong_integration_code_names_the_tracking_identifier(mocked_responses, client, records):
    mocked_responses.post(API + "Companies/query", status=500, json=fixture("error_integration_code.json"))
    with pytest.raises(AuthFailedError) as caught:
        client.query("Companies", query_body([ALL]))
    assert "Tracking Identifier" in str(caught.value)
    assert caught.value.vendor_message == "IntegrationCode is invalid."
    assert len(mocked_responses.calls) == 1
    assert_no_secret(records, str(caught.value))


@pytest.mark.parametrize(
    "entity, action, module",
    [("Contracts", "query", "Contracts"), ("Services", "query", "Services"), ("Tickets", "create", "Tickets (Service Desk)")],
)
def test_adequate_permissions_500_names_the_module_and_the_fix(mocked_responses, client, entity, action, module):
    error = {"errors": [f"The logged in Resource does not have the adequate permissions to {action} this entity type."]}
    if action == "query":
        mocked_responses.post(API + f"{entity}/query", status=500, json=error)
        call = lambda: client.query(entity, query_body([ALL]))  # noqa: E731
    else:
        mocked_responses.post(API + entity, status=500, json=error)
        call = lambda: client.create(entity, {"title": "x"})  # noqa: E731
    with pytest.raises(PermissionMissingError) as caught:
        call()
    assert caught.value.which == module
    assert f"does not allow it to {action}" in str(caught.value)
    assert (
        "In Autotask: Admin > Account Settings & Users > Resources/Users > Security Levels: give the API user's "
        f"security level access to {module}."
    ) in str(caught.value)
    assert len(mocked_responses.calls) == 1


def test_403_is_a_missing_permission_too(mocked_responses, client):
    mocked_responses.post(API + "Contracts/query", status=403, body="")
    with pytest.raises(PermissionMissingError) as caught:
        client.query("Contracts", query_body([ALL]))
    assert caught.value.which == "Contracts"


def test_business_error_with_a_field_is_invalid(mocked_responses, client):
    mocked_responses.post(API + "Tickets", status=500, json=fixture("error_picklist.json"))
    with pytest.raises(InvalidError) as caught:
        client.create_ticket({"companyID": 1, "title": "t", "status": 1, "priority": 3})
    assert caught.value.field == "priority"
    assert str(caught.value) == "Autotask rejected the value of priority: Picklist value [3] does not exist for priority"
    assert len(mocked_responses.calls) == 1  # a 500 with errors is an answer, not an outage


def test_business_error_without_a_field_is_blocked_with_autotasks_words(mocked_responses, client):
    mocked_responses.post(
        API + "Contracts/5/ServiceAdjustments", status=500, json={"errors": ["An unexpected error has occurred."]}
    )
    with pytest.raises(BlockedError) as caught:
        client.create_service_adjustment(5, {"contractID": 5, "serviceID": 1, "unitChange": 1, "effectiveDate": "x"})
    assert str(caught.value) == "Autotask refused the request: An unexpected error has occurred."


def test_500_without_errors_is_unavailable(mocked_responses, client):
    mocked_responses.post(API + "Companies/query", status=500, body="")
    with pytest.raises(UnavailableError, match=r"Autotask failed \(HTTP 500\)"):
        client.query("Companies", query_body([ALL]))


def test_html_answer_is_not_api_data(mocked_responses, client):
    mocked_responses.post(API + "Companies/query", body="<!DOCTYPE html><html>Sign in</html>", content_type="text/html")
    with pytest.raises(UnavailableError, match="answered with a web page"):
        client.query("Companies", query_body([ALL]))


def test_invalid_json_answer(mocked_responses, client):
    mocked_responses.post(API + "Companies/query", body="{items: [", content_type="application/json")
    with pytest.raises(UnavailableError, match="something that is not JSON"):
        client.query("Companies", query_body([ALL]))


def test_timeout_of_a_read_is_retried_then_reported(mocked_responses, client, records):
    for _ in range(4):
        mocked_responses.get(API + "ThresholdInformation", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UnavailableError) as caught:
        client.threshold_information()
    assert "Could not reach Autotask at webservices14.autotask.net: the connection timed out" in str(caught.value)
    assert len(records.sleeps) == 3
    assert_no_secret(records, str(caught.value))


def test_timeout_of_a_create_is_outcome_unknown_and_not_retried(mocked_responses, client):
    mocked_responses.post(API + "Tickets", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UnavailableError) as caught:
        client.create_ticket({"companyID": 1, "title": "t"})
    assert caught.value.outcome_unknown
    assert len(mocked_responses.calls) == 1


def test_429_storm_backs_off_honouring_retry_after_and_finishes(mocked_responses, client, records):
    for wait in ("2", "3", "1"):
        mocked_responses.post(API + "Tickets/query", status=429, headers={"Retry-After": wait}, json={"errors": ["slow down"]})
    mocked_responses.post(API + "Tickets/query", json={"items": [{"id": 9}], "pageDetails": {"nextPageUrl": None}})
    assert client.query("Tickets", query_body([ALL]))["items"] == [{"id": 9}]
    assert records.sleeps == [2.0, 3.0, 1.0]
    assert [r.status for r in records] == [429, 429, 429, 200]


def test_429_storm_that_does_not_end_is_rate_limited(mocked_responses, client, records):
    for _ in range(4):
        mocked_responses.post(API + "Tickets/query", status=429, body="")
    with pytest.raises(RateLimitedError):
        client.query("Tickets", query_body([ALL]))
    assert len(records.sleeps) == 3 and all(s <= 30 for s in records.sleeps)


def test_long_retry_after_is_handed_back_instead_of_slept(mocked_responses, client, records):
    mocked_responses.post(API + "Tickets/query", status=429, headers={"Retry-After": "600"}, body="")
    with pytest.raises(RateLimitedError) as caught:
        client.query("Tickets", query_body([ALL]))
    assert caught.value.retry_after == 600 and records.sleeps == []


# --- paging ------------------------------------------------------------------------------------


def _page(ids, next_url=None):
    return {"items": [{"id": i} for i in ids], "pageDetails": {"count": len(ids), "requestCount": 2, "nextPageUrl": next_url}}


def test_post_query_continues_with_post_and_the_same_body(mocked_responses, client):
    body = query_body([ALL], max_records=2)
    next1 = API + "Companies/query/next?paging=abc"
    next2 = API + "Companies/query/next?paging=def"
    mocked_responses.post(API + "Companies/query", match=[matchers.json_params_matcher(body)], json=_page([1, 2], next1))
    mocked_responses.post(next1, match=[matchers.json_params_matcher(body)], json=_page([3, 4], next2))
    mocked_responses.post(next2, match=[matchers.json_params_matcher(body)], json=_page([5]))
    assert [r["id"] for r in query_all(client, "Companies", body)] == [1, 2, 3, 4, 5]
    for call in mocked_responses.calls:
        assert_request(call, method="POST", url=call.request.url, body=body)
    assert [c.request.url for c in mocked_responses.calls] == [API + "Companies/query", next1, next2]


def test_get_query_continues_with_get(mocked_responses, client):
    body = query_body([ALL], max_records=2)
    search = json.dumps(body, separators=(",", ":"))
    next1 = API + "Companies/query/next?paging=xyz"
    mocked_responses.get(API + "Companies/query", match=[matchers.query_param_matcher({"search": search})], json=_page([1, 2], next1))
    mocked_responses.get(next1, json=_page([3]))
    assert [r["id"] for r in query_all(client, "Companies", body, method="GET")] == [1, 2, 3]
    assert_request(mocked_responses.calls[1], method="GET", url=next1)


def test_next_page_on_another_host_is_not_followed(mocked_responses, client, records):
    body = query_body([ALL])
    mocked_responses.post(API + "Companies/query", json=_page([1], "https://evil.example/ATServicesRest/V1.0/Companies/query/next?p=1"))
    with pytest.raises(UnavailableError, match="another host"):
        list(query_all(client, "Companies", body))
    assert len(mocked_responses.calls) == 1


def test_records_never_hold_a_secret_even_when_autotask_echoes_it(mocked_responses, client, records):
    mocked_responses.post(API + "Companies/query", status=500, json={"errors": [f"Bad secret {SECRET} for code {CODE}"]})
    with pytest.raises(BlockedError) as caught:
        client.query("Companies", query_body([ALL]))
    assert_no_secret(records, str(caught.value), caught.value.vendor_message)
    assert "[redacted]" in str(caught.value)
    # Headers stay off the record altogether; the request's own headers did carry them.
    assert mocked_responses.calls[0].request.headers["Secret"] == SECRET

"""The one HTTP path (integrations/base/client.py, DESIGN.md rule 2), against strict `responses`.

Every test uses a Transport whose sleep is a recorder and whose resolver answers a public
address, so nothing waits and nothing touches DNS. The strict mock fails a test that leaves a
registered answer unused, and `len(rsps.calls)` pins how many requests were really sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email.utils
import json

import pytest
import requests
import responses
import time_machine
from responses import matchers

from integrations.base import client as client_module
from integrations.base import netguard
from integrations.base.client import HttpClient, RequestRecord, Transport, parse_retry_after
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    PsaError,
    RateLimitedError,
    UnavailableError,
)
from integrations.base.redaction import MASK

BASE = "https://psa.example.com/api"
PUBLIC_IP = "93.184.216.34"
SECRET = "Pr1vate-K3y-9f8e7d6c5b4a"
TRACKING = "TRACKING-CODE-0042-XYZ"
SECRETS = [SECRET, TRACKING]


def public_resolver(host: str, port: int) -> list[str]:
    return [PUBLIC_IP]


def mapped_resolver(table: dict[str, str]):
    """Literal IPs resolve to themselves (as getaddrinfo does); names through `table`."""

    def resolve(host: str, port: int) -> list[str]:
        try:
            netguard.ipaddress.ip_address(host)
            return [host]
        except ValueError:
            return [table.get(host, PUBLIC_IP)]

    return resolve


class RecordingLimiter:
    def __init__(self):
        self.buckets: list[str] = []
        self.active = 0
        self.max_active = 0

    @contextlib.contextmanager
    def acquire(self, bucket: str):
        self.buckets.append(bucket)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            yield
        finally:
            self.active -= 1


class SecretClient(HttpClient):
    """A vendor client whose credentials ride in headers, like Autotask's."""

    vendor = "TestPSA"
    auth_hint = "Re-check the API key and the tracking code."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.permission_calls: list[tuple[str, str]] = []
        self.bucket_calls: list[tuple[str, str]] = []

    def authorize(self, request: requests.Request) -> None:
        request.headers["Authorization"] = f"Bearer {SECRET}"
        request.headers["Secret"] = TRACKING

    def permission_for(self, method: str, path: str) -> tuple[str, str]:
        self.permission_calls.append((method, path))
        return "Service > Priority", "Grant it under System > Security Roles."

    def bucket_for(self, method: str, path: str) -> str:
        self.bucket_calls.append((method, path))
        return "tickets" if "/tickets" in path else "other"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def records() -> list[RequestRecord]:
    return []


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def make_client(sleeps, records, limiter):
    def make(**transport_kwargs) -> SecretClient:
        transport_kwargs.setdefault("resolver", public_resolver)
        transport = Transport(sleep=sleeps.append, limiter=limiter, on_request=records.append, **transport_kwargs)
        return SecretClient(BASE, transport, secrets=SECRETS)

    return make


@pytest.fixture
def client(make_client) -> SecretClient:
    return make_client()


@pytest.fixture
def top_of_jitter(monkeypatch):
    """Make the full-jitter draw return its ceiling, and record the ranges it was asked for."""
    ranges: list[tuple[float, float]] = []

    def uniform(low, high):
        ranges.append((low, high))
        return high

    monkeypatch.setattr(client_module.random, "uniform", uniform)
    return ranges


def url(path: str) -> str:
    return f"{BASE}/{path.lstrip('/')}"


def connection_refused() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='psa.example.com', port=443): Max retries exceeded with url: /api/x "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object>: Failed to establish "
        "a new connection: [Errno 111] Connection refused'))"
    )


def name_not_found() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='psa.example.com', port=443): Max retries exceeded with url: /api/x "
        "(Caused by NameResolutionError(\"<urllib3.connection.HTTPSConnection object>: Failed to resolve "
        "'psa.example.com' ([Errno -2] Name or service not known)\"))"
    )


def aborted() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))"
    )


# --- retries, backoff and jitter --------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_get_is_retried_on_retryable_status_then_succeeds(rsps, client, sleeps, top_of_jitter, status):
    rsps.get(url("companies"), status=status, json={"message": "busy"})
    rsps.get(url("companies"), json=[{"id": 1}])

    assert client.get("companies") == [{"id": 1}]
    assert len(rsps.calls) == 2
    assert sleeps == [1.0]  # backoff_base * 2**0, no Retry-After given


@pytest.mark.parametrize("status", [500, 501, 505])
def test_other_server_errors_are_not_retried(rsps, client, sleeps, status):
    rsps.get(url("companies"), status=status, json={"message": "boom"})

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    assert len(rsps.calls) == 1
    assert sleeps == []
    assert f"HTTP {status}" in str(caught.value)
    assert "boom" in str(caught.value)


def test_backoff_is_exponential_and_capped(rsps, make_client, sleeps, top_of_jitter):
    client = make_client(max_retries=5, backoff_base=1.0, backoff_cap=5.0)
    for _ in range(5):
        rsps.get(url("companies"), status=503)
    rsps.get(url("companies"), json=[])

    assert client.get("companies") == []
    assert top_of_jitter == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 5.0), (0, 5.0)]
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_uses_full_jitter(rsps, make_client, sleeps):
    client_module.random.seed(1234)
    client = make_client(max_retries=3, backoff_base=1.0, backoff_cap=30.0)
    for _ in range(3):
        rsps.get(url("companies"), status=502)
    rsps.get(url("companies"), json=[])

    client.get("companies")
    assert len(sleeps) == 3
    ceilings = [1.0, 2.0, 4.0]
    for slept, ceiling in zip(sleeps, ceilings):
        assert 0 <= slept <= ceiling
    # Without jitter every client would sleep exactly the ceiling and retry in lock-step.
    assert sleeps != ceilings
    assert len(set(sleeps)) == 3


def test_connection_error_on_get_is_retried(rsps, client, sleeps, top_of_jitter):
    rsps.get(url("companies"), body=connection_refused())
    rsps.get(url("companies"), body=requests.exceptions.ConnectTimeout("connect timed out"))
    rsps.get(url("companies"), json=[{"id": 2}])

    assert client.get("companies") == [{"id": 2}]
    assert len(rsps.calls) == 3
    assert sleeps == [1.0, 2.0]


def test_read_timeout_on_get_is_retried(rsps, client, sleeps, top_of_jitter):
    rsps.get(url("companies"), body=requests.exceptions.ReadTimeout("read timed out"))
    rsps.get(url("companies"), json=[])

    assert client.get("companies") == []
    assert sleeps == [1.0]


def test_dropped_connection_mid_body_on_get_is_retried(rsps, client, sleeps, top_of_jitter):
    rsps.get(url("companies"), body=requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"))
    rsps.get(url("companies"), json=[])

    assert client.get("companies") == []
    assert sleeps == [1.0]


def test_dropped_connection_mid_body_on_post_is_outcome_unknown(rsps, client, sleeps):
    rsps.post(url("tickets"), body=requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"))

    with pytest.raises(UnavailableError) as caught:
        client.request("POST", "tickets", json={"summary": "x"})
    assert caught.value.outcome_unknown is True
    assert len(rsps.calls) == 1
    assert sleeps == []


# --- Retry-After ---------------------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(rsps, client, sleeps, top_of_jitter):
    rsps.get(url("companies"), status=429, headers={"Retry-After": "7"})
    rsps.get(url("companies"), status=503, headers={"Retry-After": "3"})
    rsps.get(url("companies"), json=[])

    client.get("companies")
    assert sleeps == [7.0, 3.0]
    assert top_of_jitter == []  # no backoff drawn when the PSA said how long to wait


def test_retry_after_http_date_is_honoured(rsps, client, sleeps):
    now = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=20), usegmt=True)
    rsps.get(url("companies"), status=429, headers={"Retry-After": later})
    rsps.get(url("companies"), json=[])

    with time_machine.travel(now, tick=False):
        client.get("companies")
    assert sleeps == [pytest.approx(20.0)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("1.5", None),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: do not wait
    ],
)
def test_parse_retry_after(value, expected):
    with time_machine.travel(dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc), tick=False):
        assert parse_retry_after(value) == (pytest.approx(expected) if expected is not None else None)


def test_retry_after_above_max_inline_wait_raises_instead_of_sleeping(rsps, make_client, sleeps):
    client = make_client(max_inline_wait=30.0)
    rsps.get(url("companies"), status=429, headers={"Retry-After": "120"})

    with pytest.raises(RateLimitedError) as caught:
        client.get("companies")
    assert caught.value.retry_after == 120.0
    assert caught.value.permanent is False
    assert caught.value.status == 429
    assert sleeps == []
    assert len(rsps.calls) == 1


def test_retry_after_at_max_inline_wait_is_slept(rsps, make_client, sleeps):
    client = make_client(max_inline_wait=30.0)
    rsps.get(url("companies"), status=429, headers={"Retry-After": "30"})
    rsps.get(url("companies"), json=[])

    client.get("companies")
    assert sleeps == [30.0]


def test_long_retry_after_on_503_raises_unavailable_without_sleeping(rsps, make_client, sleeps):
    client = make_client(max_inline_wait=10.0)
    rsps.get(url("companies"), status=503, headers={"Retry-After": "600"})

    with pytest.raises(UnavailableError):
        client.get("companies")
    assert sleeps == []


def test_backoff_beyond_max_inline_wait_hands_the_wait_to_the_caller(rsps, make_client, sleeps, top_of_jitter):
    client = make_client(backoff_base=60.0, backoff_cap=120.0, max_inline_wait=30.0)
    rsps.get(url("companies"), status=429)

    with pytest.raises(RateLimitedError) as caught:
        client.get("companies")
    assert caught.value.retry_after == 60.0
    assert sleeps == []


# --- giving up -------------------------------------------------------------------------------------


def test_429_after_max_retries_raises_rate_limited(rsps, make_client, sleeps):
    client = make_client(max_retries=3)
    for _ in range(4):
        rsps.get(url("companies"), status=429, headers={"Retry-After": "2"})

    with pytest.raises(RateLimitedError) as caught:
        client.get("companies")
    assert len(rsps.calls) == 4  # the first try and three retries
    assert sleeps == [2.0, 2.0, 2.0]
    assert caught.value.retry_after == 2.0
    assert "429" in str(caught.value)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_5xx_after_max_retries_raises_unavailable(rsps, make_client, sleeps, top_of_jitter, status):
    client = make_client(max_retries=2)
    for _ in range(3):
        rsps.get(url("companies"), status=status)

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    assert len(rsps.calls) == 3
    assert sleeps == [1.0, 2.0]
    assert caught.value.permanent is False
    assert caught.value.outcome_unknown is False  # a GET changes nothing
    assert f"HTTP {status}" in str(caught.value)


def test_connection_errors_after_max_retries_raise_could_not_reach(rsps, make_client, sleeps):
    client = make_client(max_retries=2)
    for _ in range(3):
        rsps.get(url("companies"), body=connection_refused())

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    assert len(rsps.calls) == 3
    assert len(sleeps) == 2
    message = str(caught.value)
    assert message.startswith("Could not reach TestPSA at psa.example.com")
    assert "check the region/url" in message.lower()


def test_zero_max_retries_tries_once(rsps, make_client, sleeps):
    client = make_client(max_retries=0)
    rsps.get(url("companies"), status=503)

    with pytest.raises(UnavailableError):
        client.get("companies")
    assert len(rsps.calls) == 1
    assert sleeps == []


def test_429_storm_backs_off_as_told_and_finishes(rsps, client, sleeps, limiter):
    for wait in ("1", "2", "3"):
        rsps.get(url("companies"), status=429, headers={"Retry-After": wait})
    rsps.get(url("companies"), json=[{"id": 7}])

    assert client.get("companies") == [{"id": 7}]
    assert sleeps == [1.0, 2.0, 3.0]
    assert len(limiter.buckets) == 4  # every attempt, retries included, spent the shared budget


# --- which methods are retried -----------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_post_is_not_retried_on_5xx_outcome_unknown(rsps, client, sleeps, status):
    rsps.post(url("tickets"), status=status)

    with pytest.raises(UnavailableError) as caught:
        client.request("POST", "tickets", json={"summary": "Disk full"})
    assert caught.value.outcome_unknown is True
    assert caught.value.status == status
    assert len(rsps.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "failure",
    [lambda: requests.exceptions.ReadTimeout("read timed out"), aborted],
    ids=["read-timeout", "connection-aborted"],
)
def test_post_is_not_retried_when_sent_but_unanswered(rsps, client, sleeps, failure):
    rsps.post(url("tickets"), body=failure())

    with pytest.raises(UnavailableError) as caught:
        client.request("POST", "tickets", json={"summary": "Disk full"})
    assert caught.value.outcome_unknown is True
    assert len(rsps.calls) == 1
    assert sleeps == []
    assert "Could not reach TestPSA" in str(caught.value)


def test_patch_is_not_idempotent_by_default(rsps, client, sleeps):
    rsps.patch(url("tickets/1"), status=503)

    with pytest.raises(UnavailableError) as caught:
        client.request("PATCH", "tickets/1", json=[{"op": "replace"}])
    assert caught.value.outcome_unknown is True
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_put_and_delete_are_retried_on_5xx(rsps, client, sleeps, top_of_jitter, method):
    rsps.add(method, url("tickets/1"), status=503)
    rsps.add(method, url("tickets/1"), status=200, json={})

    client.request(method, "tickets/1")
    assert len(rsps.calls) == 2
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    "failure",
    [connection_refused, lambda: requests.exceptions.ConnectTimeout("connect timed out")],
    ids=["refused", "connect-timeout"],
)
def test_post_is_retried_when_never_sent(rsps, client, sleeps, top_of_jitter, failure):
    rsps.post(url("tickets"), body=failure())
    rsps.post(url("tickets"), status=201, json={"id": 99})

    assert client.json("POST", "tickets", json={"summary": "Disk full"}) == {"id": 99}
    assert len(rsps.calls) == 2
    assert sleeps == [1.0]


def test_post_never_sent_after_max_retries_is_not_outcome_unknown(rsps, make_client, sleeps):
    client = make_client(max_retries=1)
    rsps.post(url("tickets"), body=connection_refused())
    rsps.post(url("tickets"), body=connection_refused())

    with pytest.raises(UnavailableError) as caught:
        client.request("POST", "tickets", json={})
    assert caught.value.outcome_unknown is False
    assert len(rsps.calls) == 2


def test_post_is_retried_on_429(rsps, client, sleeps):
    rsps.post(url("tickets"), status=429, headers={"Retry-After": "4"})
    rsps.post(url("tickets"), status=201, json={"id": 5})

    assert client.json("POST", "tickets", json={"summary": "x"}) == {"id": 5}
    assert sleeps == [4.0]
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("first", ["503", "read-timeout"])
def test_post_marked_idempotent_is_retried(rsps, client, sleeps, top_of_jitter, first):
    if first == "503":
        rsps.post(url("tickets/query"), status=503)
    else:
        rsps.post(url("tickets/query"), body=requests.exceptions.ReadTimeout("read timed out"))
    rsps.post(url("tickets/query"), json={"items": []})

    assert client.json("POST", "tickets/query", json={"filter": []}, idempotent=True) == {"items": []}
    assert len(rsps.calls) == 2
    assert sleeps == [1.0]


def test_get_marked_not_idempotent_is_not_retried(rsps, client, sleeps):
    rsps.get(url("actions/run"), status=502)

    with pytest.raises(UnavailableError) as caught:
        client.request("GET", "actions/run", idempotent=False)
    assert caught.value.outcome_unknown is True
    assert len(rsps.calls) == 1


# --- error mapping ----------------------------------------------------------------------------------


def test_401_is_auth_failed_and_never_retried(rsps, client, sleeps):
    rsps.get(url("companies"), status=401, json={"message": "Invalid credentials."})

    with pytest.raises(AuthFailedError) as caught:
        client.get("companies")
    message = str(caught.value)
    assert message.startswith("Authentication failed:")
    assert "Re-check the API key and the tracking code." in message
    assert "Invalid credentials." in message
    assert caught.value.permanent is True
    assert caught.value.status == 401
    assert len(rsps.calls) == 1
    assert sleeps == []


def test_403_names_the_missing_permission(rsps, client):
    rsps.get(url("service/priorities"), status=403, json={"message": "Forbidden"})

    with pytest.raises(PermissionMissingError) as caught:
        client.get("service/priorities", params={"page": 1})
    error = caught.value
    assert error.which == "Service > Priority"
    assert error.fix == "Grant it under System > Security Roles."
    assert str(error) == (
        "The TestPSA API user does not have permission to access Service > Priority. "
        "Grant it under System > Security Roles."
    )
    assert client.permission_calls == [("GET", "/api/service/priorities")]
    assert error.permanent is True
    assert len(rsps.calls) == 1


def test_403_with_the_default_permission_for_names_the_path(rsps, sleeps):
    plain = HttpClient(BASE, Transport(sleep=sleeps.append, resolver=public_resolver))
    rsps.get(url("company/contacts"), status=403)

    with pytest.raises(PermissionMissingError) as caught:
        plain.get("company/contacts")
    assert "/api/company/contacts" in str(caught.value)


def test_404_is_not_found(rsps, client):
    rsps.get(url("tickets/404"), status=404, json={"message": "Ticket not found"})

    with pytest.raises(NotFoundError) as caught:
        client.get("tickets/404")
    assert "/api/tickets/404" in str(caught.value)
    assert "Ticket not found" in str(caught.value)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [400, 409, 422])
def test_4xx_rejections_are_invalid_with_the_vendor_message(rsps, client, status):
    rsps.post(url("tickets"), status=status, json={"message": "Summary is required."})

    with pytest.raises(InvalidError) as caught:
        client.request("POST", "tickets", json={})
    assert "Summary is required." in str(caught.value)
    assert caught.value.vendor_message == "Summary is required."
    assert caught.value.status == status
    assert len(rsps.calls) == 1


def test_400_with_an_errors_list_joins_the_messages(rsps, client):
    rsps.post(url("tickets"), status=400, json={"errors": [{"message": "Title too long"}, "Queue unknown"]})

    with pytest.raises(InvalidError) as caught:
        client.request("POST", "tickets", json={})
    assert "Title too long; Queue unknown" in str(caught.value)


def test_400_html_body_is_not_quoted(rsps, client):
    rsps.post(url("tickets"), status=400, body="<html><body>Bad Request</body></html>", content_type="text/html")

    with pytest.raises(InvalidError) as caught:
        client.request("POST", "tickets", json={})
    assert "<html" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        ("<!DOCTYPE html><html><body>Sign in</body></html>", "text/html", "a web page"),
        ("  <html>Login</html>", "text/html", "a web page"),
        ('{"id": 1,', "application/json", "something that is not JSON"),
        ("OK", "text/plain", "something that is not JSON"),
    ],
)
def test_200_that_is_not_json_is_unavailable(rsps, client, body, content_type, words):
    rsps.get(url("companies"), status=200, body=body, content_type=content_type)

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    message = str(caught.value)
    assert f"answered with {words}" in message
    assert "HTTP 200" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_204_and_empty_bodies_are_none(rsps, client):
    rsps.delete(url("tickets/1"), status=204)
    rsps.get(url("tickets/2"), status=200, body="")

    assert client.json("DELETE", "tickets/1") is None
    assert client.get("tickets/2") is None


def test_errors_are_psa_errors():
    for kind in (AuthFailedError, InvalidError, NotFoundError, RateLimitedError, UnavailableError, BlockedError):
        assert issubclass(kind, PsaError)


# --- could not reach ------------------------------------------------------------------------------


def test_dns_failure_at_send_says_could_not_reach(rsps, make_client, sleeps):
    client = make_client(allow_private=True, max_retries=1)
    rsps.get(url("companies"), body=name_not_found())
    rsps.get(url("companies"), body=name_not_found())

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    message = str(caught.value)
    assert message.startswith("Could not reach TestPSA at psa.example.com: the host name could not be found.")
    assert "check the region/url" in message.lower()


def test_dns_failure_in_the_guard_names_the_host(rsps, make_client, monkeypatch, records):
    import socket

    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(netguard.socket, "getaddrinfo", fail)
    client = make_client(resolver=netguard.resolve)

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    message = str(caught.value)
    assert "Could not find the host psa.example.com" in message
    assert "check the region/url" in message.lower()
    assert len(rsps.calls) == 0  # nothing was sent
    assert records == []


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (lambda: requests.exceptions.ConnectTimeout("connect timed out"), "the connection timed out"),
        (lambda: requests.exceptions.ReadTimeout("read timed out"), "the connection timed out"),
        (lambda: requests.exceptions.SSLError("certificate verify failed"), "the secure (TLS) connection failed"),
        (connection_refused, "the connection failed"),
    ],
)
def test_timeouts_and_failures_say_could_not_reach(rsps, make_client, failure, reason):
    client = make_client(max_retries=0)
    rsps.get(url("companies"), body=failure())

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    message = str(caught.value)
    assert message.startswith(f"Could not reach TestPSA at psa.example.com: {reason}.")
    assert "check the region/url" in message.lower()
    assert "Errno" not in message and "HTTPSConnectionPool" not in message


def test_timeouts_are_passed_to_requests(rsps, make_client):
    client = make_client(connect_timeout=2.5, read_timeout=17.0)
    seen = []
    original = client.session.send

    def send(prepared, **kwargs):
        seen.append(kwargs)
        return original(prepared, **kwargs)

    client.session.send = send
    rsps.get(url("companies"), json=[])
    client.get("companies")
    assert seen[0]["timeout"] == (2.5, 17.0)
    assert seen[0]["allow_redirects"] is False


# --- redirects -----------------------------------------------------------------------------------


def test_get_redirect_to_a_public_host_is_followed(rsps, client, records):
    rsps.get(
        url("companies"),
        status=301,
        headers={"Location": "https://psa.example.com/api/v2/companies?page=2"},
        match=[matchers.query_param_matcher({"page": "2"})],
    )
    rsps.get(
        url("v2/companies"),
        json=[{"id": 3}],
        match=[matchers.query_param_matcher({"page": "2"})],
    )

    assert client.get("companies", params={"page": 2}) == [{"id": 3}]
    # The Location already carries the query: it is not appended a second time.
    assert rsps.calls[1].request.url == "https://psa.example.com/api/v2/companies?page=2"
    assert [r.status for r in records] == [301, 200]


def test_relative_redirect_is_resolved_against_the_current_url(rsps, client):
    rsps.get(url("old"), status=302, headers={"Location": "/api/new"})
    rsps.get(url("new"), json={"ok": True})

    assert client.get("old") == {"ok": True}


def test_redirect_to_another_public_host_does_not_carry_the_credentials(rsps, client):
    rsps.get(url("report"), status=302, headers={"Location": "https://files.example.net/report.json"})
    rsps.get("https://files.example.net/report.json", json={"rows": []})

    assert client.get("report") == {"rows": []}
    first, second = rsps.calls[0].request, rsps.calls[1].request
    assert first.headers["Authorization"] == f"Bearer {SECRET}"
    assert "Authorization" not in second.headers
    assert "Secret" not in second.headers


def test_redirect_on_the_same_host_keeps_the_credentials(rsps, client):
    rsps.get(url("a"), status=307, headers={"Location": "https://psa.example.com/api/b"})
    rsps.get(url("b"), json={})

    client.get("a")
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("https://intranet.example.com/admin", "intranet.example.com"),
        ("https://127.0.0.1/admin", "127.0.0.1"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://[::1]/x", "::1"),
    ],
)
def test_redirect_to_a_private_host_is_refused(rsps, make_client, location, host):
    client = make_client(resolver=mapped_resolver({"intranet.example.com": "10.1.2.3"}))
    rsps.get(url("companies"), status=302, headers={"Location": location})

    with pytest.raises(BlockedError) as caught:
        client.get("companies")
    assert host in str(caught.value)
    assert "public" in str(caught.value)
    assert len(rsps.calls) == 1


def test_redirect_to_plain_http_is_refused(rsps, client):
    rsps.get(url("companies"), status=302, headers={"Location": "http://psa.example.com/api/companies"})

    with pytest.raises(BlockedError) as caught:
        client.get("companies")
    assert "https" in str(caught.value)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_redirect_is_not_followed_for_writes(rsps, client, method):
    rsps.add(method, url("tickets"), status=307, headers={"Location": "https://psa.example.com/api/v2/tickets"})

    with pytest.raises(UnavailableError) as caught:
        client.request(method, "tickets", json={"summary": "x"})
    assert "redirected" in str(caught.value)
    assert len(rsps.calls) == 1


def test_redirect_loops_stop(rsps, client):
    for _ in range(4):
        rsps.get(url("loop"), status=302, headers={"Location": "https://psa.example.com/api/loop"})

    with pytest.raises(UnavailableError) as caught:
        client.get("loop")
    assert "redirected" in str(caught.value)
    assert len(rsps.calls) == 4


# --- the limiter and buckets -------------------------------------------------------------------------


def test_limiter_is_acquired_once_per_attempt_with_the_bucket(rsps, client, limiter, sleeps, top_of_jitter):
    rsps.post(url("tickets"), status=429, headers={"Retry-After": "1"})
    rsps.post(url("tickets"), body=connection_refused())
    rsps.post(url("tickets"), status=201, json={"id": 1})
    rsps.get(url("companies"), json=[])

    client.request("POST", "tickets", json={})
    client.get("companies")
    assert limiter.buckets == ["tickets", "tickets", "tickets", "other"]
    assert client.bucket_calls == [("POST", "/api/tickets")] * 3 + [("GET", "/api/companies")]
    assert limiter.max_active == 1


def test_limiter_slot_is_not_held_while_sleeping(rsps, make_client, limiter):
    active_during_sleep = []
    transport = Transport(
        sleep=lambda s: active_during_sleep.append(limiter.active), limiter=limiter, resolver=public_resolver
    )
    client = SecretClient(BASE, transport, secrets=SECRETS)
    rsps.get(url("companies"), status=429, headers={"Retry-After": "1"})
    rsps.get(url("companies"), json=[])

    client.get("companies")
    assert active_during_sleep == [0]


def test_limiter_refusal_sends_nothing(rsps, make_client):
    class Exhausted:
        def acquire(self, bucket):
            raise RateLimitedError("Hourly budget spent.", retry_after=900)

    transport = Transport(sleep=lambda s: None, limiter=Exhausted(), resolver=public_resolver)
    client = SecretClient(BASE, transport, secrets=SECRETS)
    with pytest.raises(RateLimitedError) as caught:
        client.get("companies")
    assert caught.value.retry_after == 900
    assert len(rsps.calls) == 0


# --- the on_request hook and secrets ---------------------------------------------------------------


def _all_text(record: RequestRecord) -> str:
    return " | ".join(str(getattr(record, f.name)) for f in dataclasses.fields(record))


def _assert_no_secret(text: str, secrets=SECRETS) -> None:
    for secret in secrets:
        assert secret not in text
        assert secret[: len(secret) // 2] not in text, "half a secret leaked"


def test_on_request_gets_one_redacted_record_per_attempt(rsps, client, records, sleeps):
    echo = {"message": f"created with key {SECRET}", "token": "tok-abc-123", "id": 9, "code": TRACKING}
    rsps.post(url("tickets"), status=429, headers={"Retry-After": "1"}, json={"message": f"slow down {SECRET}"})
    rsps.post(url("tickets"), body=connection_refused())
    rsps.post(url("tickets"), status=201, json=echo)

    body = {"summary": "Disk full", "password": SECRET, "nested": {"client_secret": "cs-1234-5678"}, "note": TRACKING}
    result = client.json("POST", "tickets", params={"client_secret": SECRET, "page": 1}, json=body)
    assert result == echo

    # The secrets really went out, so the checks below can fail.
    sent = rsps.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {SECRET}" and sent.headers["Secret"] == TRACKING
    assert SECRET in sent.url.replace("%2D", "-")

    assert [r.attempt for r in records] == [1, 2, 3]
    assert [r.status for r in records] == [429, None, 201]
    assert [r.method for r in records] == ["POST"] * 3
    assert all(r.path.startswith("/api/tickets?") for r in records)
    assert all("page=1" in r.path for r in records)
    assert all(isinstance(r.duration_ms, int) and r.duration_ms >= 0 for r in records)
    assert records[1].error == "ConnectionError" and records[1].response_excerpt == ""
    assert records[0].error == "" and records[2].error == ""

    sent_excerpt = json.loads(records[2].request_excerpt)
    assert sent_excerpt["summary"] == "Disk full"
    assert sent_excerpt["password"] == MASK
    assert sent_excerpt["nested"] == {"client_secret": MASK}
    assert sent_excerpt["note"] == MASK
    answer = json.loads(records[2].response_excerpt)
    assert answer["id"] == 9 and answer["token"] == MASK
    assert answer["message"] == f"created with key {MASK}"
    assert "slow down" in records[0].response_excerpt

    for record in records:
        assert isinstance(record, RequestRecord)
        _assert_no_secret(_all_text(record), SECRETS + ["cs-1234-5678", "tok-abc-123"])


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500])
def test_errors_never_carry_a_secret_the_psa_echoed(rsps, client, records, status):
    rsps.get(url("companies"), status=status, json={"message": f"Bad key {SECRET} / {TRACKING}"})

    with pytest.raises(PsaError) as caught:
        client.get("companies")
    _assert_no_secret(str(caught.value))
    _assert_no_secret(caught.value.vendor_message)
    _assert_no_secret(" ".join(str(a) for a in caught.value.args))
    for record in records:
        _assert_no_secret(_all_text(record))


def test_a_long_plain_text_error_body_does_not_leak_half_a_secret(rsps, client, records):
    # vendor_message keeps 300 characters: put the cut in the middle of the secret.
    body = "x" * (300 - len(" key ") - len(SECRET) // 2 - 2) + " key " + SECRET + " rejected"
    rsps.get(url("companies"), status=400, body=body, content_type="text/plain")

    with pytest.raises(InvalidError) as caught:
        client.get("companies")
    _assert_no_secret(str(caught.value))
    _assert_no_secret(caught.value.vendor_message)
    for record in records:
        _assert_no_secret(_all_text(record))


@pytest.mark.parametrize("status", [429, 503])
def test_exhausted_retries_never_carry_a_secret(rsps, make_client, records, status):
    client = make_client(max_retries=1)
    for _ in range(2):
        rsps.get(url("companies"), status=status, headers={"Retry-After": "0"}, json={"message": f"busy {SECRET}"})

    with pytest.raises(PsaError) as caught:
        client.get("companies")
    _assert_no_secret(str(caught.value))
    _assert_no_secret(caught.value.vendor_message)
    for record in records:
        _assert_no_secret(_all_text(record))


def test_not_json_error_never_carries_a_secret(rsps, client, records):
    rsps.get(url("companies"), body=f"<html>your key {SECRET} is wrong</html>", content_type="text/html")

    with pytest.raises(UnavailableError) as caught:
        client.get("companies")
    _assert_no_secret(str(caught.value))
    for record in records:
        _assert_no_secret(_all_text(record))


def test_secret_with_json_special_characters_is_redacted_from_records(rsps, sleeps, records):
    tricky = 'p@ss"w\\rd/2024'
    transport = Transport(sleep=sleeps.append, on_request=records.append, resolver=public_resolver)
    client = HttpClient(BASE, transport, secrets=[tricky])
    rsps.post(url("login"), status=400, json={"detail": f"user sent {tricky}", "echo": [tricky]})

    with pytest.raises(InvalidError) as caught:
        client.request("POST", "login", json={"who": "api", "value": tricky})
    escaped = json.dumps(tricky)[1:-1]
    for record in records:
        text = _all_text(record)
        assert tricky not in text and escaped not in text
    assert tricky not in str(caught.value)


def test_secret_in_an_encoded_query_value_is_redacted_from_records(rsps, sleeps, records):
    user = "api.user+hub@msp.example"
    transport = Transport(sleep=sleeps.append, on_request=records.append, resolver=public_resolver)
    client = HttpClient(BASE, transport, secrets=[user])
    rsps.get(url("zoneInformation"), json={"url": "https://ws.example.com/"})

    client.get("zoneInformation", params={"user": user})
    assert "user=" in records[0].path
    encoded = requests.compat.quote_plus(user)
    for record in records:
        text = _all_text(record)
        assert user not in text and encoded not in text and "msp.example" not in text


def test_no_hook_no_records(rsps, sleeps):
    client = HttpClient(BASE, Transport(sleep=sleeps.append, resolver=public_resolver))
    rsps.get(url("x"), json=[])
    assert client.get("x") == []


def test_absolute_urls_are_used_as_given(rsps, client):
    rsps.get("https://other.example.org/v1/next?page=2", json=[])
    assert client.get("https://other.example.org/v1/next?page=2") == []


def test_authorize_false_sends_no_credentials(rsps, client):
    rsps.get(url("zoneInformation"), json={})
    client.get("zoneInformation", authorize=False)
    assert "Authorization" not in rsps.calls[0].request.headers


# --- the record made before a request leaves (a worker may die while it is in flight) -----------


def test_each_attempt_is_recorded_as_sending_before_it_leaves_and_completed_after(make_client, rsps, records):
    sending: list[RequestRecord] = []
    seen_at_send: list[int] = []

    def answer(request):
        seen_at_send.append(len(sending))  # the PSA has the request: the "sending" record exists already
        return (201, {}, json.dumps({"id": 7}))

    rsps.add_callback(responses.POST, f"{BASE}/tickets", callback=answer)
    make_client(on_sending=sending.append).request("POST", "tickets", json={"summary": "x", "password": SECRET})
    assert seen_at_send == [1]
    [before], [after] = sending, records
    assert before.pending and not after.pending and before.id == after.id and before.id
    assert (before.method, before.path, before.status) == ("POST", "/api/tickets", None)
    assert SECRET not in before.request_excerpt and MASK in before.request_excerpt
    assert after.status == 201


def test_a_request_that_never_answers_is_still_on_record_as_sent(make_client, rsps, records):
    sending: list[RequestRecord] = []
    rsps.add(responses.POST, f"{BASE}/tickets", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UnavailableError) as raised:
        make_client(on_sending=sending.append).request("POST", "tickets", json={"summary": "x"})
    assert raised.value.outcome_unknown
    assert [r.pending for r in sending] == [True] and records[0].id == sending[0].id and records[0].status is None


def test_before_send_runs_before_every_attempt(make_client, rsps):
    beats: list[int] = []
    rsps.add(responses.GET, f"{BASE}/boards", status=503)
    rsps.add(responses.GET, f"{BASE}/boards", json=[])
    make_client(before_send=lambda: beats.append(len(rsps.calls))).request("GET", "boards")
    assert beats == [0, 1]

"""The one HTTP path to every PSA (DESIGN.md rule 2).

`HttpClient.request` is the only place a PSA request is sent. Around each send it applies the
private-network guard, the caller's rate limiter and concurrency cap, connect/read timeouts,
retries with exponential backoff and full jitter (honouring Retry-After), redaction, and the
caller's hooks: `on_sending` just before a request leaves (the service layer writes its log row
then, so a request whose worker dies in flight is still on record as "sent, no answer yet") and
`on_request` once it has an outcome (the row is completed). `before_send` lets the caller renew
its claims (a heartbeat) before each request. Vendor clients subclass it and override three hooks: `authorize` (credentials on the
request), `vendor_message` (the PSA's error body) and `permission_for` (which permission a
refused path needs).

Retries and idempotency: a request that never left (connection refused, DNS, connect timeout)
and a 429 (refused unprocessed) are retried for every method. A read timeout or a 502/503/504
means the PSA may have acted, so these are retried only for idempotent requests; a write whose
outcome is unknown raises UnavailableError(outcome_unknown=True) and the caller looks for its
marker in the PSA before trying again.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ContextManager, Protocol
from urllib.parse import urljoin, urlsplit

import requests

from integrations.base import netguard, redaction
from integrations.base.errors import (
    AuthFailedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    PsaError,
    RateLimitedError,
    UnavailableError,
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class RequestRecord:
    """What the hub keeps of one PSA request: already redacted, safe to store and show."""

    method: str
    url: str
    path: str
    status: int | None
    duration_ms: int
    request_excerpt: str
    response_excerpt: str
    attempt: int
    error: str = ""
    # The same for the "sending" record and the final one of one attempt.
    id: str = ""
    pending: bool = False  # sent (or about to be), no answer yet


class Limiter(Protocol):
    """Shared across worker processes by the caller (Redis in production)."""

    def acquire(self, bucket: str) -> ContextManager[None]:
        """Wait for a concurrency slot in `bucket` and spend one request of the budget;
        raise RateLimitedError when the budget is spent for longer than is worth waiting."""


class NoLimit:
    def acquire(self, bucket: str) -> ContextManager[None]:
        return contextlib.nullcontext()


@dataclass
class Transport:
    """What the service layer lends a vendor client: limits, timeouts and the log hook."""

    allow_private: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    # A Retry-After longer than this is not slept through: RateLimitedError lets Celery wait.
    max_inline_wait: float = 30.0
    limiter: Limiter = field(default_factory=NoLimit)
    on_sending: Callable[[RequestRecord], None] | None = None
    on_request: Callable[[RequestRecord], None] | None = None
    before_send: Callable[[], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session | None = None
    resolver: Callable[[str, int], list[str]] = netguard.resolve


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    vendor = "the PSA"
    # Appended to "Authentication failed: …" so users know which values to re-check.
    auth_hint = "Re-enter the credentials."
    # Appended when the PSA answers with a web page instead of API data.
    url_hint = "Check that the URL points at the PSA's API."

    def __init__(self, base_url: str, transport: Transport | None = None, secrets: Iterable[str] = ()):
        self.base_url = base_url.rstrip("/") + "/"
        self.transport = transport or Transport()
        self.secrets = [s for s in secrets if s]
        self.session = netguard.guard(self.transport.session or requests.Session(), allow_private=self.transport.allow_private)

    # --- hooks for vendor clients -------------------------------------------------------------

    def authorize(self, request: requests.Request) -> None:
        """Put credentials on an outgoing request (headers, basic auth, bearer token)."""

    def vendor_message(self, response: requests.Response) -> str:
        """The PSA's own words from an error body."""
        try:
            body = response.json()
        except ValueError:
            text = response.text.strip()
            return "" if text.lstrip().startswith("<") else self._safe(text)[:300]
        if isinstance(body, dict):
            for key in ("message", "Message", "error_description", "error", "errorMessage"):
                if isinstance(body.get(key), str) and body[key]:
                    return body[key]
            if isinstance(body.get("errors"), list) and body["errors"]:
                return "; ".join(str(e.get("message", e) if isinstance(e, dict) else e) for e in body["errors"])
        return ""

    def permission_for(self, method: str, path: str) -> tuple[str, str]:
        """(which permission, where to grant it) for a refused request."""
        return f"access to {path}", ""

    def bucket_for(self, method: str, path: str) -> str:
        """Concurrency bucket; Autotask limits threads per entity, others per connection."""
        return "all"

    # --- the request path -----------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else urljoin(self.base_url, path.lstrip("/"))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | list | None = None,
        json: Any = None,
        data: dict | None = None,
        headers: dict | None = None,
        idempotent: bool | None = None,
        authorize: bool = True,
    ) -> requests.Response:
        method = method.upper()
        idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        url = self.url_for(path)
        origin = _origin(url)
        transport = self.transport
        attempt = 0
        redirects = 0
        while True:
            attempt += 1
            netguard.check_url(url, allow_private=transport.allow_private, resolver=transport.resolver)
            request = requests.Request(method, url, params=params, json=json, data=data, headers=dict(headers or {}))
            # Like requests itself, never hand the credentials to another host via a redirect.
            if authorize and _origin(url) == origin:
                self.authorize(request)
            prepared = self.session.prepare_request(request)
            response, failure, sent = None, None, False
            record_id = uuid.uuid4().hex
            with transport.limiter.acquire(self.bucket_for(method, urlsplit(url).path)):
                if transport.before_send is not None:
                    transport.before_send()
                started = time.monotonic()
                self._record(method, prepared, json if json is not None else data, None, None, started, attempt,
                             record_id, pending=True)
                try:
                    response = self.session.send(
                        prepared, timeout=(transport.connect_timeout, transport.read_timeout), allow_redirects=False
                    )
                except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
                    failure = exc
                except requests.exceptions.ConnectionError as exc:
                    failure = exc
                    # A dropped connection after sending is as unknown as a read timeout.
                    sent = "Remote end closed" in str(exc) or "Connection aborted" in str(exc)
                except requests.exceptions.ReadTimeout as exc:
                    failure, sent = exc, True
                except requests.exceptions.RequestException as exc:
                    # e.g. ChunkedEncodingError: the request went out, the answer broke off.
                    failure, sent = exc, True
            self._record(method, prepared, json if json is not None else data, response, failure, started, attempt, record_id)

            if response is not None and response.status_code in REDIRECT_STATUSES and "Location" in response.headers:
                redirects += 1
                if redirects > MAX_REDIRECTS or method not in ("GET", "HEAD"):
                    raise UnavailableError(f"{self.vendor} redirected the request ({response.status_code}); check the URL.")
                url = urljoin(url, response.headers["Location"])
                params = None  # the Location already holds the query; do not append it twice
                attempt -= 1  # a redirect is not a retry; the guard checks the new host above
                continue

            retry_after = None
            if failure is not None:
                error = self._failure_error(failure, url, outcome_unknown=sent and not idempotent)
                if error.outcome_unknown:
                    raise error
            elif response.status_code in RETRY_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if response.status_code == 429:
                    error = RateLimitedError(
                        f"{self.vendor} is limiting requests (HTTP 429); the hub will try again later.",
                        retry_after=retry_after,
                        status=429,
                        vendor_message=self._safe(self.vendor_message(response)),
                    )
                else:
                    error = UnavailableError(
                        f"{self.vendor} is not answering properly (HTTP {response.status_code}); the hub will try again later.",
                        status=response.status_code,
                        outcome_unknown=not idempotent,
                    )
                    if not idempotent:
                        raise error
            elif response.status_code >= 400:
                raise self.error_for(method, url, response)
            else:
                return response

            if attempt > transport.max_retries:
                raise error
            wait = retry_after if retry_after is not None else self._backoff(attempt)
            if wait > transport.max_inline_wait:
                if isinstance(error, RateLimitedError):
                    error.retry_after = wait
                raise error
            transport.sleep(wait)

    def json(self, method: str, path: str, **kwargs) -> Any:
        return self.decode(self.request(method, path, **kwargs))

    def decode(self, response: requests.Response) -> Any:
        """The JSON of a successful response; a web page or garbage becomes UnavailableError."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            what = "a web page" if response.text.lstrip().startswith("<") else "something that is not JSON"
            raise UnavailableError(
                f"{self.vendor} answered with {what} (HTTP {response.status_code}) instead of API data. {self.url_hint}",
                status=response.status_code,
            ) from None

    def get(self, path: str, **kwargs) -> Any:
        return self.json("GET", path, **kwargs)

    # --- helpers --------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.transport.backoff_cap, self.transport.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def _safe(self, text: str) -> str:
        return redaction.redact_values(text, self.secrets)

    def _failure_error(self, failure: Exception, url: str, *, outcome_unknown: bool) -> UnavailableError:
        host = urlsplit(url).hostname or url
        text = str(failure)
        if isinstance(failure, requests.exceptions.SSLError):
            reason = "the secure (TLS) connection failed"
        elif isinstance(failure, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout)):
            reason = "the connection timed out"
        elif "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
            reason = "the host name could not be found"
        else:
            reason = "the connection failed"
        return UnavailableError(
            f"Could not reach {self.vendor} at {host}: {reason}. Check the region/URL; if it is right, wait "
            "1–2 minutes and retry.",
            outcome_unknown=outcome_unknown,
        )

    def error_for(self, method: str, url: str, response: requests.Response) -> PsaError:
        status = response.status_code
        said = self._safe(self.vendor_message(response))
        suffix = f" {self.vendor} said: {said}" if said else ""
        if status == 401:
            return AuthFailedError(f"Authentication failed: {self.auth_hint}{suffix}", status=status, vendor_message=said)
        if status == 403:
            which, fix = self.permission_for(method, urlsplit(url).path)
            message = f"The {self.vendor} API user does not have permission to access {which}." + (f" {fix}" if fix else "")
            return PermissionMissingError(message, which=which, fix=fix, status=status, vendor_message=said)
        if status == 404:
            return NotFoundError(f"{self.vendor} could not find {urlsplit(url).path}.{suffix}", status=status, vendor_message=said)
        if status in (400, 409, 422):
            return InvalidError(f"{self.vendor} rejected the request.{suffix}", status=status, vendor_message=said)
        return UnavailableError(f"{self.vendor} failed (HTTP {status}).{suffix}", status=status, vendor_message=said)

    def _record(self, method, prepared, sent_body, response, failure, started, attempt, record_id, *, pending=False) -> None:
        hook = self.transport.on_sending if pending else self.transport.on_request
        if hook is None:
            return
        parts = urlsplit(prepared.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        hook(
            RequestRecord(
                method=method,
                url=redaction.redact_url(prepared.url, self.secrets),
                path=redaction.redact_url(path, self.secrets)[:500],
                status=response.status_code if response is not None else None,
                duration_ms=int((time.monotonic() - started) * 1000),
                request_excerpt=redaction.redact_body(sent_body, self.secrets),
                response_excerpt=redaction.redact_body(response.content, self.secrets) if response is not None else "",
                attempt=attempt,
                error=self._safe(type(failure).__name__) if failure else "",
                id=record_id,
                pending=pending,
            )
        )


"""Checks shared by the integration and browser tiers' link flows: every request a fake PSA
answered is in the integration log, the worker has gone quiet, and no secret is recorded."""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import unquote, urlsplit

from integrations.models import Connection, IntegrationLog

POLL = 0.2


def logged_requests(account) -> Counter:
    """(method, path) of every PSA request in the account's integration log, counted."""
    rows = IntegrationLog.objects.for_account(account).exclude(http_method="").values_list("http_method", "http_path")
    return Counter((method, unquote(urlsplit(path).path)) for method, path in rows)


def assert_every_request_logged(psas, vendor: str, account, worker=None, timeout: float = 15) -> None:
    """Every request the vendor's fake answered is one IntegrationLog row of the account. The
    row is written just after the answer, so wait for the two to agree first."""
    deadline = time.monotonic() + timeout
    while psas.requests_seen(vendor) != logged_requests(account) and time.monotonic() < deadline:
        time.sleep(POLL)
    seen, logged = psas.requests_seen(vendor), logged_requests(account)
    assert seen, "the fake saw no request"
    tail = f"\n--- worker log ---\n{worker.log_tail()}" if worker else ""
    assert seen == logged, f"not in the log: {seen - logged}\nin the log, not seen: {logged - seen}{tail}"


def wait_until_idle(psas, vendor: str, account, quiet: float = 0.6, timeout: float = 20) -> None:
    """Until neither the fake nor the log has moved for `quiet` seconds (the refreshes a
    verification queues run on in the background)."""
    last, still_since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = (sum(psas.requests_seen(vendor).values()), IntegrationLog.objects.for_account(account).count())
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return
        time.sleep(0.1)


def assert_no_secret_recorded(secrets: list[str], texts: list[str] = ()) -> None:
    """No secret in any integration log row (message, path, excerpts), any readable field of a
    connection row, or any of `texts` (API answers, pages)."""
    for row in IntegrationLog.objects.all():
        text = " ".join(str(v) for v in (row.message, row.http_path, row.request_excerpt, row.response_excerpt))
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"a secret is in the integration log ({row.action}): {text[:500]}"
    for connection in Connection.objects.all():
        text = json.dumps(connection.config) + connection.last_error + connection.credentials
        assert not [s for s in secrets if s in text], f"a secret is readable on the connection row: {text[:500]}"
    for text in texts:
        for secret in secrets:
            at = text.find(secret)
            assert at < 0, f"a secret was sent to the client: …{text[max(0, at - 200):at + 200]}…"

"""Steps the integration and browser tiers share: linking a PSA through the API and waiting for
the worker process to verify it."""

from __future__ import annotations

import time

import pytest

from integrations.models import Connection

WAIT = 60  # s: how long background work may take before a test fails with the worker's log


def link_through_api(api, account, psas, vendor: str, worker) -> Connection:
    """PUT the fake's credentials (202), then wait until the worker has verified the link."""
    response = api.put("/api/v1/connection", {"vendor": vendor, "credentials": psas.link_values(vendor)}, format="json")
    assert response.status_code == 202, response.content
    deadline = time.monotonic() + WAIT
    while True:
        connection = Connection.objects.get(account=account)
        if connection.status == Connection.Status.CONNECTED:
            return connection
        if connection.status == Connection.Status.FAILED or time.monotonic() > deadline:
            pytest.fail(f"the worker did not verify the link: {connection.last_error}\n{worker.log_tail()}")
        time.sleep(0.2)

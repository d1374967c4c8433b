"""Fixtures of the Halo adapter tests: a provider on strict `responses`, and a check after
every test that neither the client secret nor the access token reached a RequestRecord."""

from __future__ import annotations

import pytest
import responses

from integrations.base.client import Transport
from integrations.halo.auth import MemoryTokenStore
from integrations.halo.provider import HaloProvider
from tests.unit.halo.support import BASE, CLIENT_ID, PUBLIC_IP, SECRET, TENANT, TOKEN, Clock


@pytest.fixture
def records() -> list:
    return []


@pytest.fixture
def sleeps() -> list:
    return []


@pytest.fixture
def transport(records, sleeps) -> Transport:
    return Transport(sleep=sleeps.append, resolver=lambda host, port: [PUBLIC_IP], on_request=records.append)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def make_provider(transport, store, clock):
    def make(**config) -> HaloProvider:
        values = {"tenant": TENANT, "resource_server": BASE, "auth_server": "", "client_id": CLIENT_ID, **config}
        return HaloProvider(values, {"client_secret": SECRET}, transport, token_store=store, clock=clock)

    return make


@pytest.fixture
def provider(make_provider) -> HaloProvider:
    return make_provider()


@pytest.fixture
def rsps():
    """Strict: an unexpected request fails, and every registered answer must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture(autouse=True)
def nothing_leaks(records):
    yield
    for record in records:
        text = repr(record)
        assert SECRET not in text, f"client secret in {record}"
        assert TOKEN not in text, f"access token in {record}"

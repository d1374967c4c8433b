"""Shared pieces of the Autotask adapter tests: credentials, a recording transport, fixtures
and a helper that asserts the exact headers and body of a captured request."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from integrations.autotask.provider import AutotaskProvider
from integrations.base.client import Transport

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "autotask"
USERNAME = "hubapi@acme-msp.example"
SECRET = "S3cret-Value-Must-Not-Leak!"
CODE = "TRACKINGIDENTIFIERSECRET27X"
DISCOVERY = "https://webservices.autotask.net/atservicesrest/"
ZONE = "https://webservices14.autotask.net/ATServicesRest/"
API = ZONE + "V1.0/"
WEB = "https://ww14.autotask.net/"
TODAY = date(2025, 9, 30)
AUTH_HEADERS = {"ApiIntegrationCode": CODE, "UserName": USERNAME, "Secret": SECRET, "Accept": "application/json"}


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


class Recorder(list):
    """Transport.on_request hook keeping every RequestRecord, plus the sleeps asked for."""

    def __init__(self):
        super().__init__()
        self.sleeps: list[float] = []


@pytest.fixture
def records() -> Recorder:
    return Recorder()


@pytest.fixture
def transport(records) -> Transport:
    return Transport(
        sleep=records.sleeps.append,
        resolver=lambda host, port: ["93.184.216.34"],
        on_request=records.append,
    )


@pytest.fixture
def make_provider(transport):
    def make(config: dict | None = None, secrets: dict | None = None, today: date = TODAY) -> AutotaskProvider:
        base = {"username": USERNAME, "zone_discovery_url": DISCOVERY, "zone_url": ZONE, "web_url": WEB}
        return AutotaskProvider(
            {**base, **(config or {})},
            {"secret": SECRET, "integration_code": CODE} if secrets is None else secrets,
            transport,
            today=lambda: today,
        )

    return make


@pytest.fixture
def provider(make_provider) -> AutotaskProvider:
    return make_provider()


def assert_request(call, *, method: str, url: str, body=None, extra_headers: dict | None = None) -> None:
    """The captured request is exactly this: method, URL, Autotask's headers, JSON body."""
    request = call.request
    assert request.method == method
    assert request.url == url
    expected = {**AUTH_HEADERS, **(extra_headers or {})}
    if body is not None:
        expected["Content-Type"] = "application/json"
    sent = {k: v for k, v in request.headers.items() if k not in ("User-Agent", "Accept-Encoding", "Connection", "Content-Length")}
    assert sent == expected
    if body is None:
        assert not request.body
    else:
        assert json.loads(request.body) == body


def assert_no_secret(records, *texts: str) -> None:
    """Neither secret appears in a captured RequestRecord or in any text given (error messages)."""
    blobs = [json.dumps([r.__dict__ for r in records], default=str), *texts]
    for blob in blobs:
        assert SECRET not in blob
        assert CODE not in blob

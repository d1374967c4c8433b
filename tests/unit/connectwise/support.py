"""Shared values and helpers for the ConnectWise adapter tests: a cloud tenant on api-na, its exact
headers, the recorded bodies in tests/fixtures/connectwise/, and a Transport that needs no
DNS and never sleeps."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from responses import matchers

from integrations.base.client import Transport
from integrations.connectwise.client import ACCEPT

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "connectwise"
PUBLIC_IP = "93.184.216.34"  # a global address: netguard lets it through without DNS

SITE = "https://na.myconnectwise.net"
API = "https://api-na.myconnectwise.net/v2025_1/apis/3.0/"
PRIVATE_KEY = "Pr1vateKeySecretZq"
CLIENT_ID = "7c0ffee0-hub0-4bad-9c11-000000000042"
CONFIG = {
    "company_id": "acme",
    "site": "na.myconnectwise.net",
    "api_host": "api-na.myconnectwise.net",
    "public_key": "PubKeyA1b2C3d4E5",
    "client_id": CLIENT_ID,
    "codebase": "v2025_1/",
}
SECRETS = {"private_key": PRIVATE_KEY}
BASIC = base64.b64encode(f"acme+PubKeyA1b2C3d4E5:{PRIVATE_KEY}".encode()).decode()
HEADERS = {"Authorization": f"Basic {BASIC}", "clientId": CLIENT_ID, "Accept": ACCEPT}


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def auth():
    return matchers.header_matcher(HEADERS)


def query(**params):
    return matchers.query_param_matcher(params)


def body(value):
    return matchers.json_params_matcher(value)


def unauthenticated(request):
    """A matcher: the request carries neither credentials nor the clientId."""
    present = [name for name in ("Authorization", "clientId") if name in request.headers]
    return (not present, f"unexpected headers {present}")


class Recorder:
    """Transport hooks that record instead of acting: request records and sleeps."""

    def __init__(self):
        self.records = []
        self.sleeps = []

    def transport(self, **kwargs) -> Transport:
        return Transport(
            sleep=self.sleeps.append,
            resolver=lambda host, port: [PUBLIC_IP],
            on_request=self.records.append,
            **kwargs,
        )

    def text(self) -> str:
        """Everything the hub would keep of these requests, for secret searches."""
        return "\n".join(repr(record) for record in self.records)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PRIVATE_KEY not in text
        assert BASIC not in text
        assert CLIENT_ID not in text

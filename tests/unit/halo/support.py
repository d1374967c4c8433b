"""Constants and request matchers of the Halo adapter tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from responses import matchers

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "halo"
BASE = "https://acme.halopsa.com"
API = BASE + "/api"
TOKEN_URL = BASE + "/auth/token"
TENANT = "acme"
CLIENT_ID = "5c1d9e2a-hub-client"
SECRET = "cl1ent-Secret-9Xy7Wv5Ut3-do-not-leak"
PUBLIC_IP = "93.184.216.34"


def load(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


TOKEN = load("token")["access_token"]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_form(secret: str = SECRET) -> dict:
    return {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret, "scope": "all"}


def expect_token(rsps, *, url: str = TOKEN_URL, tenant: str = TENANT, status: int = 200, body=None, token: str = TOKEN):
    """The exact token request: POST <auth>/token?tenant=T with the client-credentials form."""
    if body is None:
        body = {**load("token"), "access_token": token}
    return rsps.post(
        url,
        status=status,
        json=body,
        match=[
            matchers.query_param_matcher({"tenant": tenant} if tenant else {}),
            matchers.urlencoded_params_matcher(token_form()),
            matchers.header_matcher({"Content-Type": "application/x-www-form-urlencoded"}),
        ],
    )


def bearer(token: str = TOKEN):
    return matchers.header_matcher({"Authorization": f"Bearer {token}"})


def query(**params):
    return matchers.query_param_matcher({k: str(v) for k, v in params.items()})


def paged(page_no: int = 1, **params):
    return query(**params, pageinate="true", page_size=100, page_no=page_no)


def body(payload):
    return matchers.json_params_matcher(payload)

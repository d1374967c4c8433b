"""Redaction (integrations/base/redaction.py): secret headers, secret fields, known secret values."""

from __future__ import annotations

import json

import pytest

from integrations import registry
from integrations.base import redaction
from integrations.base.redaction import (
    MASK,
    redact_body,
    redact_headers,
    redact_url,
    redact_values,
)


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Secret",
        "ApiIntegrationCode",
        "apiintegrationcode",
        "UserName",
        "clientId",
        "ClientID",
        "Cookie",
        "Set-Cookie",
        "Proxy-Authorization",
        "X-Api-Key",
        "X-Auth-Token",
        "x-content-signature",
    ],
)
def test_secret_headers_are_masked(name):
    headers = {name: "value-that-must-not-show", "Content-Type": "application/json", "Accept": "*/*"}
    psa_headers = [header for provider in registry.PROVIDERS for header in provider.secret_headers]
    assert redact_headers(headers, psa_headers) == {name: MASK, "Content-Type": "application/json", "Accept": "*/*"}


def test_ordinary_headers_are_kept():
    headers = {"Content-Type": "application/json", "pagination-type": "forward-only", "X-Request-Id": "abc"}
    assert redact_headers(headers) == headers


@pytest.mark.parametrize(
    "field", ["password", "Password", "secret", "client_secret", "token", "access_token", "refresh_token",
              "private_key", "privateKey", "api_key", "apiKey"]
)
def test_secret_fields_are_masked_in_json(field):
    out = json.loads(redact_body({field: "hunter2-value", "name": "Acme"}))
    assert out == {field: MASK, "name": "Acme"}


def test_nested_secret_fields_are_masked():
    body = {
        "name": "Acme",
        "auth": {"client_secret": "cs-value", "grant_type": "client_credentials"},
        "keys": [{"private_key": "pk-value", "id": 1}, {"token": {"deep": "tok-value"}}],
        "users": [{"login": "ann", "password": "pw-value"}],
    }
    text = redact_body(body)
    for value in ("cs-value", "pk-value", "tok-value", "pw-value"):
        assert value not in text
    out = json.loads(text)
    assert out["name"] == "Acme"
    assert out["auth"] == {"client_secret": MASK, "grant_type": "client_credentials"}
    assert out["keys"] == [{"private_key": MASK, "id": 1}, {"token": MASK}]
    assert out["users"] == [{"login": "ann", "password": MASK}]


@pytest.mark.parametrize("kind", [bytes, str])
def test_json_response_bodies_are_parsed_then_masked(kind):
    raw = json.dumps({"access_token": "eyJ-token-value", "expires_in": 3600, "token_type": "Bearer"})
    body = raw.encode() if kind is bytes else raw
    out = json.loads(redact_body(body))
    assert out["access_token"] == MASK
    assert out["expires_in"] == 3600


def test_known_secret_values_are_masked_anywhere_in_text():
    text = "<html><p>Key Pr1vate-K3y-abc is invalid for user api@msp.example</p></html>"
    out = redact_body(text.encode(), secrets=["Pr1vate-K3y-abc", "api@msp.example"])
    assert out == f"<html><p>Key {MASK} is invalid for user {MASK}</p></html>"


def test_known_secret_values_are_masked_inside_json_values_and_keys_kept():
    body = {"message": "Bad key Pr1vate-K3y-abc", "detail": ["at Pr1vate-K3y-abc"]}
    out = json.loads(redact_body(body, secrets=["Pr1vate-K3y-abc"]))
    assert out == {"message": f"Bad key {MASK}", "detail": [f"at {MASK}"]}


def test_secret_values_with_json_escaped_characters_are_masked():
    tricky = 'pa"ss\\word\n2024'
    raw = json.dumps({"detail": f"rejected {tricky}"})
    out = redact_body(raw.encode(), secrets=[tricky])
    assert tricky not in out
    assert json.dumps(tricky)[1:-1] not in out
    assert json.loads(out) == {"detail": f"rejected {MASK}"}


def test_longest_secret_is_masked_first():
    out = redact_values("a=abcd1234efgh b=abcd1234", ["abcd1234", "abcd1234efgh"])
    assert out == f"a={MASK} b={MASK}"


def test_secret_values_too_short_to_be_safe_are_left_alone():
    # Masking "id" would garble every body; values that short are not real secrets.
    assert redact_values("the id is 12", ["id", "", None]) == "the id is 12"


def test_redact_values_accepts_any_iterable_and_duplicates():
    assert redact_values("x tok1 y tok1", iter(["tok1", "tok1"])) == f"x {MASK} y {MASK}"


def test_secret_query_parameters_are_masked_in_urls():
    out = redact_url(
        "https://login.example.com/auth/token?client_id=hub&client_secret=s3cr3t-value&scope=all&access_token=t0k"
    )
    assert "s3cr3t-value" not in out and "t0k" not in out
    assert out.startswith("https://login.example.com/auth/token?")
    assert "client_id=hub" in out and "scope=all" in out
    assert "client_secret=" in out and "access_token=" in out


def test_known_secret_values_are_masked_in_the_url_path_and_query():
    out = redact_url("https://psa.example.com/api/users/api-user-007/info?user=api-user-007", ["api-user-007"])
    assert "api-user-007" not in out
    assert out.startswith("https://psa.example.com/api/users/")


def test_known_secret_values_are_masked_when_url_encoded_in_the_query():
    out = redact_url("https://ws.example.com/zoneInformation?user=api.user%2Bhub%40msp.example", ["api.user+hub@msp.example"])
    assert "msp.example" not in out
    assert "%40" not in out
    assert out.startswith("https://ws.example.com/zoneInformation?user=")


def test_urls_without_a_query_are_unchanged():
    assert redact_url("https://psa.example.com/api/tickets/5") == "https://psa.example.com/api/tickets/5"


def test_form_bodies_as_sent_are_masked():
    out = json.loads(redact_body({"grant_type": "client_credentials", "client_id": "abc", "client_secret": "xyz-123"}))
    assert out == {"grant_type": "client_credentials", "client_id": "abc", "client_secret": MASK}


@pytest.mark.parametrize("empty", [None, b"", ""])
def test_empty_bodies_give_an_empty_excerpt(empty):
    assert redact_body(empty) == ""


def test_excerpts_are_cut_at_the_limit():
    body = "z" * 5000
    out = redact_body(body)
    assert out.startswith("z" * redaction.EXCERPT_LIMIT)
    assert out[redaction.EXCERPT_LIMIT:] == "… [3000 more characters]"
    assert redact_body("q" * 50, limit=10) == "q" * 10 + "… [40 more characters]"
    assert redact_body("q" * 10, limit=10) == "q" * 10


def test_a_secret_across_the_cut_is_masked_before_cutting():
    secret = "Pr1vate-K3y-abcdef"
    out = redact_body("a" * 1995 + secret + "tail", secrets=[secret])
    assert secret[:5] not in out
    assert "Pr1va" not in out


def test_undecodable_bytes_do_not_raise():
    assert "tok-secret" not in redact_body(b"\xff\xfe tok-secret", secrets=["tok-secret"])


@pytest.mark.parametrize(
    ("name", "secret"),
    [("password", True), ("clientSecret", True), ("ApiKey", True), ("summary", False), ("company", False),
     ("", False)],
)
def test_is_secret_name(name, secret):
    assert redaction.is_secret_name(name) is secret

"""Halo's client-credentials tokens: the exact token request, caching until a minute before
expiry, one refresh on a 401, and wrong credentials becoming seed 002's message."""

from __future__ import annotations

import pytest

from integrations.base.errors import AuthFailedError, InvalidError, UnavailableError
from integrations.base.redaction import MASK
from integrations.halo.auth import MemoryTokenStore, token_url
from integrations.halo.provider import HaloProvider
from tests.unit.halo.support import API, BASE, CLIENT_ID, SECRET, TOKEN, TOKEN_URL, bearer, expect_token, load

SEED_HINT = "Verify Tenant, Resource Server (without /api), Client ID, and Client Secret. Regenerate credentials if needed."
TOKEN_2 = "eyJhbGciOiJSUzI1NiJ9.second-token-Hk3mP0"


def expect_me(rsps, token=TOKEN, status=200):
    return rsps.get(f"{API}/Agent/me", status=status, json=load("agent_me") if status == 200 else None, match=[bearer(token)])


def test_the_token_request_is_a_form_post_with_the_tenant_in_the_query(rsps, provider):
    expect_token(rsps)
    expect_me(rsps)

    assert provider.client.agent_me()["name"] == "petra_api"

    token_call = rsps.calls[0].request
    assert token_call.url == f"{TOKEN_URL}?tenant=acme"
    assert "Authorization" not in token_call.headers
    assert SECRET not in token_call.url


def test_the_token_is_cached_and_reused(rsps, provider):
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", json=load("agent_me"), match=[bearer()])

    provider.client.agent_me()
    provider.client.agent_me()

    assert [c.request.method for c in rsps.calls] == ["POST", "GET", "GET"]


def test_a_token_is_shared_through_the_store_by_providers_with_the_same_credentials(rsps, make_provider):
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", json=load("agent_me"), match=[bearer()])

    make_provider().client.agent_me()
    make_provider().client.agent_me()  # a new provider, as each task builds one

    assert [c.request.method for c in rsps.calls] == ["POST", "GET", "GET"]


def test_the_token_is_refreshed_a_minute_before_it_expires(rsps, provider, clock):
    expect_token(rsps)
    rsps.get(f"{API}/Agent/me", json=load("agent_me"))

    provider.client.agent_me()
    clock.now += 3600 - 61
    provider.client.agent_me()
    assert len(rsps.calls) == 3  # still the first token

    clock.now += 2  # now within the last minute
    provider.client.agent_me()
    assert [c.request.method for c in rsps.calls] == ["POST", "GET", "GET", "POST", "GET"]


def test_a_short_lived_token_is_kept_for_half_its_life(rsps, provider, clock):
    expect_token(rsps, body={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 60})
    rsps.get(f"{API}/Agent/me", json=load("agent_me"))

    provider.client.agent_me()
    clock.now += 29
    provider.client.agent_me()

    assert [c.request.method for c in rsps.calls] == ["POST", "GET", "GET"]


def test_a_401_from_the_api_gets_one_fresh_token_and_one_retry(rsps, provider, records):
    expect_token(rsps)
    expect_me(rsps, status=401)
    expect_token(rsps, token=TOKEN_2)
    expect_me(rsps, token=TOKEN_2)

    assert provider.client.agent_me()["id"] == 12

    assert [c.request.method for c in rsps.calls] == ["POST", "GET", "POST", "GET"]
    assert all(TOKEN_2 not in repr(record) for record in records)


def test_a_second_401_is_authentication_failed_without_more_attempts(rsps, provider):
    expect_token(rsps)
    expect_me(rsps, status=401)
    expect_token(rsps, token=TOKEN_2)
    expect_me(rsps, token=TOKEN_2, status=401)

    with pytest.raises(AuthFailedError) as caught:
        provider.client.agent_me()

    assert caught.value.message.startswith("Authentication failed: ")
    assert "agent is active and API-only" in caught.value.message
    assert len(rsps.calls) == 4


def test_a_wrong_secret_is_seed_002s_authentication_failed_and_not_retried(rsps, provider):
    expect_token(rsps, status=401, body={"error": "invalid_client"})

    with pytest.raises(AuthFailedError) as caught:
        provider.client.agent_me()

    assert caught.value.message == f"Authentication failed: {SEED_HINT} Halo PSA said: invalid_client"
    assert caught.value.permanent
    assert SECRET not in str(caught.value) and SECRET not in caught.value.vendor_message
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("error", ["invalid_request", "unauthorized_client", "invalid_scope"])
def test_oauth_400_refusals_are_authentication_failures(rsps, provider, error):
    expect_token(rsps, status=400, body={"error": error, "error_description": "tenant not recognised"})

    with pytest.raises(AuthFailedError) as caught:
        provider.client.agent_me()

    assert caught.value.message.startswith(f"Authentication failed: {SEED_HINT}")
    assert error in caught.value.message


def test_a_missing_token_endpoint_points_at_the_urls(rsps, provider):
    rsps.post(TOKEN_URL, status=404, body="<html><body>Not found</body></html>")

    with pytest.raises(InvalidError) as caught:
        provider.client.agent_me()

    assert caught.value.field == "resource_server"
    assert "without /api" in caught.value.message


def test_a_token_answer_without_a_token_is_unavailable(rsps, provider):
    expect_token(rsps, body={"token_type": "Bearer"})

    with pytest.raises(UnavailableError, match="without an access token"):
        provider.client.agent_me()


def test_on_premise_sends_no_tenant(rsps, make_provider):
    expect_token(rsps, tenant="")
    expect_me(rsps)

    make_provider(tenant="").client.agent_me()

    assert rsps.calls[0].request.url == TOKEN_URL


def test_the_token_call_is_recorded_with_the_secret_and_token_masked(rsps, provider, records):
    expect_token(rsps)
    expect_me(rsps)

    provider.client.agent_me()

    token_record = records[0]
    assert token_record.method == "POST" and token_record.path == "/auth/token?tenant=acme"
    assert f'"client_secret": "{MASK}"' in token_record.request_excerpt
    assert f'"client_id": "{CLIENT_ID}"' in token_record.request_excerpt
    assert f'"access_token": "{MASK}"' in token_record.response_excerpt


def test_new_credentials_never_reuse_the_old_token(rsps, make_provider, transport, store, clock):
    expect_token(rsps)
    expect_me(rsps)
    make_provider().client.agent_me()

    regenerated = "a-regenerated-secret-0000"
    other = HaloProvider(
        {"tenant": "acme", "resource_server": BASE, "client_id": CLIENT_ID},
        {"client_secret": regenerated},
        transport,
        token_store=store,
        clock=clock,
    )
    rsps.post(TOKEN_URL, json={**load("token"), "access_token": TOKEN_2})
    expect_me(rsps, token=TOKEN_2)

    other.client.agent_me()

    assert rsps.calls[2].request.body == f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={regenerated}&scope=all"


def test_token_url_follows_halos_default_and_an_explicit_auth_server():
    assert token_url("", BASE) == f"{BASE}/auth/token"
    assert token_url("https://login.example/identity/", BASE) == "https://login.example/identity/token"
    assert token_url("https://login.example/identity/token", BASE) == "https://login.example/identity/token"


def test_the_memory_store_forgets_after_its_ttl():
    now = [100.0]
    store = MemoryTokenStore(clock=lambda: now[0])
    store.set("k", {"access_token": "x"}, 10)
    assert store.get("k") == {"access_token": "x"}
    now[0] += 10
    assert store.get("k") is None

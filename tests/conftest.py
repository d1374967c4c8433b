"""Shared fixtures: the personas of DESIGN.md (admin, operator and support of account A, an
outsider in account B, vendor staff), API clients, and strict `responses`."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
import responses
from rest_framework.test import APIClient

from hub.tenancy import OPERATOR, SUPPORT
from tests.factories import make_account, make_api_key, make_user
from tests.fakes.servers import running_fake_psas

# Playwright's sync API runs an event loop in the test thread; the ORM calls of the tests
# themselves are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness is no help in tests: it made the persona fixture take seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Personas:
    account_a: object
    account_b: object
    admin: object
    operator: object
    support: object
    outsider: object
    staff: object


@pytest.fixture
def personas(db) -> Personas:
    account_a = make_account("Acme IT")
    account_b = make_account("Other MSP")
    return Personas(
        account_a=account_a,
        account_b=account_b,
        admin=make_user("alice@acme.example", account=account_a),
        operator=make_user("olga@acme.example", account=account_a, role=OPERATOR),
        support=make_user("sam@acme.example", account=account_a, role=SUPPORT),
        outsider=make_user("charlie@other.example", account=account_b),
        staff=make_user("vera@vendor.example", is_staff=True),
    )


@pytest.fixture
def api_for(db):
    """api_for(account, role="admin") -> an APIClient sending a fresh API key of that role."""

    def make(account, role="admin"):
        _, key = make_api_key(account, role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def page_client(client):
    """page_client(user) -> Django's test client signed in as that user."""

    def make(user):
        client.force_login(user)
        return client

    return make


@pytest.fixture
def mocked_responses():
    """Strict `responses`: an unregistered request fails, and every registered one must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture(scope="session")
def fake_psas():
    """The three HTTP fake PSAs (tests/fakes/servers.py), started once, before any worker process
    of the integration or browser tier, whose environment points at them."""
    with running_fake_psas() as psas:
        yield psas


@pytest.fixture
def psas(fake_psas, settings):
    """The fake PSAs with every knob reset and empty request logs, and this process's settings
    pointed at them (the worker's environment already is)."""
    for name, value in fake_psas.settings().items():
        setattr(settings, name, value)
    fake_psas.reset()
    yield fake_psas
    fake_psas.reset()


@pytest.fixture
def restored(psas):
    """The fakes' data as seeded again after the test (they are shared by the whole session)."""
    cw, at, halo = psas.connectwise, psas.autotask, psas.halo
    with cw.lock, at.lock, halo.lock:
        saved = copy.deepcopy(cw.data), copy.deepcopy(at.tables), copy.deepcopy(halo.data)
    yield psas
    with cw.lock, at.lock, halo.lock:
        cw.data, at.tables, halo.data = saved

"""Plain helpers that make rows for tests: make_account, make_user, make_tenant..."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model

from hub.models import Account, ApiKey, Membership, Tenant
from hub.tenancy import ADMIN

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery-9"


def make_account(name: str | None = None, **fields) -> Account:
    return Account.objects.create(name=name or f"MSP {next(_seq)}", **fields)


def make_user(email: str | None = None, *, account: Account | None = None, role: str = ADMIN, **fields):
    email = email or f"user{next(_seq)}@example.com"
    user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD, **fields)
    if account is not None:
        Membership.objects.create(user=user, account=account, role=role)
    return user


def make_tenant(account: Account, name: str | None = None, external_id: str | None = None, **fields) -> Tenant:
    n = next(_seq)
    return Tenant.objects.create(account=account, name=name or f"Customer {n}", external_id=external_id or f"ext-{n}", **fields)


def make_api_key(account: Account, role: str = ADMIN, name: str = "Host product") -> tuple[ApiKey, str]:
    return ApiKey.issue(account=account, name=name, role=role)

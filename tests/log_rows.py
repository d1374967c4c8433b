"""Plain helpers for the logs and health tests: integration log rows and a linked connection."""

from __future__ import annotations

import itertools
from datetime import timedelta

from django.utils import timezone

from integrations.models import Connection, IntegrationLog

_seq = itertools.count(1)


def link(account, vendor: str = "connectwise", **fields) -> Connection:
    """A connected PSA row for `account`, made directly (no task, no PSA)."""
    defaults = {"config": {"company_id": "acme", "site": "acme.example.com"}, "status": Connection.Status.CONNECTED,
                "credentials_updated_at": timezone.now() - timedelta(days=30)}
    return Connection.objects.create(account=account, vendor=vendor, **{**defaults, **fields})


def make_log(account, action: str = "ticket.create", *, ago: timedelta | None = None, at=None, **fields) -> IntegrationLog:
    """One log row; `ago` (default: seconds apart, newest made last) or `at` sets created_at."""
    created = at or timezone.now() - (ago if ago is not None else timedelta(seconds=0))
    fields.setdefault("message", f"Entry {next(_seq)} of {action}")
    if "connection" not in fields:
        fields["connection"] = Connection.objects.filter(account=account).first()
    return IntegrationLog.objects.create(account=account, action=action, created_at=created, **fields)


def make_request_log(account, action: str = "ticket.create", *, method: str = "POST", path: str = "/service/tickets",
                     status: int | None = 201, **fields) -> IntegrationLog:
    outcome = IntegrationLog.Outcome.ERROR if status is None or status >= 400 else IntegrationLog.Outcome.OK
    fields.setdefault("message", f"{method} {path} → {status}")
    return make_log(account, action, http_method=method, http_path=path, http_status=status, duration_ms=42,
                    outcome=fields.pop("outcome", outcome), **fields)

"""Autotask status sync: polling. Autotask has no webhooks for tickets, so the hub asks for the
tickets it made (their externalID starts with the hub's prefix) changed since the last poll, by
lastActivityDate, in pages, on the shared rate limiter (well inside 10,000 requests an hour)."""

from __future__ import annotations

from integrations.base.status_sync import POLL, PollScope, StatusSync


class AutotaskStatusSync(StatusSync):
    mode = POLL
    poll_minutes = 2
    poll_reason = "Autotask has no ticket webhooks"

    def changes(self, adapter, since_iso: str, scope: PollScope):
        return adapter.changes_since(since_iso, scope.reference_prefix)

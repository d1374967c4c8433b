"""Halo status sync: a webhook calling the hub, authenticated with Basic credentials the hub made.

Halo sends the credentials with each delivery (fact sheet S7); the body names the ticket (its
exact shape is UNCONFIRMED, section 8: "the ticket and action objects"), and since v2.164 Halo
may batch several deliveries in one list.
"""

from __future__ import annotations

import base64
import binascii

from integrations.base.status_sync import (
    WEBHOOK,
    BadCall,
    InboundCall,
    InboundHints,
    PollScope,
    StatusSync,
    Subscription,
    first_id,
)


class HaloStatusSync(StatusSync):
    mode = WEBHOOK
    noun = "webhook"
    poll_minutes = 5

    def subscribe(self, provider, *, url: str, secret: str, board_id: str, label: str, options: dict) -> Subscription:
        # Halo's event numbers are UNCONFIRMED (fact sheet section 8): an MSP may copy them into the
        # Ticketing settings' extra (halo_webhook_events), read from a webhook made in Halo's UI.
        events = options.get("halo_webhook_events") or ()
        return Subscription(provider.ensure_webhook(url, username=label, password=secret, events=events))

    def unsubscribe(self, provider, remote_id: str) -> None:
        provider.remove_webhook(remote_id)

    def presented_secret(self, call: InboundCall) -> str:
        scheme, _, value = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return password

    def read_call(self, call: InboundCall) -> InboundHints:
        payload = call.payload
        if isinstance(payload, list):  # batched deliveries (v2.164+): one hint per ticket
            ids = {first_id(item, ("ticket", "id"), ("ticket_id",), ("id",)) for item in payload if isinstance(item, dict)}
            ids.discard("")
            return InboundHints(tuple(sorted(ids)), "batched")
        if not isinstance(payload, dict):
            raise BadCall("The body is not JSON.")
        ticket_id = first_id(payload, ("ticket", "id"), ("ticket_id",), ("action", "ticket_id"), ("id",))
        detail = str(payload.get("event") or payload.get("type") or "")[:100]
        return InboundHints((ticket_id,) if ticket_id else (), detail)

    def changes(self, adapter, since_iso: str, scope: PollScope):
        # Halo lists tickets by id, changed or not; the poll keeps those changed after `since`.
        return adapter.changes_of(scope.ticket_ids)

"""ConnectWise status sync: a ticket callback on the chosen board, calling the hub at a URL that
holds an unguessable token (`.../<token>/?recordId=<ticket id>`).

ConnectWise can sign callbacks (x-content-signature, keyed by a key fetched from the body's
Metadata.key_url), but the shape of that key's answer is UNCONFIRMED and fetching it would be a
PSA call during the request. Like DJCW we do not verify it: the token in the URL authenticates
the caller, and the body is only a hint; the ticket is read back through the API, so a forged
body cannot change anything the PSA does not say.
"""

from __future__ import annotations

from integrations.base.status_sync import (
    CALLBACK,
    BadCall,
    InboundCall,
    InboundHints,
    PollScope,
    StatusSync,
    Subscription,
    first_id,
)


class ConnectWiseStatusSync(StatusSync):
    mode = CALLBACK
    noun = "callback"
    poll_minutes = 5
    watches_board = True
    secret_in_url = True

    def subscribe(self, provider, *, url: str, secret: str, board_id: str, label: str, options: dict) -> Subscription:
        # Earlier callbacks of this connection (another token, another board) start with `url`.
        callback_id = provider.ensure_callback(f"{url}{secret}/?recordId=", board_id=board_id, url_prefix=url)
        return Subscription(callback_id, board_id)

    def unsubscribe(self, provider, remote_id: str) -> None:
        provider.remove_callback(remote_id)

    def registered_message(self, psa: str, board_name: str) -> str:
        return f"Registered a {psa} callback for tickets on board {board_name}."

    def read_call(self, call: InboundCall) -> InboundHints:
        payload = call.payload
        if not isinstance(payload, dict):
            raise BadCall("The body is not JSON.")
        kind = str(payload.get("Type") or "ticket").lower()
        action = str(payload.get("Action") or "").lower()
        if kind != "ticket" or action == "deleted":
            return InboundHints(tuple(filter(None, [first_id(payload, ("ID",))])), f"{kind} {action}".strip(),
                                ignored="Ignored.")
        ticket_id = first_id({"q": call.query.get("recordId", "")}, ("q",)) or first_id(payload, ("ID",))
        return InboundHints((ticket_id,) if ticket_id else (), action)

    def changes(self, adapter, since_iso: str, scope: PollScope):
        for board_id in scope.board_ids:
            yield from adapter.changes_since(since_iso, board_id)

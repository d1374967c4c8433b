"""The status-sync capability: how a PSA tells the hub that one of its tickets changed.

Each vendor implements it in its `webhooks.py` and declares it on its provider
(`Provider.status_sync`); the vendor-neutral code in `ticketing/sync/` registers, receives,
polls and applies through it. Like Sentry's IssueSyncMixin: the flow lives once, the vendor
says how its PSA spells each step.

- `webhook` / `callback`: the hub subscribes once (a URL and a secret the hub made); the PSA then
  calls the hub. The call is only a hint: the ticket is read back through the API.
- `poll`: the hub asks for tickets changed since a watermark (also the fallback of the other two,
  and the slow reconcile behind them).

Plain Python like every vendor package: calls arrive as `InboundCall` values, not requests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from integrations.base.ticketing import TicketChange

WEBHOOK = "webhook"
CALLBACK = "callback"
POLL = "poll"


class BadCall(Exception):
    """An inbound call the hub cannot read (not JSON, wrong shape): answered 400."""


@dataclass(frozen=True)
class InboundCall:
    """A call the PSA made to the hub, as plain values."""

    headers: Mapping[str, str]  # names lower-cased
    query: Mapping[str, str]
    token: str = ""  # the URL segment after the connection id, "" when there is none
    payload: Any = None  # the parsed JSON body


@dataclass(frozen=True)
class InboundHints:
    """What a call says: which tickets to read back, or why it is ignored."""

    ticket_ids: tuple[str, ...] = ()
    detail: str = ""  # the event as the PSA names it, for the receipt
    ignored: str = ""  # set when the call is not about a ticket change the hub follows


@dataclass(frozen=True)
class Subscription:
    remote_id: str  # the webhook / callback id in the PSA
    remote_object_id: str = ""  # what it watches (ConnectWise: the board)


@dataclass(frozen=True)
class PollScope:
    """What a poll may ask about: the hub's own tickets only."""

    reference_prefix: str  # every ticket the hub made carries a reference starting with this
    board_ids: tuple[str, ...] = ()  # boards the hub's tickets are on
    ticket_ids: tuple[str, ...] = ()  # the hub's open or recently closed tickets
    options: dict = field(default_factory=dict)


class StatusSync(ABC):
    mode: ClassVar[str]
    # What the pages call the registration ("webhook", "callback"); "" for polling.
    noun: ClassVar[str] = ""
    # Minutes between polls where polling is how changes come back.
    poll_minutes: ClassVar[int] = 5
    # Why polling is this PSA's normal mode, for the pages ("" when it has webhooks or callbacks).
    poll_reason: ClassVar[str] = ""
    # The subscription watches the chosen board, so it follows the board (ConnectWise callbacks).
    watches_board: ClassVar[bool] = False
    # The hub's secret travels as a URL segment (True) or in the call's headers (False).
    secret_in_url: ClassVar[bool] = False

    # --- subscribing (webhook / callback modes) ------------------------------------------------

    def subscribe(self, provider, *, url: str, secret: str, board_id: str, label: str, options: dict) -> Subscription:
        """Make (or adopt) the PSA's webhook/callback calling `url` with `secret`."""
        raise NotImplementedError(f"{type(self).__name__} has no subscription ({self.mode})")

    def unsubscribe(self, provider, remote_id: str) -> None:
        """Remove it; one already gone is fine."""
        raise NotImplementedError(f"{type(self).__name__} has no subscription ({self.mode})")

    def registered_message(self, psa: str, board_name: str) -> str:
        return f"Registered the {psa} {self.noun} for ticket updates."

    # --- receiving -----------------------------------------------------------------------------

    def presented_secret(self, call: InboundCall) -> str:
        """The secret the caller presents, compared with the one the hub made."""
        return call.token if self.secret_in_url else ""

    def read_call(self, call: InboundCall) -> InboundHints:
        """The tickets a call is about. Raises BadCall for a body of the wrong shape."""
        raise BadCall("This PSA does not call the hub.")

    # --- polling -----------------------------------------------------------------------------------

    @abstractmethod
    def changes(self, adapter, since_iso: str, scope: PollScope) -> Iterable[TicketChange]:
        """The hub's tickets changed since `since_iso` (UTC, ISO 8601), as the PSA reports them."""

    def read_change(self, adapter, ticket_id: str) -> TicketChange:
        """One ticket's current status, read through the API (after a hint)."""
        return adapter.read_change(ticket_id)


def first_id(body, *paths: tuple[str, ...]) -> str:
    """The first numeric id found at one of `paths` (key paths into nested dicts), as text."""
    for path in paths:
        value = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, str)) and str(value).strip().isdigit():
            return str(int(str(value).strip()))
    return ""

"""The ticket capability: what the ticketing service asks of each PSA.

The service decides *what* to do (create once, follow the incident, add notes, close); the
adapter says *how this PSA spells it*. Every create carries the incident's `reference`, written
into a PSA field that can be searched, so that a retry after a lost answer finds the ticket
instead of creating a second one (DESIGN.md rule 5).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TicketDraft:
    reference: str  # the hub's marker for the incident, e.g. "hub-incident-42"
    company_id: str
    summary: str
    description: str
    board_id: str = ""  # ConnectWise board / Autotask queue / Halo ticket type
    status_id: str = ""
    priority_id: str = ""
    type_id: str = ""
    subtype_id: str = ""
    item_id: str = ""
    source_id: str = ""
    team_id: str = ""
    contact_id: str = ""
    contact_email: str = ""  # the adapter may look the contact up by it
    extra: dict = field(default_factory=dict)  # vendor-specific settings (Autotask issue type...)


@dataclass(frozen=True)
class TicketRef:
    id: str
    number: str = ""  # what people see: "5123", "T20250930.0256"
    status_id: str = ""
    closed: bool = False
    url: str = ""


@dataclass(frozen=True)
class TicketChange:
    """A change to a ticket, as the PSA reports it (for two-way sync)."""

    ticket_id: str
    status_id: str
    changed_at_iso: str = ""


@dataclass(frozen=True)
class ChoiceField:
    """One choice on the Ticketing page, filled from a cached PSA list."""

    # TicketingConfig attribute, or "extra.<key>": extra keys reach the adapter both in the
    # ticket draft and in the provider's config (e.g. Halo's note outcome, Autotask's issue type).
    name: str
    label: str  # in the PSA's own words
    kind: str  # picklist kind of the vendor's provider
    parent: str = ""  # the field whose value is the list's parent id
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class TicketingFields:
    """What the Ticketing page asks for on this PSA, and which list fills each choice."""

    board: ChoiceField  # the board / queue / ticket type
    board_noun: str  # "board", "queue", "ticket type": how the pages name the board choice
    statuses_kind: str
    statuses_parent: str  # "" when statuses do not depend on the board
    priorities_kind: str
    priorities_parent: str
    new_status: bool = False  # a separate "Status for new tickets" (Autotask, seed 001)
    default_priority: bool = False  # an optional default priority (ConnectWise, seed 000)
    default_company: bool = True
    fields: tuple[ChoiceField, ...] = ()  # type, subtype, source, team...
    # The picklist kind whose items of a board say whether it has an active Default Team
    # (ConnectWise, seed 000 step 3.5); "" where the PSA has no such rule.
    default_team_kind: str = ""


class TicketingAdapter(ABC):
    @abstractmethod
    def find_by_reference(self, reference: str) -> TicketRef | None:
        """The ticket created for `reference`, if one exists (searched in the PSA)."""

    @abstractmethod
    def create(self, draft: TicketDraft) -> TicketRef: ...

    @abstractmethod
    def get(self, ticket_id: str) -> TicketRef: ...

    @abstractmethod
    def update(self, ticket_id: str, *, status_id: str = "", priority_id: str = "") -> TicketRef:
        """Change what differs; a no-op when the ticket is already in that state."""

    @abstractmethod
    def add_note(self, ticket_id: str, text: str, *, internal: bool = True) -> None: ...

    @abstractmethod
    def note_exists(self, ticket_id: str, marker: str) -> bool:
        """Whether a note containing `marker` is on the ticket: asked before re-sending a note
        whose first attempt lost its answer."""

"""What the Ticketing page asks for, per PSA, and which cached PSA list fills each choice.

Each field names a TicketingConfig attribute (or a key of its `extra`), a label in the PSA's
own words, the picklist kind that offers the values, and the field whose value is the
list's parent (statuses belong to a ConnectWise board, priorities to a Halo ticket type).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChoiceField:
    # TicketingConfig attribute, or "extra.<key>": extra keys reach the adapter both in the
    # ticket draft and in the provider's config (e.g. Halo's note outcome, Autotask's issue type).
    name: str
    label: str
    kind: str  # picklist kind of the vendor's provider
    parent: str = ""  # the field whose value is the list's parent id
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class VendorTicketing:
    board: ChoiceField  # the board / queue / ticket type
    statuses_kind: str
    statuses_parent: str  # "" when statuses do not depend on the board
    priorities_kind: str
    priorities_parent: str
    new_status: bool  # Autotask: a separate "Status for new tickets" (seed 001)
    default_priority: bool  # ConnectWise: an optional default priority (seed 000)
    default_company: bool
    fields: tuple[ChoiceField, ...]  # type, subtype, source, team...


VENDOR_TICKETING = {
    "connectwise": VendorTicketing(
        board=ChoiceField("board_id", "Service Board", "boards", required=True,
                          help="Tickets are created on this board. It needs an active Default Team."),
        statuses_kind="statuses", statuses_parent="board_id",
        priorities_kind="priorities", priorities_parent="",
        new_status=False, default_priority=True, default_company=True,
        fields=(
            ChoiceField("type_id", "Type", "types", parent="board_id"),
            ChoiceField("subtype_id", "Subtype", "subtypes", parent="board_id"),
            ChoiceField("item_id", "Item", "items", parent="board_id"),
            ChoiceField("source_id", "Source", "sources"),
        ),
    ),
    "autotask": VendorTicketing(
        board=ChoiceField("board_id", "Queue", "queues", required=True, help="New tickets go to this queue."),
        statuses_kind="statuses", statuses_parent="",
        priorities_kind="priorities", priorities_parent="",
        new_status=True, default_priority=False, default_company=True,
        fields=(
            ChoiceField("type_id", "Ticket Type", "ticket_types"),
            ChoiceField("source_id", "Source", "sources"),
            ChoiceField("extra.issue_type_id", "Issue Type", "issue_types"),
            ChoiceField("extra.sub_issue_type_id", "Sub-issue Type", "sub_issue_types", parent="extra.issue_type_id"),
        ),
    ),
    "halo": VendorTicketing(
        board=ChoiceField("board_id", "Ticket Type", "ticket_types", required=True,
                          help="Its allowed statuses and its SLA's priorities are offered below."),
        statuses_kind="statuses", statuses_parent="board_id",
        priorities_kind="priorities", priorities_parent="board_id",
        new_status=False, default_priority=False, default_company=True,
        fields=(
            ChoiceField("team_id", "Team", "teams"),
            ChoiceField("extra.note_outcome_id", "Outcome for notes", "outcomes",
                        help="Halo needs an outcome on every action; the private note outcome is usual."),
        ),
    ),
}

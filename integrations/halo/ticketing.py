"""HaloTicketing: incidents as Halo tickets (Faults) and notes as actions.

The incident reference goes into the ticket's `supplier_reference`. Of the Faults fields a
caller may write, it is the only text field that GET /api/Tickets can search on by name
(`search_supplier_reference`, "Returns tickets based on the supplier reference matching the
search", OpenAPI S1). The alternatives fail one test or the other: `third_party_id` is an
integer, `third_party_id_string` and `reference` have no filter, `client_ref` has no
documented meaning, and `search` covers unspecified fields. The search matches loosely, so
every hit is compared exactly before it counts. The reference is also written at the end of
the details, so a person reading the ticket sees where it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from integrations.base.errors import InvalidError
from integrations.base.ticketing import TicketChange, TicketDraft, TicketingAdapter, TicketRef
from integrations.halo import parse
from integrations.halo.client import HaloClient

REFERENCE_FIELD = "supplier_reference"
REFERENCE_FILTER = "search_supplier_reference"
# Halo's limits on these fields are not published; these stay well inside what the UI accepts.
SUMMARY_LIMIT = 250
DETAILS_LIMIT = 20_000
NOTE_LIMIT = 20_000
# CIPP's fallback: the built-in private note outcome. That it is 7 everywhere is UNCONFIRMED,
# so the MSP's choice (the "outcomes" picklist) wins, then an outcome named like a private note.
DEFAULT_NOTE_OUTCOME_ID = 7
_NOTE_OUTCOME_NAMES = ("private note", "internal note", "note")


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"\n\n[Shortened by the hub: {len(text) - limit:,} more characters are in the hub's incident.]"
    return text[: max(0, limit - len(note))] + note


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


class HaloTicketing(TicketingAdapter):
    def __init__(
        self,
        client: HaloClient,
        *,
        ticket_url: Callable[[str], str] = lambda ticket_id: "",
        note_outcome_id: int | None = None,
    ):
        self.client = client
        self.ticket_url = ticket_url
        self.note_outcome_id = note_outcome_id
        self._teams: dict[str, str] | None = None

    def _ref(self, row: dict) -> TicketRef:
        ref = parse.ticket_ref(row)
        return TicketRef(id=ref.id, number=ref.number, status_id=ref.status_id, closed=ref.closed, url=self.ticket_url(ref.id))

    def find_by_reference(self, reference: str) -> TicketRef | None:
        if not reference:
            return None
        for row in self.client.list_tickets(**{REFERENCE_FILTER: reference}):
            if REFERENCE_FIELD not in row:
                # Some list answers carry only a few columns: read the ticket to be sure.
                row = self.client.get_ticket(_int(row.get("id"), "ticket_id"))
            if parse.text(row.get(REFERENCE_FIELD)).strip() == reference:
                # The search also matches longer references that contain this one, so paging
                # stops at the first exact hit rather than reading every near miss.
                return self._ref(row)
        return None

    def create(self, draft: TicketDraft) -> TicketRef:
        ticket: dict = {
            "summary": _summary(draft.summary),
            "details": truncate(draft.description, DETAILS_LIMIT - 200) + f"\n\nReference: {draft.reference}",
            "client_id": _int(draft.company_id, "company_id"),
            REFERENCE_FIELD: draft.reference,
            # Ticket-type templates would overwrite what the hub sends (fact sheet section 7).
            "donotapplytemplateintheapi": True,
        }
        ticket_type = draft.board_id or draft.type_id
        if ticket_type:
            ticket["tickettype_id"] = _int(ticket_type, "tickettype_id")
        if draft.status_id:
            ticket["status_id"] = _int(draft.status_id, "status_id")
        if draft.priority_id:
            ticket["priority_id"] = _int(draft.priority_id, "priority_id")
        team = draft.extra.get("team") or (self._team_name(draft.team_id) if draft.team_id else "")
        if team:
            ticket["team"] = team
        site_id = draft.extra.get("site_id")
        if draft.contact_id:
            ticket["user_id"] = _int(draft.contact_id, "contact_id")
            if site_id in (None, ""):
                # Halo wants the user's site whenever a specific user is set (CIPP, S6).
                site_id = self.client.get_user(ticket["user_id"]).get("site_id")
        if site_id not in (None, ""):
            ticket["site_id"] = _int(site_id, "site_id")
        return self._ref(parse.one(self.client.post_tickets([ticket])))

    def get(self, ticket_id: str) -> TicketRef:
        return self._ref(self.client.get_ticket(_int(ticket_id, "ticket_id")))

    def update(self, ticket_id: str, *, status_id: str = "", priority_id: str = "") -> TicketRef:
        number = _int(ticket_id, "ticket_id")
        current = self.client.get_ticket(number)
        changes: dict = {}
        if status_id and parse.as_int(current.get("status_id")) != _int(status_id, "status_id"):
            changes["status_id"] = _int(status_id, "status_id")
        if priority_id and parse.as_int(current.get("priority_id")) != _int(priority_id, "priority_id"):
            changes["priority_id"] = _int(priority_id, "priority_id")
        if not changes:
            return self._ref(current)
        # Setting a field to a value is the same however often it is sent, so retries are safe.
        saved = parse.one(self.client.post_tickets([{"id": number, **changes}], idempotent=True))
        return self._ref({**current, **saved})

    def add_note(self, ticket_id: str, text: str, *, internal: bool = True) -> None:
        action = {
            "ticket_id": _int(ticket_id, "ticket_id"),
            "outcome_id": self._note_outcome(),
            "note": truncate(text, NOTE_LIMIT),
            "hiddenfromuser": internal,
            # A note about an incident is for the technicians, not an email to the end user.
            "sendemail": False,
        }
        self.client.post_actions([action])

    def note_exists(self, ticket_id: str, marker: str) -> bool:
        actions = self.client.list_actions(_int(ticket_id, "ticket_id"))
        return any(marker in (parse.text(action.get("note")) + parse.text(action.get("note_html"))) for action in actions)

    # --- two-way sync ------------------------------------------------------------------------------

    @staticmethod
    def _change(row: dict) -> TicketChange:
        # Halo's last_update is UTC without an offset (fact sheet section 7).
        changed = parse.text(row.get("last_update") or row.get("lastactiondate") or "")
        return TicketChange(ticket_id=parse.text(row.get("id")), status_id=parse.text(row.get("status_id")),
                            changed_at_iso=changed)

    def read_change(self, ticket_id: str) -> TicketChange:
        """The ticket's status and last update, read from Halo (a webhook is only a hint)."""
        return self._change(self.client.get_ticket(_int(ticket_id, "ticket_id")))

    def changes_of(self, ticket_ids: Iterable[str], chunk: int = 100) -> Iterator[TicketChange]:
        """Status and last update of these tickets (polling fallback), `chunk` ids per list call."""
        ids = [str(_int(t, "ticket_id")) for t in ticket_ids]
        for start in range(0, len(ids), chunk):
            for row in self.client.list_tickets(ticketids=",".join(ids[start:start + chunk])):
                yield self._change(row)

    # --- helpers ---------------------------------------------------------------------------------

    def _team_name(self, team_id: str) -> str:
        if self._teams is None:
            self._teams = {parse.text(row.get("id")): parse.text(row.get("name")) for row in self.client.list_teams()}
        name = self._teams.get(str(team_id).strip())
        if not name:
            raise InvalidError(f"Halo has no team with id {team_id}; refresh the team list and pick one.", field="team")
        return name

    def _note_outcome(self) -> int:
        if self.note_outcome_id is None:
            by_name = {parse.outcome(row).name.strip().lower(): row for row in self.client.list_outcomes()}
            chosen = next((by_name[name] for name in _NOTE_OUTCOME_NAMES if name in by_name), None)
            self.note_outcome_id = parse.as_int(chosen.get("id")) if chosen else None
            if self.note_outcome_id is None:
                self.note_outcome_id = DEFAULT_NOTE_OUTCOME_ID
        return self.note_outcome_id


def _int(value, field: str) -> int:
    number = parse.as_int(value)
    if number is None:
        raise InvalidError(f"{value!r} is not a Halo id.", field=field)
    return number

"""Incidents as ConnectWise service tickets (fact sheet section 7.5).

The incident's reference goes into `externalXRef`, which `conditions` can search, so a create
whose answer was lost is found again instead of being sent twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from integrations.base.errors import InvalidError
from integrations.base.ticketing import TicketChange, TicketDraft, TicketingAdapter, TicketRef
from integrations.connectwise import parse
from integrations.connectwise.client import ConnectWiseClient

NO_DEFAULT_TEAM = "Cannot find default team for board specified"
NO_DEFAULT_TEAM_MESSAGE = (
    "ConnectWise could not create the ticket: the Service Board has no Default Team ({said}). In ConnectWise go "
    "to System > Setup Tables > Service Board, open the board, set an active Default Team, then retry."
)
# The hub writes its own references; anything else must not reach a condition string.
_REFERENCE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
TICKET_FIELDS = "id,summary,board,company,status,priority,closedFlag,externalXRef"
CHANGE_FIELDS = "id,status,board,_info"


class ConnectWiseTicketing(TicketingAdapter):
    def __init__(self, client: ConnectWiseClient, ticket_url: Callable[[str], str] = lambda ticket_id: ""):
        self.client = client
        self.ticket_url = ticket_url

    def _ref(self, record: dict) -> TicketRef:
        return parse.ticket_ref(record, self.ticket_url(parse.text_id(record.get("id"))))

    def find_by_reference(self, reference: str) -> TicketRef | None:
        if not _REFERENCE.match(reference or ""):
            raise InvalidError(f"“{reference}” cannot be used as a ticket reference.", field="reference")
        # The oldest ticket is the one the first attempt made; later ones would be duplicates.
        found = self.client.tickets(
            conditions=f"externalXRef={parse.quoted(reference)}",
            order_by="id asc",
            fields=TICKET_FIELDS,
            page_size=1,
            max_pages=1,
        )
        record = next(iter(found), None)
        return self._ref(record) if record else None

    def create(self, draft: TicketDraft) -> TicketRef:
        if not _REFERENCE.match(draft.reference or ""):
            raise InvalidError(f"“{draft.reference}” cannot be used as a ticket reference.", field="reference")
        body: dict = {
            "summary": parse.one_line(draft.summary, parse.SUMMARY_LIMIT) or draft.reference,
            "company": _reference("company", draft.company_id),
            "externalXRef": draft.reference,
            "initialDescription": parse.clipped(draft.description),
        }
        for name, value in (
            ("board", draft.board_id),
            ("status", draft.status_id),
            ("priority", draft.priority_id),
            ("type", draft.type_id),
            ("subType", draft.subtype_id),
            ("item", draft.item_id),
            ("source", draft.source_id),
            ("team", draft.team_id),
            ("contact", draft.contact_id),
        ):
            if value:
                body[name] = _reference(name, value)
        body.update(draft.extra)
        try:
            record = self.client.create_ticket(body)
        except InvalidError as error:
            raise translate_create_error(error) from None
        return self._ref(record)

    def get(self, ticket_id: str) -> TicketRef:
        return self._ref(self.client.ticket(ticket_id, fields=TICKET_FIELDS))

    # --- two-way sync ------------------------------------------------------------------------------

    @staticmethod
    def _change(record: dict) -> TicketChange:
        info = record.get("_info") if isinstance(record.get("_info"), dict) else {}
        return TicketChange(ticket_id=parse.text_id(record.get("id")), status_id=parse.ref_id(record, "status"),
                            changed_at_iso=str(info.get("lastUpdated") or ""))

    def read_change(self, ticket_id: str) -> TicketChange:
        """The ticket's status and last update, read from ConnectWise (a callback is only a hint)."""
        return self._change(self.client.ticket(ticket_id, fields=CHANGE_FIELDS))

    def changes_since(self, since_iso: str, board_id: str) -> Iterator[TicketChange]:
        """Tickets of the board updated after `since_iso` (polling fallback), oldest id first."""
        conditions = parse.all_of(f"board/id={int(board_id)}", f"lastUpdated>[{since_iso}]")
        for record in self.client.tickets(conditions=conditions, fields=CHANGE_FIELDS, order_by="id asc"):
            yield self._change(record)

    def update(self, ticket_id: str, *, status_id: str = "", priority_id: str = "") -> TicketRef:
        current = self.client.ticket(ticket_id, fields=TICKET_FIELDS)
        operations = [
            # A reference is replaced as a whole object: patching status/id can answer 200 and change nothing.
            {"op": "replace", "path": name, "value": _reference(name, wanted)}
            for name, wanted in (("status", status_id), ("priority", priority_id))
            if wanted and parse.ref_id(current, name) != str(wanted)
        ]
        if not operations:
            return self._ref(current)
        return self._ref(self.client.patch_ticket(ticket_id, operations))

    def add_note(self, ticket_id: str, text: str, *, internal: bool = True) -> None:
        # One of the flags must be set or ConnectWise refuses the note; Internal vs Discussion.
        flag = "internalAnalysisFlag" if internal else "detailDescriptionFlag"
        self.client.create_ticket_note(ticket_id, {"text": parse.clipped(text), flag: True})


    def note_exists(self, ticket_id: str, marker: str) -> bool:
        # Newest first: a note whose answer was lost is among the last ones on the ticket.
        notes = self.client.ticket_notes(ticket_id, order_by="id desc", fields="id,text", page_size=100, max_pages=1)
        return any(marker in (note.get("text") or "") for note in notes)


def _reference(name: str, value) -> dict:
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidError(
            f"The ConnectWise {name} “{value}” is not a record id; choose it again from the list.", field=name
        )
    return {"id": int(text)}


def translate_create_error(error: InvalidError) -> InvalidError:
    """ConnectWise's refusal in words the admin can act on (seed 000 for the default team)."""
    said = error.vendor_message
    if NO_DEFAULT_TEAM.lower() in said.lower():
        return InvalidError(
            NO_DEFAULT_TEAM_MESSAGE.format(said=said), field="board", status=error.status, vendor_message=said
        )
    return InvalidError(
        f"ConnectWise could not create the ticket: {said or error.message}",
        field=error.field,
        status=error.status,
        vendor_message=said,
    )
